"""What each worker pool of a HighThroughputEngine runs, for its status (gce monitor's Workers screen)."""

from __future__ import annotations

from typing import Any, Callable


def worker_pools(managers: list[dict[str, Any]], detail: dict[str, dict[str, Any]], started: dict[str, float],
                 by_htex_id: dict[Any, list[str]], oldest: Callable[[int], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One entry per connected worker pool (MANAGERS, as parsl's interchange lists them), with the
    tasks the interchange gave it when gce's interchange answers DETAIL (held by its workers or
    queued in the pool: parsl does not tell them apart; BY_HTEX_ID maps a parsl task to the gce
    tasks it runs, STARTED gives when each was handed over); else a lone pool is said to run the
    OLDEST outstanding tasks."""
    nodes = []
    for m in managers:
        count = int(m["worker_count"])
        busy = min(count, int(m["tasks"]))
        more = detail.get(str(m["manager"]))
        if more is not None:
            ids = [t for htex_id in more["tasks"] for t in by_htex_id.get(htex_id, []) if t]
            tasks = [{"task_id": t, "started_at": started.get(t)} for t in ids]
        else:
            tasks = oldest(busy) if len(managers) == 1 else []
        nodes.append({"manager": str(m["manager"]), "host": (more or {}).get("hostname"),
                      "block_id": None if m["block_id"] is None else str(m["block_id"]),
                      "workers": count, "busy": busy, "idle": count - busy,
                      "last_heartbeat": (more or {}).get("last_heartbeat"),
                      "python": m["python_version"], "parsl": m["parsl_version"], "tasks": tasks})
    return nodes
