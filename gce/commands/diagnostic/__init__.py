"""gce diagnostic: check this host and its endpoints, say what is wrong, optionally bundle it all.

Checks run in a fixed order and each gives PASS, WARN, FAIL or SKIP with a reason and a
hint. Nothing secret is printed or bundled (DESIGN.md, invariant 5). The checks live in
this package's modules (report.py runs them), imported only when the command runs so
that ``gce --help`` does not pay for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def command(
    endpoint: Annotated[Optional[str], typer.Option(
        "--endpoint", "-e", metavar="NAME", show_default=False,
        help="Check only this endpoint (and this host); default: every endpoint configured here.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print a JSON array of {check, endpoint, status, reason, hint, details}.")] = False,
    make_bundle: Annotated[bool, typer.Option(
        "--bundle", help="Also write gce-diagnostic-<host>-<UTC time>.tar.gz with the report, the configs and "
        "the log tails, every secret removed, to send to support.")] = False,
    bundle_dir: Annotated[Optional[Path], typer.Option(
        "--bundle-dir", metavar="DIR", show_default=False, file_okay=False,
        help="Write the bundle into DIR instead of the current directory (implies --bundle).")] = None,
    identity: Annotated[Optional[str], typer.Option(
        "--identity", metavar="USER", show_default=False,
        help="A broker user name to map in the identity mapping check of multi-user endpoints; "
        "default: the first of allowed_identities.")] = None,
    log_lines: Annotated[int, typer.Option(
        "--log-lines", min=1, max=1000, metavar="N", help="Lines of each log to show and check.")] = 20,
    probe: Annotated[bool, typer.Option(
        "--probe", help="Also submit a no-op task to each endpoint through the broker, as the broker user "
        "of $GCE_BROKER_URL or sdk.yaml, and report the round trip (at most 10 s an endpoint).")] = False,
) -> None:
    """Check this host and its endpoints, and say what is wrong.

    Versions, the OS, each endpoint's config, files, disk space, process, control socket,
    spool (whether the manager can write it, so takes tasks), systemd unit, the way to its broker (DNS, TCP, TLS, login; that its account may read its
    queue and publish results), the clock against the broker host's (through the broker's
    management API), identity mapping and template (multi-user endpoints), and its log (the
    unit's journal under systemd). Each check says PASS, WARN, FAIL or SKIP, why, and what
    to do. Secrets never appear in the output or the bundle.

    Exit status: 0 when no check failed (warnings included), 1 when one did.
    """
    from gce.commands import configured_paths
    from gce.commands.diagnostic import report
    from gce.config.paths import endpoint_paths, list_endpoint_names, refusal

    if endpoint and refusal(endpoint_paths(endpoint).config_dir):
        names = [endpoint]  # one this user may not read: its files check says so
    else:
        names = [configured_paths(endpoint).name] if endpoint else list_endpoint_names()
    if make_bundle and bundle_dir is None:
        bundle_dir = Path.cwd()
    if report.run(names, as_json=as_json, bundle_dir=bundle_dir, identity=identity, log_lines=log_lines,
                  probe=probe):
        raise typer.Exit(1)
