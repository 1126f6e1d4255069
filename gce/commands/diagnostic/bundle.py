"""The support bundle: the report, each endpoint's configs and log tails, secrets removed.

Logs are the manager's file and its stderr file, or under systemd its unit's journal; the
user endpoints' logs and stderr files in the endpoint's state directory; and, for a
multi-user endpoint checked by root, each local user's ``~/.gce/uep-logs/NAME/`` (where
gce/daemon/routing.py puts the logs of the UEPs it runs as that user). A user owns those:
only regular files that user owns are read, never through a symbolic link, so a link
planted there cannot bring another file into root's bundle. parsl's side comes too, found
by the same code as ``gce logs`` (gce/logview.py): the interchange's log, the blocks' submit
scripts and their output, the workers' logs; and the versions of the installed packages.

Every member is text that went through one Redactor, which first learned the secrets of
every file collected (so a password from config.yaml is also hidden where a log prints it
bare). The archive is created 0600: even redacted, configs describe a site.
"""

from __future__ import annotations

import io
import os
import pwd
import re
import socket
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from gce.commands.diagnostic import journal
from gce.commands.diagnostic.redact import Redactor
from gce.config.paths import EndpointPaths
from gce.errors import GceError, PermissionDenied
from gce.logfiles import open_regular

MAX_FILE_BYTES = 1024 * 1024  # a bigger file is cut to its last MiB
CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".j2")
SKIP_NAMES = {"manager.lock"}
LOG_LINES = 500
UEP_LOG_LINES = 200
MAX_UEP_LOGS = 10
MAX_PARSL_FILES = 40  # the newest; a long-lived endpoint leaves a script and two outputs per block


@dataclass
class Member:
    name: str  # path inside the archive, below its top directory
    text: str
    redacted: bool = False  # made of redacted parts already (the report)


def _read_tail(path: Path, lines: int | None = None, owner: int | None = None) -> str | None:
    """The end of PATH; with OWNER, only a regular file of that uid, not through a symlink."""
    try:
        f = open(path, "rb") if owner is None else open_regular(path, owner)
        with f:
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
    if journal.booted():
        unit = journal.unit_of(paths.name)
        try:
            lines = journal.tail(unit, LOG_LINES)
        except journal.Unreadable:
            lines = []  # the log check says why
        if lines:
            members.append(Member(f"{base}/logs/journal-{unit}.log", "\n".join(lines) + "\n"))
    for where, path, owner in _newest(uep_logs(paths))[:MAX_UEP_LOGS]:
        text = _read_tail(path, UEP_LOG_LINES, owner)
        if text is not None:
            members.append(Member(f"{base}/logs/uep/{where}{path.name}", text))
    return members + parsl_members(paths, base)


def parsl_members(paths: EndpointPaths, base: str) -> list[Member]:
    from gce import logview

    found = {s.path: s for s in logview.parsl_files(paths, _multi_user(paths))}.values()
    newest = _newest([(s.where, s.path, s.owner) for s in found])[:MAX_PARSL_FILES]
    members = []
    for where, path, owner in newest:
        text = _read_tail(path, UEP_LOG_LINES, owner)
        if text is not None:
            members.append(Member(f"{base}/parsl/{where}", text))
    return members


def versions() -> Member:
    """The installed distributions, name==version a line: what gce and parsl ran with."""
    from importlib import metadata

    found = {(d.metadata["Name"] or "?", d.version) for d in metadata.distributions()}
    return Member("versions.txt", "".join(f"{n}=={v}\n" for n, v in sorted(found, key=lambda nv: nv[0].lower())))


def uep_logs(paths: EndpointPaths) -> list[tuple[str, Path, int | None]]:
    """(folder in the bundle, file, the uid that must own it or None) of every UEP log found."""
    found: list[tuple[str, Path, int | None]] = []
    for pattern in ("*.log", "*.stderr"):
        found += [("", p, None) for p in _glob(paths.uep_log_dir, pattern)]
    if os.geteuid() != 0 or not _multi_user(paths):
        return found
    homes: dict[str, tuple[str, int]] = {}
    for pw in pwd.getpwall():  # local accounts, and directory ones where NSS enumerates them
        if pw.pw_uid != 0 and pw.pw_dir.startswith("/"):
            homes.setdefault(pw.pw_dir, (pw.pw_name, pw.pw_uid))
    for home, (user, uid) in sorted(homes.items()):
        found += [(f"{user}/", p, uid) for p in _glob(Path(home, ".gce", "uep-logs", paths.name), "*.log")]
    return found


def _glob(directory: Path, pattern: str) -> list[Path]:
    try:
        return [p for p in directory.glob(pattern) if not p.is_symlink()]
    except OSError:
        return []


def _newest(found: list[tuple[str, Path, int | None]]) -> list[tuple[str, Path, int | None]]:
    def mtime(item: tuple[str, Path, int | None]) -> float:
        try:
            return item[1].lstat().st_mtime
        except OSError:
            return 0.0
    return sorted(found, key=mtime, reverse=True)


def _multi_user(paths: EndpointPaths) -> bool:
    from gce.config import model

    try:
        return model.load(paths).multi_user
    except GceError:
        return False


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
        for m in [*members, versions()]:
            data = (m.text if m.redacted else redactor.redact(m.text)).encode()
            info = tarfile.TarInfo(f"{top}/{m.name}")
            info.size, info.mtime, info.mode = len(data), int(when), 0o600
            tar.addfile(info, io.BytesIO(data))
    return target
