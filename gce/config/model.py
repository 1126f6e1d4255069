"""Loading and validating an endpoint's config.yaml and endpoint.json into plain data."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gce.config import redaction
from gce.config.paths import EndpointPaths, unreadable
from gce.config.schema import CONFIG, allowed
from gce.errors import ConfigError
from gce.transport import urls

DEFAULT_LIMIT = 10 * 1024 * 1024
DEFAULT_OUTPUT = 64 * 1024


@dataclass(frozen=True)
class EndpointConfig:
    name: str
    endpoint_id: str
    broker_url: str = field(repr=False)  # holds the password: never in a repr or a traceback
    engine: dict
    display_name: str = ""
    queue_type: str = "classic"
    prefetch: int = 1000
    heartbeat: int = 30
    management_url: str | None = None  # the broker's management API, for gce diagnostic's clock check
    max_payload_bytes: int = DEFAULT_LIMIT
    max_result_bytes: int = DEFAULT_LIMIT
    task_attempts: int = 2
    max_output_bytes: int = DEFAULT_OUTPUT  # of a task's stdout, and of its stderr, sent back with its result
    multi_user: bool = False
    identity_mapping_config_path: str | None = None  # absolute, resolved against config.yaml's directory
    identity_mapping_timeout: float = 5.0  # seconds an external mapping program may take
    user_config_template_path: str | None = None
    user_config_schema_path: str | None = None
    user_environment_path: str | None = None
    allowed_identities: tuple[str, ...] | None = None
    allowed_domains: tuple[str, ...] | None = None
    min_uid: int = 1000
    allow_privileged_mapping: bool = False
    idle_timeout: float = 1800.0
    allowed_functions: tuple[str, ...] | None = None
    allowed_serializers: tuple[str, ...] | None = None  # None: any (gce/uep/policy.py)
    status_period: float = 30.0
    debug: bool = False
    raw: dict = field(default_factory=dict, repr=False, compare=False)


def _key_path(error: Any, extra: Any = None) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in [*error.absolute_path, *([extra] if extra else [])]]
    return ".".join(parts).replace(".[", "[") or "(top level)"


def explain(error: Any, data: Any) -> tuple[str, str]:
    """(key path, what is wrong) of a jsonschema ERROR in DATA, quoting no value that could be a secret.

    jsonschema's messages begin with the offending value, whole: a list holding the broker
    URL, the engine mapping with a worker_init that exports a token. Here a value is quoted
    only as `redaction.shown` allows; anything else is named by its kind ("a list").
    """
    path = list(error.absolute_path)
    key = path[-1] if path and isinstance(path[-1], str) else None
    instance, message, extra = error.instance, error.message, None
    if error.validator == "not" and set(error.validator_value or {}) == {"required"}:
        extra, message = error.validator_value["required"][0], "this key is not allowed here"
    elif error.validator is None:  # a `false` subschema: jsonschema names the parent's path only
        message, parent = "this key is not allowed here", data
        for part in path:
            parent = parent[part]
        keys = [k for k, v in parent.items() if v is instance] if isinstance(parent, dict) else []
        extra = keys[0] if len(keys) == 1 else None
    else:
        quoted = repr(instance)
        if quoted in message:
            message = message.replace(quoted, redaction.shown(instance, key))
        if error.validator == "additionalProperties":
            message = f"{message} (allowed keys: {', '.join(sorted(error.schema.get('properties', {}))) or 'none'})"
        message = redaction.hide(message)
        values = [instance] if isinstance(instance, str) else redaction.strings_in(instance, keys=False)
        if redaction.shown(instance, key) != repr(instance) and any(len(s) >= 4 and s in message for s in values):
            # jsonschema quoted a value in a way not foreseen here: say less rather than too much
            message = f"{redaction.kind(instance)} that breaks the schema's {error.validator!r} rule"
    return _key_path(error, extra), message


def validate(data: Any, source: str) -> None:
    """Raise ConfigError naming SOURCE, the key path and what was expected (never a secret)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(CONFIG)
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(list(e.absolute_path)), str(e.absolute_path)))
    if not errors:
        _check_urls(data, source)
        return
    error = jsonschema.exceptions.best_match(errors)
    where, message = explain(error, data)
    if error.validator in ("type", "minimum", "maximum", "exclusiveMinimum") and allowed(error.schema):
        message = f"{message} (allowed: {allowed(error.schema)})"
    if error.validator is None or error.validator == "not":
        message = "this key is not allowed for this engine type"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    raise ConfigError(
        f"invalid configuration in {source}", f"{where}: {message}{more}",
        hint=f"fix {source} and try again; 'gce configure --help' shows the defaults",
    )


