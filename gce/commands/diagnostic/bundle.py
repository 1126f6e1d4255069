"""The support bundle: the report, each endpoint's configs and log tails, secrets removed.

Every member is text that went through one Redactor, which first learned the secrets of
every file collected (so a password from config.yaml is also hidden where a log prints it
bare). The archive is created 0600: even redacted, configs describe a site.
"""

from __future__ import annotations

import io
import os
import re
import socket
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from gce.commands.diagnostic.redact import Redactor
from gce.config.paths import EndpointPaths
from gce.errors import GceError, PermissionDenied

MAX_FILE_BYTES = 1024 * 1024  # a bigger file is cut to its last MiB
CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".j2")
SKIP_NAMES = {"manager.lock"}
LOG_LINES = 500
UEP_LOG_LINES = 200
MAX_UEP_LOGS = 10


@dataclass
class Member:
    name: str  # path inside the archive, below its top directory
    text: str
    redacted: bool = False  # made of redacted parts already (the report)


def _read_tail(path: Path, lines: int | None = None) -> str | None:
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - MAX_FILE_BYTES))
            data = f.read()
    except OSError:
        return None
    text = data.decode(errors="replace")
    if size > MAX_FILE_BYTES:
        text = text.split("\n", 1)[-1]  # the first line is cut: drop it
    if lines is not None:
        text = "\n".join(text.splitlines()[-lines:]) + "\n"
    return text


def config_files(paths: EndpointPaths) -> list[Path]:
    """config.yaml and its companions (templates, schema, mapping, environment), endpoint.json."""
    from gce.config import model

    found: list[Path] = []
    for d in dict.fromkeys((paths.config_dir, paths.state_dir)):
        try:
            found += sorted(p for p in d.iterdir() if p.is_file() and p.suffix in CONFIG_SUFFIXES
                            and p.name not in SKIP_NAMES)
        except OSError:
            continue
    try:
        c = model.load(paths)
        extra = (c.identity_mapping_config_path, c.user_config_template_path, c.user_config_schema_path,
                 c.user_environment_path)
        found += [Path(p) for p in extra if p and Path(p).is_file()]
    except GceError:
        pass  # an invalid config: what sits in its directory is all there is to collect
    return list(dict.fromkeys(found))


def endpoint_members(paths: EndpointPaths) -> list[Member]:
    base = f"endpoints/{paths.name}"
    members = []
    for p in config_files(paths):
        text = _read_tail(p)
        if text is not None:
            where = "config" if p.parent in (paths.config_dir, paths.state_dir) else "config/elsewhere"
            members.append(Member(f"{base}/{where}/{p.name}", text))
    for log in (paths.log_file, paths.log_file.with_name(paths.log_file.name + ".stderr")):
        text = _read_tail(log, LOG_LINES)
        if text is not None:
            members.append(Member(f"{base}/logs/{log.name}", text))
    try:
        ueps = sorted(paths.uep_log_dir.glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        ueps = []
    for log in ueps[:MAX_UEP_LOGS]:
        text = _read_tail(log, UEP_LOG_LINES)
        if text is not None:
            members.append(Member(f"{base}/logs/uep/{log.name}", text))
    return members


def learn(redactor: Redactor, members: Iterable[Member]) -> None:
    """Teach REDACTOR every secret of MEMBERS (parsed YAML/JSON too, where they parse)."""
    import json

    import yaml

    for m in members:
        redactor.learn(m.text)
        if m.name.endswith((".yaml", ".yml", ".json")):
            try:
                redactor.learn_data(json.loads(m.text) if m.name.endswith(".json") else yaml.safe_load(m.text))
            except (ValueError, yaml.YAMLError):
                pass  # not parseable: the text patterns above are all we can apply


def archive_name(host: str | None = None, when: float | None = None) -> str:
    host = re.sub(r"[^A-Za-z0-9.-]", "_", host or socket.gethostname()) or "host"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when if when is not None else time.time()))
    return f"gce-diagnostic-{host}-{stamp}"


def write(directory: Path, members: list[Member], redactor: Redactor, when: float | None = None) -> Path:
    """Write the redacted MEMBERS into DIRECTORY/gce-diagnostic-<host>-<UTC>.tar.gz (mode 0600)."""
    when = time.time() if when is None else when
    top = archive_name(when=when)
    target = directory / f"{top}.tar.gz"
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise GceError(f"cannot write {target}", "it already exists", hint="wait a second and run it again") from None
    except PermissionError:
        raise PermissionDenied(f"cannot write {target}", "permission denied",
                               hint="run from a writable directory, or give --bundle-dir DIR") from None
    except OSError as e:
        raise GceError(f"cannot write {target}", e.strerror or str(e), hint="give --bundle-dir DIR") from None
    with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
        for m in members:
            data = (m.text if m.redacted else redactor.redact(m.text)).encode()
            info = tarfile.TarInfo(f"{top}/{m.name}")
            info.size, info.mtime, info.mode = len(data), int(when), 0o600
            tar.addfile(info, io.BytesIO(data))
    return target
