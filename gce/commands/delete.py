"""gce delete: remove a stopped endpoint's configuration and state."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gce import output
from gce.commands import NameArg, configured_paths
from gce.config.paths import EndpointPaths, endpoint_paths
from gce.errors import AlreadyRunning, GceError, PermissionDenied, UsageError

if TYPE_CHECKING:
    from gce.daemon.pidfile import Liveness


def _endpoint_id(paths: EndpointPaths) -> str:
    from gce.config import model

    try:
        return model.read_endpoint_id(paths)
    except GceError:  # a broken endpoint.json must not prevent deleting it
        return "unknown id"


def remove(paths: EndpointPaths, lock_fd: int) -> list[Path]:
    """Delete the endpoint's directories while holding its lock (so it cannot start meanwhile)."""
    removed = []
    try:
        # State first: config.yaml is what makes an endpoint exist (see paths.list_endpoint_names).
        for d in dict.fromkeys((paths.state_dir, paths.config_dir)):
            if d.exists():
                shutil.rmtree(d)
                removed.append(d)
    except PermissionError as e:
        raise PermissionDenied(
            f"cannot delete endpoint {paths.name!r}", f"permission denied: {e.filename}",
            hint="run gce delete as the endpoint's owner (root for /etc/gce)",
        ) from None
    finally:
        os.close(lock_fd)
    paths.control_socket.unlink(missing_ok=True)
    return removed


def command(
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a stopped endpoint.

    Removes NAME's config.yaml, its endpoint id and its local state.
    The endpoint must be stopped first. Tasks still waiting for it on the broker stay there.
    Without --yes, gce asks for confirmation, and refuses when it cannot ask (no terminal).
    """
    from gce.daemon import pidfile

    paths = endpoint_paths(name)
    if not paths.endpoint_json.exists():  # an endpoint whose config.yaml was removed can still be deleted
        paths = configured_paths(name)
    _refuse_if_running(paths, pidfile.probe(paths))
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"not deleting endpoint {name!r} without confirmation",
                "gce cannot ask for it: standard input is not a terminal",
                hint=f"gce delete {name} --yes",
            )
        where = " and ".join(str(d) for d in dict.fromkeys((paths.config_dir, paths.state_dir)))
        if not typer.confirm(f"Delete endpoint {name} ({_endpoint_id(paths)}) and everything in {where}?"):
            output.line(f"endpoint {name} was not deleted")
            raise typer.Exit(1)
    try:
        lock_fd = pidfile.acquire_lock(paths)  # held while deleting: the endpoint cannot start meanwhile
    except AlreadyRunning:
        _refuse_if_running(paths, pidfile.probe(paths))
        raise
    for d in remove(paths, lock_fd):
        output.line(f"removed {d}")
    output.success(f"endpoint {name} deleted")


def _refuse_if_running(paths: EndpointPaths, live: Liveness) -> None:
    if live.state == "running":
        raise AlreadyRunning(
            f"cannot delete endpoint {paths.name!r}",
            f"it is running (pid {live.pid or '?'} on {live.host or 'this host'})",
            hint=f"gce stop {paths.name}, then gce delete {paths.name}",
        )
