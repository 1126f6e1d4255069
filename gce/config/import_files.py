"""What `gce import` read (``Source``) and makes (``Imported``); the files of an imported endpoint
besides its config.yaml, and writing them all.

A templated endpoint gets the source's user config template (rewritten for gce), its schema,
its user environment and, when gce runs as root, its identity mapping file, each under the
name gce looks for by default. ``write`` creates every file exclusively, config.yaml last,
and removes what it created if any step fails, as ``gce.config.writer.write`` does.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

from gce.config import import_template, writer
from gce.config.paths import EndpointPaths, looks_like_id
from gce.errors import EX_CANTCREAT, GceError, PermissionDenied

# Globus Compute runs a templated endpoint without a schema unchecked; gce needs one: this takes anything.
ANY_OBJECT = b'{\n  "$schema": "https://json-schema.org/draft/2020-12/schema",\n  "type": "object"\n}\n'
HEARTBEAT_PERIOD = 30  # Globus Compute's default heartbeat_period, in seconds


@dataclass
class Source:
    """What was read from the Globus Compute endpoint directory."""

    path: Path
    config: dict
    texts: dict[str, bytes]  # file name (of SOURCE_FILES or the mapping file) -> content
    paths: dict[str, Path]


@dataclass
class Imported:
    config: dict  # the new config.yaml
    endpoint_id: str
    files: dict[str, bytes] = field(default_factory=dict)  # other files of the new endpoint
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (setting, why it was left out)
    template: import_template.Template | None = None


def report_lines(out: Imported) -> list[str]:
    """One line per setting left out: `SETTING: WHY` (newlines and other controls in names removed)."""
    def clean(text: str) -> str:
        return " ".join("".join(c if c.isprintable() else " " for c in text).split())

    return [f"{clean(setting)}: {clean(why)}" for setting, why in out.dropped]


def endpoint_id(source: Source) -> str:
    """The source's endpoint id (SDK scripts name it), or a new one if it has none."""
    try:
        found = json.loads(source.texts.get("endpoint.json", b"{}")).get("endpoint_id")
    except (ValueError, AttributeError):
        found = None
    return str(found).lower() if isinstance(found, str) and looks_like_id(found) else str(uuid.uuid4())


def _packaged(name: str) -> bytes:
    return resources.files("gce").joinpath("templates", writer.MULTI_USER_TEMPLATES, name).read_bytes()


def templated_files(source: Source, src: dict, out: Imported, may_map: bool,
                    check_mapping: Callable[[Any], object]) -> None:
    """Put the templated endpoint's files into OUT (taking their settings out of SRC)."""
    for key in ("user_config_template_path", "user_config_schema_path", "user_environment_path"):
        src.pop(key, None)
    texts = source.texts
    template = texts.get("user_config_template_path") or texts.get("user_config_template.yaml.j2") \
        or texts.get("user_config_template.yaml")
    if template is None:
        out.dropped.append((writer.TEMPLATE_FILE, "the source has none; gce's default template and schema are used"))
        out.files[writer.TEMPLATE_FILE] = _packaged(writer.TEMPLATE_FILE)
        out.files[writer.SCHEMA_FILE] = _packaged(writer.SCHEMA_FILE)
    else:
        out.template = import_template.convert(template.decode(), writer.TEMPLATE_FILE)
        out.dropped.extend(out.template.dropped)
        out.files[writer.TEMPLATE_FILE] = out.template.text.encode()
        out.files[writer.SCHEMA_FILE] = texts.get("user_config_schema_path") or texts.get(writer.SCHEMA_FILE) or ANY_OBJECT
        beats = out.template.idle_heartbeats
        if beats is not None:
            period = src.get("heartbeat_period", HEARTBEAT_PERIOD)
            out.config["idle_timeout"] = beats * (period if isinstance(period, (int, float)) else HEARTBEAT_PERIOD)
    if writer.ENVIRONMENT_FILE in texts:
        out.files[writer.ENVIRONMENT_FILE] = texts[writer.ENVIRONMENT_FILE]
        _check_environment(texts[writer.ENVIRONMENT_FILE], out)
    mapping = texts.get("identity_mapping_config_path")
    src.pop("identity_mapping_config_path", None)
    if mapping is None:
        return
    if not may_map:
        out.dropped.append(("identity_mapping_config_path", "only an endpoint run by root maps identities to local "
                                                           "accounts: run gce import as root to keep the mapping"))
        return
    try:
        check_mapping(json.loads(mapping))
    except ValueError as e:
        out.dropped.append(("identity_mapping_config_path", f"gce cannot use the mapping file: {e}"))
        return
    out.files[writer.IDENTITY_MAPPING_FILE] = mapping
    out.config["identity_mapping_config_path"] = writer.IDENTITY_MAPPING_FILE


