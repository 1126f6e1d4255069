"""gce delete: remove a stopped endpoint's configuration and state."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gce import output
from gce.commands import DEFAULT_NAME, DefaultNameArg, configured_paths
from gce.config.paths import EndpointPaths, endpoint_paths
from gce.errors import AlreadyRunning, GceError, PermissionDenied, UsageError

if TYPE_CHECKING:
    from gce.daemon.client import Liveness


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
    name: DefaultNameArg = DEFAULT_NAME,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a stopped endpoint.

    Removes NAME's config.yaml, its endpoint id and its local state.
    The endpoint must be stopped first. Tasks still waiting for it on the broker stay there,
    and so does its broker account: gce says how to revoke it (gce broker revoke).
    Without --yes, gce asks for confirmation, and refuses when it cannot ask (no terminal).
    """
    from gce.daemon.client import EndpointClient

    paths = endpoint_paths(name)
    if not paths.endpoint_json.exists():  # an endpoint whose config.yaml was removed can still be deleted
        paths = configured_paths(name)
    client = EndpointClient(paths)
    _refuse_if_running(paths, client.liveness())
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
        lock_fd = client.take_lock()  # held while deleting: the endpoint cannot start meanwhile
    except AlreadyRunning:
        _refuse_if_running(paths, client.liveness())
        raise
    account = _broker_account(paths)  # read before config.yaml goes
    for d in remove(paths, lock_fd):
        output.line(f"removed {d}")
    output.success(f"endpoint {name} deleted")
    if account is not None:
        _say_account_remains(name, *account)


def _broker_account(paths: EndpointPaths) -> tuple[str, str, str] | None:
    """(broker user, host:port, vhost) of the endpoint's broker URL, if it names a user."""
    from urllib.parse import unquote, urlsplit

    import yaml

    try:
        url = ((yaml.safe_load(paths.config_file.read_text()) or {}).get("broker") or {}).get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or not parts.username:
            return None
        return unquote(parts.username), f"{parts.hostname}:{parts.port or 5672}", unquote(parts.path[1:]) or "/"
    except (OSError, ValueError, AttributeError, yaml.YAMLError):  # a broken config must not prevent deleting it
        return None


def _say_account_remains(name: str, user: str, where: str, vhost: str) -> None:
    """The broker (often another host) still lets the account in: say so, and how to revoke it."""
    from shlex import quote

    from gce.transport.provision import endpoint_account

    output.line(f"its broker account {user} still exists at {where}, vhost {vhost}")
    on_vhost = "" if vhost == "gce" else f" --vhost {quote(vhost)}"
    if user == endpoint_account(name):
        output.hint(f"revoke it on the broker host: gce broker revoke --endpoint {name}{on_vhost}")
    else:  # not one gce made for this endpoint alone: others may share it
        output.hint(f"if nothing else uses it, revoke it on the broker host: gce broker revoke --user {quote(user)}")


def _refuse_if_running(paths: EndpointPaths, live: Liveness) -> None:
    if live.state == "running":
        raise AlreadyRunning(
            f"cannot delete endpoint {paths.name!r}",
            f"it is running (pid {live.pid or '?'} on {live.host or 'this host'})",
            hint=f"gce stop {paths.name}, then gce delete {paths.name}",
        )
