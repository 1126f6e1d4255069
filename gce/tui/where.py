"""Which endpoints gce monitor watches, and where each one's files are.

NAME alone, or every endpoint this account has; root also watches the users' personal endpoints
whose files it finds (labelled USER:NAME), since support staff look at everything on the host.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

from gce.config.paths import (SYSTEM_CONFIG_DIR, EndpointPaths, endpoint_paths, list_endpoint_names, system_endpoint_paths,
                              system_mode, validate_name)
from gce.errors import GceError

Account = tuple[str, int, Path]  # user name, uid, home


def targets(name: str | None, accounts: Iterable[Account] | None = None) -> dict[str, EndpointPaths]:
    """{label: paths} of the endpoints to watch."""
    if name:
        own = endpoint_paths(name)
        if not own.config_dir.exists() and not system_mode() and system_endpoint_paths(name).config_dir.exists():
            return {name: system_endpoint_paths(name)}  # a multi-user endpoint of this host, which this user may use
        return {name: own}
    found = {n: endpoint_paths(n) for n in list_endpoint_names()}
    if not system_mode() and not os.environ.get("GCE_HOME"):
        for n in _system_names():
            found.setdefault(n, system_endpoint_paths(n))
    if system_mode() or accounts is not None:
        for user, uid, home in _accounts() if accounts is None else accounts:
            for n, paths in personal(uid, home):
                found[f"{user}:{n}"] = paths
    return found


def _accounts() -> Iterator[Account]:
    import pwd

    for pw in pwd.getpwall():
        if pw.pw_uid != 0:
            yield pw.pw_name, pw.pw_uid, Path(pw.pw_dir)


def personal(uid: int, home: Path) -> list[tuple[str, EndpointPaths]]:
    """The endpoints under HOME/.gce, at the paths their owner's gce gives them: the control
    socket in /run/user/UID/gce when the owner's session had one, else beside the config."""
    root = home / ".gce"
    try:
        names = sorted(d.name for d in root.iterdir() if (d / "config.yaml").is_file())
    except OSError:
        return []  # no such directory, or not readable: nothing to show
    found = []
    for n in names:
        try:
            validate_name(n)
        except GceError:
            continue
        config = root / n
        run = Path(f"/run/user/{uid}/gce")
        runtime = run if (run / f"{n}.sock").exists() else config
        found.append((n, EndpointPaths(n, config, config, runtime, config / "endpoint.log")))
    return found


def is_personal(label: str) -> bool:
    """Whether LABEL names a user's personal endpoint that root watches (USER:NAME)."""
    return ":" in label and os.geteuid() == 0


def _system_names() -> list[str]:
    """Root's endpoints that this user may ask: those whose control socket is there to connect to
    (a multi-user endpoint answers each local user about their own work)."""
    try:
        names = sorted(d.name for d in SYSTEM_CONFIG_DIR.iterdir() if d.is_dir())
    except OSError:
        return []
    return [n for n in names if system_endpoint_paths(n).control_socket.exists()]