def _check_urls(data: dict, source: str) -> None:
    """The broker URLs must be usable as they are: pika's own errors would quote them."""
    broker = data["broker"]
    for key, schemes in (("url", ("amqp", "amqps")), ("management_url", ("http", "https"))):
        why = urls.problem(broker[key], schemes) if key in broker else None
        if why:
            raise ConfigError(f"invalid configuration in {source}", f"broker.{key}: {why}",
                              hint=f"fix {source} and try again; a broker URL reads amqps://USER:PASSWORD@HOST:5671/VHOST")


def check_broker_account(config: EndpointConfig, source: str) -> None:
    """Refuse a broker URL that names no account, before anything connects with it.

    pika would log in as RabbitMQ's default user, guest, and the broker's refusal would
    name a user the person never typed. `gce configure` writes such a placeholder when it
    was given no URL; loading it stays possible (list, status), starting it does not.
    """
    from urllib.parse import urlsplit

    from gce.config.schema import PLACEHOLDER_BROKER_URL

    if urlsplit(config.broker_url).username:
        return
    why = ("is still the placeholder gce configure wrote, which names no broker account"
           if config.broker_url == PLACEHOLDER_BROKER_URL
           else "names no broker account (the broker would take it for its 'guest' user)")
    raise ConfigError(f"no broker is configured for endpoint {config.name!r}", f"broker.url in {source} {why}",
                      hint=f"write the endpoint's broker URL in broker.url of {source} "
                      "(amqps://USER:PASSWORD@HOST:5671/VHOST; gce broker provision --help shows how to create "
                      "its account), then try again")


# What a YAML error quotes: one character, an escape ('\\t'), a token ('<block end>'), or a name
# from the file (an alias, an anchor, a tag: no spaces in those), which is hidden.
_YAML_QUOTED = re.compile(r"'([^'\s]+)'|\"([^\"\s]+)\"")
_YAML_HARMLESS = re.compile(r"^(.|\\(x[0-9a-f]{2}|u[0-9a-f]{4}|.)|<[a-z]+>)$")


def yaml_problem(e: Exception) -> str:
    """What a YAML error says is wrong, without what it quotes of the text: a tag, an alias or
    an anchor is whatever the file holds there, and that may be a password."""
    problem = getattr(e, "problem", None)
    if not isinstance(problem, str):
        position = getattr(e, "position", None)  # a ReaderError: a character YAML does not allow
        return f"a special character at position {position} is not allowed" if position is not None else \
            "the text is not valid YAML"

    def hide(m: re.Match) -> str:
        return m.group(0) if _YAML_HARMLESS.match(m.group(1) or m.group(2)) else f"'{redaction.MASK}'"
    return _YAML_QUOTED.sub(hide, problem)


def parse_yaml(text: str, source: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"cannot parse {source}", f"YAML error{where}: {yaml_problem(e)}", hint=f"fix the YAML syntax in {source}"
        ) from None


def read_endpoint_id(paths: EndpointPaths) -> str:
    try:
        data = json.loads(paths.endpoint_json.read_text())
        return str(data["endpoint_id"])
    except FileNotFoundError:
        raise ConfigError(
            f"endpoint {paths.name!r} has no {paths.endpoint_json}",
            "the endpoint was not configured, or its state directory was removed",
            hint=f"gce configure {paths.name}",
        ) from None
    except PermissionError:
        raise unreadable(paths, paths.endpoint_json) from None
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"cannot read {paths.endpoint_json}", f"{type(e).__name__}: {e}") from None


