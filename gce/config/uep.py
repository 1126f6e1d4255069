"""The user endpoint's config: the JSON object a manager writes to a UEP's stdin.

The manager builds a `UepConfig` (gce/daemon/routing.py) and sends `to_dict()`; the UEP reads it
back with `UepConfig.from_dict` (gce/uep/main.py) before it runs anything. Both sides may run
different gce versions for a moment (an upgrade under a running manager), so reading is strict about
the fields it needs, naming the one that is wrong, and ignores fields it does not know.

Pure data: nothing here touches the OS, so the UEP can read its config before it checks who it runs as.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from gce.errors import ConfigError

_MISSING = object()


class UepConfigError(ConfigError):
    """The config a UEP was given cannot be read; str() names the field and why."""

    def __init__(self, why: str) -> None:
        super().__init__("the user endpoint's config is invalid", why,
                         hint="the manager and its user endpoints must run the same gce: after an upgrade, "
                              "gce restart NAME")


def _get(data: Mapping[str, Any], key: str, where: str, default: Any = _MISSING) -> Any:
    value = data.get(key, _MISSING)
    if value is _MISSING:
        if default is _MISSING:
            raise UepConfigError(f"field {where + key!r} is missing")
        return default
    return value


def _str(data: Mapping[str, Any], key: str, where: str = "") -> str:
    value = _get(data, key, where)
    if not isinstance(value, str):
        raise UepConfigError(f"field {where + key!r} must be a string, not {type(value).__name__}")
    return value


def _opt_str(data: Mapping[str, Any], key: str, where: str = "") -> str | None:
    value = _get(data, key, where, None)
    if value is not None and not isinstance(value, str):
        raise UepConfigError(f"field {where + key!r} must be a string, not {type(value).__name__}")
    return value


def _int(data: Mapping[str, Any], key: str, where: str = "") -> int:
    value = _get(data, key, where)
    if isinstance(value, bool) or not isinstance(value, int):  # True is an int to Python, not to us
        raise UepConfigError(f"field {where + key!r} must be an integer, not {type(value).__name__}")
    return value


def _opt_int(data: Mapping[str, Any], key: str, where: str = "") -> int | None:
    return None if _get(data, key, where, None) is None else _int(data, key, where)


def _object(data: Mapping[str, Any], key: str, where: str = "", default: Any = _MISSING) -> Any:
    value = _get(data, key, where, default)
    if value is not default and not isinstance(value, dict):
        raise UepConfigError(f"field {where + key!r} must be a JSON object, not {type(value).__name__}")
    return value


@dataclass(frozen=True)
class UepIdentity:
    """The credentials a UEP must hold (gce/uep/startup.py check_identity): the mapped user's."""

    uid: int
    gid: int
    groups: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"uid": self.uid, "gid": self.gid, "groups": list(self.groups)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "identity.") -> UepIdentity:
        groups = _get(data, "groups", where)
        if not isinstance(groups, list) or any(isinstance(g, bool) or not isinstance(g, int) for g in groups):
            raise UepConfigError(f"field {where + 'groups'!r} must be a list of integers")
        return cls(uid=_int(data, "uid", where), gid=_int(data, "gid", where), groups=tuple(groups))


@dataclass(frozen=True)
class UserRuntime:
    """The submitter's runtime as its task's headers said it; "" for what they left out."""

    python_version: str = ""
    gce_version: str = ""
    platform: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"python_version": self.python_version, "gce_version": self.gce_version, "platform": self.platform}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "template.user_runtime.") -> UserRuntime:
        return cls(**{key: _opt_str(data, key, where) or "" for key in ("python_version", "gce_version", "platform")})


