"""What the monitor's keys do to endpoints, through gce.daemon.client: each returns what to say,
or raises a GceError whose sentence the screen shows (a refusal included). No textual here: the
screens run these in a thread worker."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from gce.config.paths import EndpointPaths
from gce.errors import GceError, PermissionDenied

RESTART_TIMEOUT = 90.0
TAIL_BYTES = 16 * 1024


def _client(paths: EndpointPaths) -> Any:
    from gce.daemon.client import EndpointClient

    return EndpointClient(paths)


def stop_endpoint(paths: EndpointPaths) -> str:
    _client(paths).stop()
    return f"endpoint {paths.name} is stopping"


def restart_endpoint(paths: EndpointPaths) -> str:
    if paths.config_dir.stat().st_uid != os.geteuid():
        # started from here it would run as this account, not as its owner
        raise PermissionDenied(f"cannot restart endpoint {paths.name} from here", "it belongs to another account",
                               hint=f"its owner runs: gce restart {paths.name}")
    client = _client(paths)
    client.stop_all(timeout=RESTART_TIMEOUT)
    started = client.start_detached(timeout=RESTART_TIMEOUT)
    return f"endpoint {paths.name} runs again (pid {started.get('pid')})"


def stop_uep(paths: EndpointPaths, key: str) -> str:
    _client(paths).stop_uep(key)
    return f"user endpoint {key} of {paths.name} is stopping"


def cancel_block(paths: EndpointPaths, uep: str, block_id: str) -> str:
    _client(paths).cancel_block(uep, block_id)
    return f"block {block_id} of {uep} is being cancelled"


def task_sections(paths: EndpointPaths, row: dict[str, Any]) -> list[tuple[str, str]]:
    """A task's error sentence and remote traceback, as the manager tells them; what the monitor
    already knows of it when the manager cannot say more."""
    known = [("task", f"{row.get('task_id')}: {row.get('state') or '?'}"
                      + (f" ({row['function_name']})" if row.get("function_name") else ""))]
    try:
        detail = _client(paths).task(str(row.get("task_id")))
    except GceError as e:
        why = f"{row.get('code')}: {row.get('message')}" if row.get("code") else str(row.get("message") or "")
        return known + [("error", why or "-"), ("traceback", f"(not available: {e.what})")]
    return known + [("error", detail.error or f"{detail.event.code}: {detail.event.message}"),
                    ("traceback", detail.traceback or "(the user endpoint sent none)")]


def block_sections(block: dict[str, Any]) -> list[tuple[str, str]]:
    """A block's transitions, its submit script and the tail of its stdout and stderr."""
    moves = "\n".join(f"{_clock(t.get('at'))}  {t.get('state')}  {t.get('raw_state') or ''}  {t.get('reason') or ''}"
                       for t in block.get("transitions") or []) or "-"
    sections = [("transitions", moves)]
    for what in ("submit_script", "stdout", "stderr"):
        path = block.get(what)
        sections.append((f"{what.replace('_', ' ')}: {path or '-'}", _tail(path) if path else "-"))
    return sections


def _tail(path: str) -> str:
    try:
        with Path(path).open("rb") as f:
            end = f.seek(0, 2)
            f.seek(max(0, end - TAIL_BYTES))
            return f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"cannot read it: {e.strerror or e}"


def _clock(at: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if isinstance(at, (int, float)) else "?"