def _check_environment(text: bytes, out: Imported) -> None:
    """Report the entries of user_environment.yaml a user endpoint would ignore."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        out.dropped.append((writer.ENVIRONMENT_FILE, f"not YAML ({type(e).__name__}): user endpoints ignore it"))
        return
    if not isinstance(data, dict):
        out.dropped.append((writer.ENVIRONMENT_FILE, "not a mapping of names to strings: user endpoints ignore it"))
        return
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, (str, int, float)) or isinstance(value, bool):
            out.dropped.append((f"{writer.ENVIRONMENT_FILE}: {str(key)[:60]}", "names and values must be strings"))


def check_template(out: Imported, name: str) -> None:
    """Render the converted template once, as gce will, with the schema's defaults, as this user:
    a template that does not render yet is reported (the endpoint is written all the same)."""
    import tempfile

    from gce.config import model, templating
    from gce.config.engine_options import check
    from gce.errors import ConfigError

    if out.template is None:
        return
    with tempfile.TemporaryDirectory(prefix="gce-import-") as tmp:
        for file in (writer.TEMPLATE_FILE, writer.SCHEMA_FILE):
            Path(tmp, file).write_bytes(out.files[file])
        config = model.from_data(name, out.endpoint_id, out.config, config_dir=Path(tmp))
        try:
            rendered = templating.render_here(config, {}, source="no values")
            check(rendered.get("engine"), writer.TEMPLATE_FILE)
        except ConfigError as e:
            why = e.why.replace(tmp + "/", "")
            out.dropped.append((writer.TEMPLATE_FILE, f"it does not render in gce yet ({why}); fix it, then "
                                                      f"check it with gce render-user-config {name}"))


def config_text(out: Imported, source: Source, name: str) -> str:
    """The new config.yaml: a header saying where it came from and what was left out, then the settings."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    lines = [f"# gce endpoint {name!r}: imported by `gce import` on {now}",
             f"# from the Globus Compute endpoint directory {json.dumps(str(source.path))}.",
             f"# Edit this file, then restart the endpoint: gce restart {name}"]
    if out.dropped:
        lines.append("# Settings not carried over, and why:")
        lines += [f"#   {line}" for line in report_lines(out)]
    body = yaml.safe_dump(out.config, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return "\n".join(lines) + "\n\n" + body


def write(paths: EndpointPaths, name: str, out: Imported, source: Source, secret: bool) -> list[Path]:
    """Create endpoint NAME's files; refuse if any of them exists already."""
    files = [(paths.config_dir / n, data) for n, data in out.files.items()]
    writer.refuse_existing(paths, name, [p for p, _ in files])
    record = {"endpoint_id": out.endpoint_id, "name": name, "imported_from": str(source.path),
              "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    todo = [(paths.endpoint_json, (json.dumps(record, indent=2) + "\n").encode(), writer.PUBLIC_MODE), *
            ((p, data, writer.PUBLIC_MODE) for p, data in files),
            (paths.config_file, config_text(out, source, name).encode(), writer.SECRET_MODE if secret else writer.PUBLIC_MODE)]
    shared = "identity_mapping_config_path" in out.config
    created: list[Path] = []
    try:
        for d in (paths.state_dir, paths.config_dir):
            mode = writer.SHARED_DIR_MODE if shared and d == paths.config_dir else writer.DIR_MODE
            d.mkdir(parents=True, exist_ok=True, mode=mode)
            os.chmod(d, mode)
        try:
            for path, data, mode in todo:
                _create(path, data, mode)
                created.append(path)
        except BaseException:
            for path in created:
                path.unlink(missing_ok=True)
            raise
    except FileExistsError as e:
        raise GceError(f"endpoint {name!r} already exists", f"{e.filename} appeared while it was being imported",
                       exit_code=EX_CANTCREAT) from None
    except PermissionError as e:
        raise PermissionDenied(f"cannot create endpoint {name!r}", f"permission denied: {e.filename}",
                               hint="run gce as a user who can write there, or choose another -c/--config-dir") from None
    except OSError as e:
        raise GceError(f"cannot create endpoint {name!r}", f"{e.filename}: {e.strerror}", exit_code=EX_CANTCREAT) from None
    return created


def _create(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the umask filters open's mode
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