def _tuple(value: Any) -> tuple[str, ...] | None:
    return tuple(value) if value is not None else None


def from_data(name: str, endpoint_id: str, data: dict, config_dir: Path | None = None) -> EndpointConfig:
    """The EndpointConfig of validated DATA; relative file paths are resolved against CONFIG_DIR."""
    broker = data["broker"]
    limits = data.get("limits") or {}
    allowed = data.get("allowed_functions")

    def path(key: str, default: str | None) -> str | None:
        value = data.get(key, default)
        if value is None or config_dir is None:
            return value
        return str(config_dir / value)  # an absolute value stays as it is

    templated = bool(data.get("multi_user", False))
    return EndpointConfig(
        name=name,
        endpoint_id=endpoint_id,
        broker_url=broker["url"],
        engine=dict(data.get("engine") or {}),
        display_name=data.get("display_name") or name,
        queue_type=broker.get("queue_type", "classic"),
        prefetch=int(broker.get("prefetch", 1000)),
        heartbeat=int(broker.get("heartbeat", 30)),
        management_url=broker.get("management_url"),
        max_payload_bytes=int(limits.get("max_payload_bytes", DEFAULT_LIMIT)),
        max_result_bytes=int(limits.get("max_result_bytes", DEFAULT_LIMIT)),
        task_attempts=int(limits.get("task_attempts", 2)),
        max_output_bytes=int(limits.get("max_output_bytes", DEFAULT_OUTPUT)),
        multi_user=templated,
        identity_mapping_config_path=path("identity_mapping_config_path", None),
        identity_mapping_timeout=float(data.get("identity_mapping_timeout", 5.0)),
        user_config_template_path=path("user_config_template_path", "user_config_template.yaml.j2" if templated else None),
        user_config_schema_path=path("user_config_schema_path", "user_config_schema.json" if templated else None),
        user_environment_path=path("user_environment_path", "user_environment.yaml" if templated else None),
        allowed_identities=_tuple(data.get("allowed_identities")),
        allowed_domains=_tuple(data.get("allowed_domains")),
        min_uid=int(data.get("min_uid", 1000)),
        allow_privileged_mapping=bool(data.get("allow_privileged_mapping", False)),
        idle_timeout=float(data.get("idle_timeout", 1800.0)),
        allowed_functions=tuple(allowed) if allowed is not None else None,
        allowed_serializers=_tuple(data.get("allowed_serializers")),
        status_period=float(data.get("status_period", 30.0)),
        debug=bool(data.get("debug", False)),
        raw=data,
    )


def load(paths: EndpointPaths, engine_options: bool = False) -> EndpointConfig:
    """Read, parse and validate an endpoint's configuration.

    With ENGINE_OPTIONS the engine's keys are also checked against parsl's own signatures
    (gce.config.engine_options): start and restart ask for it; the manager, which must not
    import parsl, does not.
    """
    source = str(paths.config_file)
    try:
        text = paths.config_file.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"endpoint {paths.name!r} is not configured",
            f"{source} does not exist",
            hint=f"gce configure {paths.name}",
        ) from None
    except PermissionError:
        raise unreadable(paths, paths.config_file) from None
    data = parse_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"invalid configuration in {source}", "the file must hold a YAML mapping")
    validate(data, source)
    if engine_options:
        from gce.config import engine_options as options

        options.check(data.get("engine"), source)
    return from_data(paths.name, read_endpoint_id(paths), data, paths.config_file.parent)


def password_exposed(config_file: Path, broker_url: str) -> str | None:
    """Why others may read the broker password in CONFIG_FILE (it holds one and its mode lets
    group or others read it), or None; gce start warns with it, gce diagnostic fails with it.
    OSError when the file cannot be looked at."""
    import stat

    from gce.transport.urls import has_password

    mode = stat.S_IMODE(config_file.stat().st_mode)
    if mode & 0o077 and has_password(broker_url):
        return f"{config_file} holds the broker password and others may read it (mode {mode:04o})"
    return None
