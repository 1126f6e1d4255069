"""gce monitor: a live view of endpoints, user endpoints, blocks, workers and tasks."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Optional

import typer

from gce import output
from gce.commands import complete_name, configured_paths, resolve_name
from gce.config.paths import EndpointPaths
from gce.errors import PermissionDenied


def _resolve(name: Optional[str]) -> Optional[str]:
    return resolve_name(name) if name else None


def command(
    name: Annotated[Optional[str], typer.Argument(
        metavar="[NAME]", help="The endpoint's name or id; none: every endpoint this account can see.",
        show_default=False, autocompletion=complete_name, callback=_resolve)] = None,
    refresh: Annotated[float, typer.Option("-r", "--refresh", metavar="SECS", min=0.2,
                                           help="Seconds between refreshes (and how long a manager may take to answer).")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Print one snapshot as tables and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one snapshot as JSON and exit.")] = False,
    plain: Annotated[bool, typer.Option("--plain", help="Flat lines of what changed, for screen readers.")] = False,
) -> None:
    """Watch endpoints live: their user endpoints, blocks, workers, tasks and logs.

    Keys: 1-6 or Tab change screens, arrows or j/k move, Enter opens, Esc goes back,
    / filters, s sorts, p pauses, ? helps, q quits. When stdout is not a terminal, or with
    --once, one snapshot is printed as tables.
    """
    from gce.tui.collect import collect
    from gce.tui.report import print_tables
    from gce.tui.where import targets

    if name:
        try:
            configured_paths(name)  # "no such endpoint" before anything else
        except PermissionDenied:
            pass  # another account's (multi-user) endpoint: its control socket says what this user may see
    names = targets(name)
    if as_json:
        output.json(collect(names, timeout=refresh).to_dict())
        return
    if plain:
        _plain(names, refresh, once=once or not sys.stdout.isatty())
        return
    if once or not sys.stdout.isatty():
        print_tables(collect(names, timeout=refresh))
        return
    from gce.tui.app import MonitorApp

    MonitorApp(names, refresh).run()


def _plain(names: dict[str, EndpointPaths], refresh: float, once: bool) -> None:
    """Print what changed, every REFRESH seconds, until interrupted (once: the first snapshot)."""
    from gce.tui.collect import collect
    from gce.tui.report import plain_lines

    previous = None
    try:
        while True:
            snap = collect(names, previous, timeout=refresh)
            for line in plain_lines(snap, previous):
                output.line(line)
            if once:
                return
            previous = snap
            time.sleep(refresh)
    except KeyboardInterrupt:
        return
