"""Where an endpoint's files live (DESIGN.md, "Files").

One function decides every location, so the manager, the CLI and the tests agree.
``GCE_HOME`` puts everything of every endpoint under one directory (tests use it).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from gce.errors import PermissionDenied, UsageError

# Names become directory names, unit instance names and socket names: keep them boring.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# sockaddr_un.sun_path is 108 bytes on Linux, including the NUL.
_MAX_SOCKET_PATH = 100


def validate_name(name: str) -> str:
    """Return NAME if it is a safe endpoint name, else raise a UsageError saying why."""
    if not _NAME_RE.match(name or "") or ".." in name:
        raise UsageError(
            f"invalid endpoint name {name!r}",
            "names are 1-63 characters of letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, and contain no '..'",
            hint="choose a name such as 'my-endpoint'",
        )
    return name


def gce_home() -> Path:
    env = os.environ.get("GCE_HOME")
    if env:
        return Path(env).absolute()  # the manager runs from "/": a relative path would move
    return Path.home() / ".gce"


def system_mode() -> bool:
    """Root without GCE_HOME uses the system locations (/etc, /var/lib, /run)."""
    return os.geteuid() == 0 and not os.environ.get("GCE_HOME")


@dataclass(frozen=True)
class EndpointPaths:
    name: str
    config_dir: Path
    state_dir: Path
    runtime_dir: Path
    log_file: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.yaml"

    @property
    def endpoint_json(self) -> Path:
        return self.state_dir / "endpoint.json"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "manager.lock"

    @property
    def state_file(self) -> Path:
        """pid, process start time, host and last exit reason of the manager."""
        return self.state_dir / "manager.json"

    @property
    def spool_dir(self) -> Path:
        return self.state_dir / "spool"

    @property
    def uep_log_dir(self) -> Path:
        return self.state_dir / "uep-logs"

    @property
    def control_socket(self) -> Path:
        sock = self.runtime_dir / f"{self.name}.sock"
        if len(os.fsencode(sock)) <= _MAX_SOCKET_PATH:
            return sock
        # A deep GCE_HOME would overflow sun_path: fall back to a short per-user path.
        digest = hashlib.sha256(os.fsencode(sock)).hexdigest()[:16]
        return Path(f"/tmp/gce-{os.geteuid()}") / f"{digest}.sock"


SYSTEM_CONFIG_DIR = Path("/etc/gce")  # root's endpoints, whoever asks (GCE_HOME does not move them for others)


def system_endpoint_paths(name: str) -> EndpointPaths:
    """Where root's endpoint NAME lives."""
    return EndpointPaths(
        name=name,
        config_dir=SYSTEM_CONFIG_DIR / name,
        state_dir=Path("/var/lib/gce") / name,
        runtime_dir=Path("/run/gce"),
        log_file=Path("/var/log/gce") / f"{name}.log",
    )


def endpoint_paths(name: str) -> EndpointPaths:
    validate_name(name)
    if system_mode():
        return system_endpoint_paths(name)
    home = gce_home()
    runtime = home / name
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and not os.environ.get("GCE_HOME") and os.path.isdir(xdg):
        runtime = Path(xdg) / "gce"
    return EndpointPaths(
        name=name,
        config_dir=home / name,
        state_dir=home / name,
        runtime_dir=runtime,
        log_file=home / name / "endpoint.log",
    )


def refused(path: Path) -> tuple[Path, int, str] | None:
    """(the path, its mode, its owner) of the first directory on the way to PATH, or PATH itself,
    that this process may not read; None if none refuses, or PATH does not exist."""
    import pwd

    path = Path(path).absolute()
    for p in [*reversed(path.parents), path]:
        try:
            st = p.stat()
        except OSError:
            return None
        if p != path:
            need = os.X_OK  # a directory on the way: enough to pass through
        else:
            need = os.R_OK | os.X_OK if stat.S_ISDIR(st.st_mode) else os.R_OK
        if not os.access(p, need):
            try:
                owner = pwd.getpwuid(st.st_uid).pw_name
            except KeyError:
                owner = f"uid {st.st_uid}"
            return p, stat.S_IMODE(st.st_mode), owner
    return None


def refusal(path: Path) -> str:
    """Why this process may not read PATH, naming what refuses, its mode and owner ("" if nothing does)."""
    r = refused(path)
    return f"{r[0]} is mode {r[1]:04o}, owned by {r[2]}" if r else ""


def unreadable(paths: EndpointPaths, path: Path) -> PermissionDenied:
    """The error for an endpoint whose file PATH this user may not read (the caller raises it)."""
    r = refused(path)
    why = refusal(path) or f"{path} cannot be opened"
    owner = r[2] if r else "the endpoint's owner"
    hint = "run gce as root" if owner == "root" else f"run gce as {owner} (or root), or ask {owner} to let you read it"
    return PermissionDenied(f"cannot read endpoint {paths.name!r}", f"permission denied: {why}", hint=hint)


def require_readable(paths: EndpointPaths) -> None:
    """Raise PermissionDenied when this user may not enter the endpoint's config directory."""
    if refusal(paths.config_dir):
        raise unreadable(paths, paths.config_dir)


def config_root() -> Path:
    return SYSTEM_CONFIG_DIR if system_mode() else gce_home()


def list_endpoint_names() -> list[str]:
    root = config_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _NAME_RE.match(p.name) and _has_config(p))


def _has_config(d: Path) -> bool:
    """Whether D holds a config.yaml; one that may not be looked into counts, so that the
    commands that list endpoints can say it is unreadable instead of hiding it."""
    try:
        return (d / "config.yaml").exists()
    except PermissionError:
        return True


# An endpoint id as gce writes it (uuid4, 8-4-4-4-12 hex digits), in either case.
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def looks_like_id(text: str) -> bool:
    """Whether TEXT has the form of an endpoint id (a UUID)."""
    return bool(_UUID_RE.match(text or ""))


def names_with_id(endpoint_id: str) -> list[str]:
    """The configured endpoints whose endpoint.json holds ENDPOINT_ID (compared case-insensitively).
    Endpoints whose id cannot be read are left out: they are no answer to "which one has this id"."""
    import json

    wanted = endpoint_id.lower()
    found = []
    for name in list_endpoint_names():
        try:
            data = json.loads(endpoint_paths(name).endpoint_json.read_text())
            if str(data["endpoint_id"]).lower() == wanted:
                found.append(name)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found