@dataclass(frozen=True)
class UepTemplate:
    """What a templated UEP renders its engine from, as the mapped user (DESIGN.md, invariant 4)."""

    name: str
    template_path: str | None
    schema_path: str | None
    parent_config: dict[str, Any]  # config.yaml as the template may see it: no broker URL
    user_config: dict[str, Any]  # the submitter's user_endpoint_config, canonical
    user_runtime: UserRuntime = field(default_factory=UserRuntime)
    # Descriptors the manager opened as root and passed down (gce/daemon/spawn.py): the template's
    # directory (O_PATH) and the schema (O_RDONLY), so the user reads them through a config
    # directory it cannot enter (/etc/gce is 0750). None: read the paths. The paths stay for messages.
    template_dir_fd: int | None = None
    schema_fd: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "template_path": self.template_path, "schema_path": self.schema_path,
                "parent_config": self.parent_config, "user_config": self.user_config,
                "user_runtime": self.user_runtime.to_dict(), "template_dir_fd": self.template_dir_fd,
                "schema_fd": self.schema_fd}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "template.") -> UepTemplate:
        runtime = _object(data, "user_runtime", where, None)
        return cls(
            name=_str(data, "name", where), template_path=_opt_str(data, "template_path", where),
            schema_path=_opt_str(data, "schema_path", where), parent_config=_object(data, "parent_config", where),
            user_config=_object(data, "user_config", where),
            user_runtime=UserRuntime.from_dict(runtime, where + "user_runtime.") if runtime else UserRuntime(),
            template_dir_fd=_opt_int(data, "template_dir_fd", where), schema_fd=_opt_int(data, "schema_fd", where),
        )


@dataclass(frozen=True)
class UepConfig:
    """Everything a UEP is told at start. An untemplated (personal) endpoint's UEP gets its engine
    section here; a templated one gets `template` and renders the engine itself after the drop."""

    endpoint_id: str
    engine: dict[str, Any]
    run_dir: str
    max_result_bytes: int
    max_output_bytes: int = 64 << 10
    allowed_functions: tuple[str, ...] | None = None  # None: any function; (): none
    allowed_serializers: tuple[str, ...] | None = None  # kinds of function body (gce/uep/policy.py); None: any
    log_file: str | None = None  # None: log to stderr
    debug: bool = False
    identity: UepIdentity | None = None  # None: run as the manager's user, nothing to check
    home: str | None = None  # the mapped user's home, named when the UEP cannot write there
    template: UepTemplate | None = None
    # endpoint_setup, endpoint_teardown, endpoint_setup_timeout of config.yaml (gce.uep.setup_teardown);
    # a templated UEP takes them from what it renders instead.
    setup: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint_id": self.endpoint_id, "engine": self.engine, "run_dir": self.run_dir,
            "max_result_bytes": self.max_result_bytes, "max_output_bytes": self.max_output_bytes,
            "allowed_functions": None if self.allowed_functions is None else list(self.allowed_functions),
            "allowed_serializers": None if self.allowed_serializers is None else list(self.allowed_serializers),
            "log_file": self.log_file, "debug": self.debug,
            "identity": None if self.identity is None else self.identity.to_dict(), "home": self.home,
            "template": None if self.template is None else self.template.to_dict(),
            "setup": self.setup,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UepConfig:
        """The config in DATA (parsed JSON); UepConfigError naming the first bad or missing field."""
        if not isinstance(data, dict):
            raise UepConfigError(f"it is not a JSON object but {type(data).__name__}")
        allowed = _get(data, "allowed_functions", "", None)
        if allowed is not None and (not isinstance(allowed, list) or not all(isinstance(f, str) for f in allowed)):
            raise UepConfigError("field 'allowed_functions' must be a list of strings or null")
        serializers = _get(data, "allowed_serializers", "", None)
        if serializers is not None and (not isinstance(serializers, list)
                                        or not all(isinstance(f, str) for f in serializers)):
            raise UepConfigError("field 'allowed_serializers' must be a list of strings or null")
        debug = _get(data, "debug", "", False)
        if not isinstance(debug, bool):
            raise UepConfigError(f"field 'debug' must be true or false, not {type(debug).__name__}")
        identity = _object(data, "identity", "", None)
        template = _object(data, "template", "", None)
        return cls(
            endpoint_id=_str(data, "endpoint_id"), engine=_object(data, "engine"), run_dir=_str(data, "run_dir"),
            max_result_bytes=_int(data, "max_result_bytes"),
            max_output_bytes=_int(data, "max_output_bytes") if "max_output_bytes" in data else 64 << 10,
            allowed_functions=None if allowed is None else tuple(allowed),
            allowed_serializers=None if serializers is None else tuple(serializers),
            log_file=_opt_str(data, "log_file"), debug=debug,
            identity=None if identity is None else UepIdentity.from_dict(identity),
            home=_opt_str(data, "home"),
            template=None if template is None else UepTemplate.from_dict(template),
            setup=_object(data, "setup", "", None),
        )
