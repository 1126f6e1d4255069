"""A Globus Compute endpoint directory, converted into a gce endpoint (what `gce import` does).

``read_source`` reads the directory (every file opened read-only: the source is never changed);
``convert`` is pure apart from asking parsl which keyword arguments its classes take
(``gce.config.engine_options``): it keeps each setting gce takes, renames the few whose names
differ, and lists every other one with the reason it was left out. ``write`` creates the new
endpoint's files exclusively, as ``gce configure`` does, so an existing endpoint is never touched.

A config.yaml with an ``engine`` is a personal endpoint; one without is, since Globus Compute 2.x,
an endpoint whose user endpoints are rendered from ``user_config_template.yaml.j2``: gce's
templated (``multi_user``) endpoint. The template is rewritten by ``gce.config.import_template``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from gce.config import engine_options, model, writer
from gce.config.import_files import Imported, Source, endpoint_id, report_lines, templated_files
from gce.config.paths import looks_like_id, names_with_id
from gce.config.schema import CONFIG, ENGINE_TYPES, LAUNCHER_TYPES, PROVIDER_TYPES
from gce.errors import ConfigError, UsageError

SOURCE_FILES = ("config.yaml", "config.py", "endpoint.json", "user_config_template.yaml.j2",
                "user_config_template.yaml", "user_config_schema.json", "user_environment.yaml")
ENGINE_NAMES = {"GlobusComputeEngine": "HighThroughputEngine", "HighThroughputEngine": "HighThroughputEngine",
                "ProcessPoolEngine": "ProcessPoolEngine", "ThreadPoolEngine": "ThreadPoolEngine"}
_WHO = ("gce decides who may submit by broker accounts (gce broker provision) and allowed_identities / "
        "allowed_domains")
REASONS = {
    "amqp_port": "gce connects to its own broker, whose port is part of broker.url",
    "environment": "it selects a Globus Compute web service; gce has none",
    "local_compute_services": "it selects a Globus Compute web service; gce has none",
    "authentication_policy": f"Globus Auth policies do not apply: {_WHO}",
    "subscription_id": "a Globus subscription has no meaning for gce",
    "admins": f"Globus identities do not apply: {_WHO}",
    "public": "visibility in Globus's web app; gce has no web app",
    "high_assurance": "gce has no high-assurance mode",
    "heartbeat_threshold": "gce watches the broker link with AMQP heartbeats (broker.heartbeat)",
    "idle_heartbeats_soft": "a personal gce endpoint runs until it is stopped",
    "idle_heartbeats_hard": "a personal gce endpoint runs until it is stopped",
    "pam": "gce opens no PAM session for user endpoints",
    "allowed_functions": "its ids name functions registered with Globus Compute's web service; gce's are the "
                         "sha256 of the function: list those of the functions to allow",
}


def _read(path: Path) -> bytes:
    with open(path, "rb") as f:  # read-only: the source directory is never written
        return f.read()


def read_source(path: Path) -> Source:
    """Read the endpoint directory PATH; UsageError/ConfigError when it is not one."""
    path = path.expanduser().absolute()
    if not path.is_dir():
        raise UsageError(f"cannot import {path}", "no such directory",
                         hint="give a Globus Compute endpoint's directory, e.g. ~/.globus_compute/default")
    texts, paths = {}, {}
    for name in SOURCE_FILES:
        p = path / name
        try:
            texts[name], paths[name] = _read(p), p
        except FileNotFoundError:
            continue
        except OSError as e:
            raise ConfigError(f"cannot read {p}", e.strerror or str(e), hint="run gce import as a user who can read it")
    if "config.yaml" not in texts and "config.py" not in texts:
        raise UsageError(f"cannot import {path}", "it holds no config.yaml: it is not a Globus Compute endpoint's directory",
                         hint="give a directory such as ~/.globus_compute/NAME")
    config = model.parse_yaml(texts.get("config.yaml", b"").decode(), str(path / "config.yaml")) or {}
    if not isinstance(config, dict):
        raise ConfigError(f"cannot import {path / 'config.yaml'}", "it is not a YAML mapping")
    for key, default in (("user_config_template_path", None), ("user_config_schema_path", None),
                         ("identity_mapping_config_path", None)):
        named = config.get(key, default)
        if isinstance(named, str) and named:
            p = path / Path(named).expanduser()  # an absolute path stays as it is
            try:
                texts[key], paths[key] = _read(p), p
            except OSError as e:
                raise ConfigError(f"cannot read {p}", f"{key} in config.yaml names it: {e.strerror or e}") from None
    return Source(path, config, texts, paths)


def _check(candidate: dict) -> str | None:
    """Why gce refuses config CANDIDATE (its first problem), or None."""
    try:
        model.validate(candidate, "config.yaml")
        engine_options.check(candidate.get("engine"), "config.yaml")
    except ConfigError as e:
        return e.why
    return None


def _config_with(engine: dict) -> dict:
    return {"broker": {"url": writer.DEFAULT_BROKER_URL}, "engine": engine}


def _add_keys(target: dict, source: dict, where: str, root: dict, out: Imported, skip: tuple[str, ...] = ()) -> None:
    """Copy each key of SOURCE into TARGET (a part of the engine mapping ROOT) that gce takes."""
    for key, value in source.items():
        if key in skip:
            continue
        if where == "engine" and key in engine_options.HTEX_SET_BY_GCE:
            out.dropped.append((f"{where}.{key}", "gce sets it itself"))
            continue
        target[key] = value
        why = _check(_config_with(root))
        if why:
            del target[key]
            out.dropped.append((f"{where}.{key}", why.removeprefix(f"{where}.{key}: ")))


def convert_engine(engine: Any, out: Imported) -> dict:
    """Globus Compute's engine mapping, as gce's (each key gce does not take reported in OUT)."""
    if not isinstance(engine, dict):
        out.dropped.append(("engine", "it is not a mapping; the endpoint gets a one-block local engine"))
        engine = {}
    kind = ENGINE_NAMES.get(str(engine.get("type", "GlobusComputeEngine")), str(engine.get("type")))
    if kind not in ENGINE_TYPES:
        out.dropped.append(("engine.type", f"gce has no {kind} (it runs {', '.join(ENGINE_TYPES)}); "
                                          "HighThroughputEngine is used instead"))
        kind = "HighThroughputEngine"
    source = dict(engine)
    lifted = source.pop("job_status_kwargs", None)
    if isinstance(lifted, dict):  # Globus Compute passes these to parsl's job status poller; gce takes them here
        for key in ("max_idletime", "strategy_period"):
            if key in lifted:
                source.setdefault(key, lifted.pop(key))
        for key in lifted:
            out.dropped.append((f"engine.job_status_kwargs.{key}", "gce's engine takes max_idletime and strategy_period"))
    if kind == "HighThroughputEngine" and "max_workers" in source:  # its older name
        source.setdefault("max_workers_per_node", source.pop("max_workers"))
    if isinstance(source.get("address"), dict):
        source.pop("address")
        out.dropped.append(("engine.address", "gce takes the address as a string, not a function to call: "
                                              "write this host's address for the workers to reach"))
    result: dict = {"type": kind}
    _add_keys(result, source, "engine", result, out, skip=("type", "provider"))
    provider = source.get("provider")
    if provider is not None and kind == "HighThroughputEngine":
        _convert_provider(provider, result, out)
    elif provider is not None:
        out.dropped.append(("engine.provider", f"a {kind} runs on this machine only"))
    return result


def _convert_provider(provider: Any, engine: dict, out: Imported) -> None:
    kind = provider.get("type") if isinstance(provider, dict) else None
    if kind not in PROVIDER_TYPES:
        out.dropped.append(("engine.provider", f"gce runs no {kind} (it runs {', '.join(PROVIDER_TYPES)}); "
                                               "blocks run on this machine (LocalProvider)"))
        return
    engine["provider"] = result = {"type": kind}
    _add_keys(result, provider, "engine.provider", engine, out, skip=("type", "launcher"))
    launcher = provider.get("launcher")
    if launcher is None:
        return
    kind = launcher.get("type") if isinstance(launcher, dict) else None
    if kind not in LAUNCHER_TYPES:
        out.dropped.append(("engine.provider.launcher", f"gce has no {kind} (it has {', '.join(LAUNCHER_TYPES)}); "
                                                        "the provider's default launcher is used"))
        return
    result["launcher"] = {"type": kind}
    _add_keys(result["launcher"], launcher, "engine.provider.launcher", engine, out, skip=("type",))


def convert(source: Source, broker_url: str, *, may_map: bool,
            check_mapping: Callable[[Any], object]) -> Imported:
    """SOURCE as a gce endpoint using BROKER_URL. MAY_MAP: identities may be mapped (gce runs as root);
    CHECK_MAPPING raises ValueError for an identity mapping document gce cannot use."""
    out = Imported({"display_name": None, "broker": {"url": broker_url}}, endpoint_id(source))
    src = dict(source.config)
    if "config.py" in source.texts:
        out.dropped.append(("config.py", "a Python config is code, not settings: gce reads config.yaml only "
                                         "(it was imported; convert config.py's settings by hand)"))
    display = src.pop("display_name", None)
    if isinstance(display, str) and display and display != "None":
        out.config["display_name"] = display[:256]
    else:
        del out.config["display_name"]
    templated = "engine" not in src or bool(src.get("multi_user"))
    engine = src.pop("engine", None)
    src.pop("multi_user", None)
    if templated:
        out.config["multi_user"] = True
        if engine is not None:
            out.dropped.append(("engine", "a templated endpoint's engine comes from its user config template"))
        templated_files(source, src, out, may_map, check_mapping)
    else:
        out.config["engine"] = convert_engine(engine, out)
    if "heartbeat_period" in src:
        _top(out, "status_period", src.pop("heartbeat_period"), "heartbeat_period")
    for key, value in src.items():
        if key in CONFIG["properties"]:
            _top(out, key, value, key, REASONS.get(key))  # e.g. allowed_functions of gce's own ids
        elif value is not None:
            out.dropped.append((key, REASONS.get(key, f"gce's config.yaml has no {key!r} setting")))
    why = _check(out.config)
    if why:  # each setting passed alone: together they should too
        raise ConfigError("cannot import the endpoint", f"the converted config.yaml is invalid: {why}")
    return out


def _top(out: Imported, key: str, value: Any, was: str, reason: str | None = None) -> None:
    """Set KEY in the new config if gce takes VALUE there; else report WAS with REASON (or gce's own)."""
    candidate = {**out.config, key: value}
    why = _check(candidate if "engine" in candidate or candidate.get("multi_user") else {**candidate, "multi_user": True})
    if why:
        out.dropped.append((was, reason or why.removeprefix(f"{key}: ")))
    else:
        out.config[key] = value


def secret(out: Imported) -> bool:
    from gce.transport.urls import has_password

    url = out.config["broker"]["url"]
    return url == writer.DEFAULT_BROKER_URL or has_password(url)


def check_id(out: Imported) -> None:
    """A source id another gce endpoint has already is replaced by a new one (reported)."""
    import uuid

    if looks_like_id(out.endpoint_id) and names_with_id(out.endpoint_id):
        out.dropped.append(("endpoint_id", f"endpoint {names_with_id(out.endpoint_id)[0]!r} has it already; "
                                           "the imported endpoint gets a new id"))
        out.endpoint_id = str(uuid.uuid4())


__all__ = ["Imported", "Source", "convert", "read_source", "report_lines"]
