"""gce blocks: the blocks (batch jobs, or local pools) of a running endpoint's user endpoints.

Each block with its scheduler job id, state (and the scheduler's own word for it), age, walltime
left, connected workers and the reason of its last change; --json adds every transition and the
paths of its submit script and output. The manager decides what the caller sees: root and the
endpoint's owner all, a user of a multi-user endpoint only their own user endpoints' blocks.
"""

from __future__ import annotations

import os
import pwd
import time
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from gce import output
from gce.commands import DEFAULT_NAME, DefaultNameArg, own_or_shared_paths
from gce.errors import NotRunning

if TYPE_CHECKING:
    from gce.config.paths import EndpointPaths
    from gce.daemon.client import EndpointClient, EndpointStatus, UepStatus

COLUMNS = ("USER ENDPOINT", "BLOCK", "JOB", "PROVIDER", "STATE", "AGE", "WALLTIME LEFT", "WORKERS", "REASON")


def running_client(name: str) -> tuple[EndpointPaths, EndpointClient]:
    """Endpoint NAME's paths and client; NotRunning (exit 3, as `gce status`) when its manager does
    not run, ConfigError (78) when there is no such endpoint."""
    from gce.daemon.client import EndpointClient

    paths, shared = own_or_shared_paths(name)
    if shared:
        return paths, EndpointClient(paths)  # its socket says whether it runs: its files are root's
    client = EndpointClient(paths)
    live = client.liveness()
    if live.state != "running":
        raise NotRunning(f"endpoint {name!r} is not running", live.reason or f"it is {live.state}",
                         hint=f"gce start {name} --detach")
    return paths, client


def user_of(uep: UepStatus, owner: str) -> str:
    """The local user a user endpoint runs as: named in a multi-user endpoint's keys
    ("alice/3f2a..."); a personal endpoint's one user endpoint ("default") runs as its OWNER."""
    return uep.key.split("/", 1)[0] if "/" in uep.key else owner


def owner_of(paths: EndpointPaths) -> str:
    try:
        uid = paths.config_dir.stat().st_uid
    except OSError:
        uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def chosen(status: EndpointStatus, user: str | None, owner: str) -> list[UepStatus]:
    return [u for u in status.user_endpoints if user is None or user_of(u, owner) == user]


def block_rows(ueps: list[UepStatus], now: float) -> list[list[Any]]:
    """One row per block; an engine that reports only each block's state gives rows of that."""
    rows: list[list[Any]] = []
    for uep in ueps:
        engine = uep.engine
        if not engine.block_list:
            rows += [[uep.key, bid, None, None, state.lower()] + [None] * 4
                     for bid, state in (engine.block_states or {}).items()]
            continue
        for b in engine.block_list:
            state = b.state + (f" ({b.raw_state})" if b.raw_state and b.raw_state.lower() != b.state else "")
            age = output.duration(now - b.submitted_at) if b.submitted_at else None
            left = output.duration(b.walltime_left) if b.walltime_left is not None else None
            rows.append([uep.key, b.block_id, b.job_id, b.provider, state, age, left, b.workers, b.reason])
    return rows


def as_json(ueps: list[UepStatus]) -> list[dict[str, Any]]:
    return [{"user_endpoint": uep.key, **b.to_dict()} for uep in ueps for b in uep.engine.block_list]


def command(
    name: DefaultNameArg = DEFAULT_NAME,
    json_: Annotated[bool, typer.Option("--json", help="Print the blocks as JSON, with every transition "
                                        "and the paths of each block's submit script and output.")] = False,
    user: Annotated[Optional[str], typer.Option("--user", metavar="USER", help="Only the blocks of USER's "
                                                "user endpoints (a local account).")] = None,
) -> None:
    """Show the blocks of a running endpoint: batch jobs (or local pools) and their workers.

    A block's STATE is gce's word for it, with the scheduler's own in parentheses; REASON says
    why it last changed. On a multi-user endpoint, root sees every user's blocks and a user
    their own.

    Exit status: 0, 3 the endpoint is not running, 78 no such endpoint.
    """
    from gce.tui.text import literal

    paths, client = running_client(name)
    owner = owner_of(paths)
    ueps = chosen(client.status(), user, owner)
    if json_:
        output.json(as_json(ueps))
        return
    for uep in ueps:
        if uep.engine.error:
            output.warning(f"user endpoint {literal(uep.key)}: its engine did not say all about its blocks: "
                           f"{literal(uep.engine.error)}")
    rows = block_rows(ueps, time.time())
    if not rows:
        whose = f" of user {user}" if user else ""
        output.line(f"endpoint {name} has no blocks{whose}" + ("" if ueps or not user else
                                                               f" (none of its user endpoints is {user}'s)"))
        return
    output.table(COLUMNS, [[literal(cell) for cell in row] for row in rows])
