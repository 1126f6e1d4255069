"""gce diagnostic: check this host and its endpoints, say what is wrong, optionally bundle it all.

Checks run in a fixed order and each gives PASS, WARN, FAIL or SKIP with a reason and a
hint; endpoints are checked concurrently (their network checks wait on timeouts) and
printed in order. Nothing secret is printed or bundled (DESIGN.md, invariant 5): every
line goes through one Redactor that learned the secrets of every file read.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from gce import output
from gce.commands.diagnostic import bundle, checks, host, multiuser, network
from gce.commands.diagnostic.redact import Redactor
from gce.commands.diagnostic.result import (FAIL, Result, guarded, section_table, section_title, skip, summary,
                                            warn)
from gce.config.paths import EndpointPaths, config_root, endpoint_paths, list_endpoint_names

BROKER_CHECKS = ("broker dns", "broker tcp", "broker tls", "broker login", "broker queue")
MAX_PARALLEL = 8


def check_endpoint(paths: EndpointPaths, identity: str | None, log_lines: int) -> list[Result]:
    """Every check of one endpoint, in order."""
    ctx = checks.Context(paths)
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("config", lambda: checks.config(ctx)),
        ("files", lambda: checks.files(ctx)),
        ("disk space", lambda: checks.disk(ctx)),
        ("process", lambda: checks.process(ctx)),
        ("control socket", lambda: checks.control(ctx)),
        ("uep python", lambda: checks.uep_python(ctx)),
        ("systemd unit", lambda: checks.systemd(ctx)),
        ("broker", lambda: broker(ctx)),
        ("identity mapping", lambda: multiuser.identity_mapping(ctx, identity)),
        ("user template", lambda: multiuser.template(ctx)),
        ("log", lambda: checks.log(ctx, log_lines)),
    ]
    results: list[Result] = []
    for name, step in steps:
        results += guarded(name, step)
    for r in results:
        r.endpoint = paths.name
    return results


def broker(ctx: checks.Context) -> list[Result]:
    if ctx.config is None:
        return [skip(name, "the config did not load") for name in BROKER_CHECKS] + [network.clock()]
    running = ctx.live is not None and ctx.live.state == "running"
    return network.checks(ctx.config.broker_url, ctx.config.endpoint_id, running)


def clean(redactor: Redactor, r: Result) -> Result:
    return Result(**redactor.redact_data(r.as_dict()))


def report_text(sections: list[tuple[str, list[Result]]], results: list[Result]) -> str:
    """The report as plain text, for the bundle."""
    import io

    from rich.console import Console

    buf = io.StringIO()
    con = Console(file=buf, width=160, color_system=None, markup=False, emoji=False, highlight=False)
    for title, rs in sections:
        con.print(section_table(title, rs))
        con.print()
    con.print(summary(results))
    return "".join(line.rstrip() + "\n" for line in buf.getvalue().splitlines())


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
) -> None:
    """Check this host and its endpoints, and say what is wrong.

    Versions, the OS, each endpoint's config, files, disk space, process, control socket,
    systemd unit, the way to its broker (DNS, TCP, TLS, login, its queue), identity mapping
    and template (multi-user endpoints), and its log. Each check says PASS, WARN, FAIL or
    SKIP, why, and what to do. Secrets never appear in the output or the bundle.

    Exit status: 0 when no check failed (warnings included), 1 when one did.
    """
    from gce.commands import configured_paths

    names = [configured_paths(endpoint).name] if endpoint else list_endpoint_names()
    all_paths = [endpoint_paths(n) for n in names]
    members = [m for p in all_paths for m in bundle.endpoint_members(p)]
    redactor = Redactor()
    bundle.learn(redactor, members)
    started = time.time()

    sections: list[tuple[str, list[Result]]] = []

    def show(title: str, rs: list[Result]) -> None:
        rs = [clean(redactor, r) for r in rs]
        sections.append((title, rs))
        if not as_json:
            output.render(section_table(title, rs))
            output.line("")

    here = guarded("host", host.checks)
    if not names:
        here.append(warn("endpoints", f"no endpoints are configured in {config_root()}", "gce configure NAME"))
    show(section_title(None), here)
    if all_paths:
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(all_paths)),
                                thread_name_prefix="gce-diagnostic") as pool:
            futures = [pool.submit(check_endpoint, p, identity, log_lines) for p in all_paths]
            for p, fut in zip(all_paths, futures):
                show(section_title(p.name), fut.result())

    results = [r for _, rs in sections for r in rs]
    report = [r.as_dict() for r in results]
    if as_json:
        output.json(report)
    else:
        output.line(summary(results), style="bold")
    if make_bundle or bundle_dir is not None:
        import json

        text = report_text(sections, results)
        members += [bundle.Member("report.txt", text, redacted=True),
                    bundle.Member("report.json", json.dumps(report, indent=2), redacted=True)]
        target = bundle.write(bundle_dir or Path.cwd(), members, redactor, when=started)
        if as_json:  # stdout holds only the JSON
            output.console(stderr=True).print(f"bundle written: {target}", soft_wrap=True)
        else:
            output.line(f"bundle written: {target}")
    if any(r.status == FAIL for r in results):
        raise typer.Exit(1)

