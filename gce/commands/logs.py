"""gce logs: an endpoint's manager, user endpoints, interchange and blocks, in one time order."""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated, Optional

import typer

from gce import logview
from gce.commands import DEFAULT_NAME, DefaultNameArg, configured_paths
from gce.config.paths import EndpointPaths, system_mode
from gce.errors import GceError, PermissionDenied

POLL = 0.5  # seconds between two looks at the files with -f


def command(
    name: DefaultNameArg = DEFAULT_NAME,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="Show the last N lines (0: all).")] = 50,
    since: Annotated[Optional[str], typer.Option(
        "--since", metavar="T", help="Only lines from T on: an ISO time (2026-12-06T20:00) or an age (10m, 2h).",
        show_default=False)] = None,
    user: Annotated[Optional[str], typer.Option(
        "--user", metavar="USER", help="Only the user endpoints of local user USER (root only).",
        show_default=False)] = None,
) -> None:
    """Show the logs of endpoint NAME: its manager's, its user endpoints', parsl's interchange's and
    its blocks' output, merged in time order and each line prefixed with where it comes from.
    Under systemd a system endpoint's manager logs to the journal, which is read instead."""
    from gce.commands.diagnostic import journal
    from gce.config import model

    if user is not None and os.geteuid() != 0:
        raise PermissionDenied("cannot show another user's endpoints", "only root may give --user",
                               hint=f"gce logs {name} shows the logs you may read")
    start = logview.parse_since(since) if since else None
    paths = configured_paths(name)
    try:
        multi_user = model.load(paths).multi_user
    except GceError:
        multi_user = False  # a broken config still has logs worth reading
    found = logview.sources(paths, multi_user, user)
    readable = []
    for source in found:
        why = logview.unreadable(source)
        if why:
            typer.echo(f"gce logs: cannot read {source.label} ({source.path}): {why}", err=True)
        else:
            readable.append(source)
    batches = [logview.read(s) for s in readable]
    if user is None and journal.booted() and _uses_journal(paths):
        try:
            batches.append(logview.journal_lines(journal.unit_of(name), lines or 10_000))
        except journal.Unreadable as e:
            typer.echo(f"gce logs: cannot read the journal of {journal.unit_of(name)}: {e}", err=True)
    if not found and not batches:
        typer.echo(f"gce logs: endpoint {name} has no logs yet (looked in {paths.log_file.parent})", err=True)
    _emit(logview.merge(batches, start, lines or None))
    if follow:
        _follow(readable, start)


def _uses_journal(paths: EndpointPaths) -> bool:
    """A system endpoint under systemd logs to its unit's journal, not to a file (DESIGN.md, "Files")."""
    return system_mode() and not paths.log_file.exists()


def _emit(found: list[logview.Line]) -> None:
    for line in found:
        sys.stdout.write(logview.render(line) + "\n")
    sys.stdout.flush()


def _follow(sources: list[logview.Source], start: float | None) -> None:
    """Print what the files gain until Ctrl-C, which ends it with exit status 130 (as a shell does)."""
    try:
        while True:
            time.sleep(POLL)
            batches = []
            for source in sources:
                try:
                    batches.append(logview.read(source))
                except OSError:
                    continue  # rotated away between two looks: the next look reads the new file
            _emit(logview.merge(batches, start))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
