"""What gce diagnostic does: run the checks in order, print them, write the bundle.

Endpoints are checked concurrently (their network checks wait on timeouts) and printed in
order as each is done. Every result goes through one Redactor that first learned the
secrets of every file collected, before it is printed, put in JSON or bundled.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from gce import output
from gce.commands.diagnostic import bundle, checks, clock, cluster, host, logs, multiuser, network, probe_task
from gce.commands.diagnostic.redact import Redactor
from gce.commands.diagnostic.result import (FAIL, Result, guarded, section_table, section_title, skip, summary,
                                            warn)
from gce.config.paths import EndpointPaths, config_root, endpoint_paths

MAX_PARALLEL = 8


def check_endpoint(paths: EndpointPaths, identity: str | None, log_lines: int, probe: bool = False) -> list[Result]:
    """Every check of one endpoint, in order."""
    ctx = checks.Context(paths)
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("config", lambda: checks.config(ctx)),
        ("files", lambda: checks.files(ctx)),
        ("disk space", lambda: checks.disk(ctx)),
        ("process", lambda: checks.process(ctx)),
        ("control socket", lambda: checks.control(ctx)),
        ("spool", lambda: checks.spool(ctx)),
        ("audit", lambda: checks.audit(ctx)),
        ("uep python", lambda: checks.uep_python(ctx)),
        ("blocks", lambda: checks.blocks(ctx)),
        ("systemd unit", lambda: checks.systemd(ctx)),
        ("broker", lambda: broker(ctx)),
        ("identity mapping", lambda: multiuser.identity_mapping(ctx, identity)),
        ("user template", lambda: multiuser.template(ctx)),
        ("log", lambda: logs.log(ctx, log_lines)),
    ]
    if probe:  # after the broker checks, which say why a login fails better than a task can
        steps.insert([name for name, _ in steps].index("broker") + 1, (probe_task.CHECK, lambda: probe_task.probe(ctx)))
    results: list[Result] = []
    for name, step in steps:
        results += guarded(name, step)
    for r in results:
        r.endpoint = paths.name
    return results


def broker(ctx: checks.Context) -> list[Result]:
    if ctx.config is None:
        return [skip(name, "the config did not load") for name in (*network.CHECKS, "clock skew")]
    c = ctx.config
    running = ctx.live is not None and ctx.live.state == "running"
    results = cluster.checks(c.broker_url, c.endpoint_id, running, c.queue_type)
    if results[0].status == FAIL and not c.management_url:
        return results + [skip("clock skew", "the broker's host name does not resolve")]
    return results + [clock.check(c.broker_url, c.management_url)]


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


def run(names: list[str], *, as_json: bool, bundle_dir: Path | None, identity: str | None, log_lines: int,
        probe: bool = False) -> bool:
    """Check this host and the endpoints NAMES, print the report, write a bundle into BUNDLE_DIR
    unless it is None; True when a check failed."""
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
            futures = [pool.submit(check_endpoint, p, identity, log_lines, probe) for p in all_paths]
            for p, fut in zip(all_paths, futures):
                show(section_title(p.name), fut.result())

    results = [r for _, rs in sections for r in rs]
    report = [r.as_dict() for r in results]
    if as_json:
        output.json(report)
    else:
        output.line(summary(results), style="bold")
    if bundle_dir is not None:
        text = report_text(sections, results)
        members += [bundle.Member("report.txt", text, redacted=True),
                    bundle.Member("report.json", json.dumps(report, indent=2), redacted=True)]
        target = bundle.write(bundle_dir, members, redactor, when=started)
        if as_json:  # stdout holds only the JSON
            output.console(stderr=True).print(f"bundle written: {target}", soft_wrap=True)
        else:
            output.line(f"bundle written: {target}")
    return any(r.status == FAIL for r in results)

