"""Walltime-aware placement: a task with a time limit goes only to a worker pool whose block will
still run when the limit is up.

A batch block's worker pool stops taking tasks at its ``drain_time`` (its start plus parsl's
``drain_period``, which gce sets to the walltime less a margin: gce.uep.breaker.drain_period); its
block ends about ``margin`` seconds later. A task whose limit is W seconds fits a pool when
``drain_time + margin - now >= W``. A pool without a drain time (local blocks, no walltime) fits
every task. A task that fits no pool now waits in the interchange's queue, where parsl's scaling
strategy sees it and starts a block (which has its whole walltime); one whose limit is longer than
a whole block's walltime less START_SLACK is refused when it is submitted (gce.uep.engines), so none
waits forever.

The engine puts the limit in the task's HTEX context under CONTEXT_KEY (parsl passes the context
to the interchange and the worker pool, which read only their own keys). The choice is made in
the interchange process (gce.uep.interchange): ``teach_placement`` lets its loop hand a pool only
the tasks that fit it, highest priority first, leaving the others queued. Like gce.uep.parsl_compat
it relies on parsl's code, checked first: where that changed, parsl places tasks as it always did.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, Callable

CONTEXT_KEY = "gce_limit"  # {"seconds": the task's limit, "margin": its block's drain margin}
# A worker pool registers some seconds after its block starts, and a task is placed after that: a
# task may ask for at most its block's walltime less this, or no pool would ever fit it.
START_SLACK = 10.0
# What teach_placement relies on, in the interchange's process_tasks_to_send.
LOOP_LINES = ("m = self._ready_managers[manager_id]", "tasks = self.get_tasks(real_capacity)")


def too_long(limit: float | None, walltime: float, shown: str) -> str | None:
    """Why a task whose limit is LIMIT seconds can run on no block of WALLTIME seconds (SHOWN as the
    provider's config says it); None when it can, or has no limit."""
    most = walltime - START_SLACK
    if not limit or limit <= most:
        return None
    return (f"the task's walltime of {limit:g} s is longer than a block's walltime ({shown}) allows: a task may "
            f"ask for at most {most:g} s of it. Ask for less, or raise the provider's walltime in the endpoint's "
            "config.")


def fits(context: dict[str, Any], manager: dict[str, Any], now: float) -> bool:
    """Whether a task of CONTEXT (its HTEX context) may go to MANAGER (the interchange's record of
    a worker pool) at NOW."""
    limit = context.get(CONTEXT_KEY)
    drain = manager.get("drain_time")
    if not isinstance(limit, dict) or not isinstance(drain, (int, float)) or drain == float("inf"):
        return True
    return float(drain) + float(limit.get("margin", 0)) - now >= float(limit.get("seconds", 0))


def take_fitting(queue: Any, count: int, manager: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """Up to COUNT tasks taken from QUEUE (the interchange's pending queue: a SortedList of
    (-priority, -task_id, message) popped from its end) that fit MANAGER, highest priority first."""
    taken: list[dict[str, Any]] = []
    i = len(queue) - 1
    while i >= 0 and len(taken) < count:
        message = queue[i][-1]
        if fits(message.get("context") or {}, manager, now):
            queue.pop(i)
            taken.append(message)
        i -= 1
    return taken


class _Watched:
    """The interchange's dict of worker pools, noting the record its loop looked up last (the pool
    it is about to hand tasks to)."""

    def __init__(self, managers: dict[Any, Any]) -> None:
        self.managers = managers
        self.last: dict[str, Any] | None = None

    def __getitem__(self, key: Any) -> Any:
        self.last = self.managers[key]
        return self.last

    def __iter__(self) -> Any:
        return iter(self.managers)

    def __len__(self) -> int:
        return len(self.managers)

    def __contains__(self, key: Any) -> bool:
        return key in self.managers

    def __getattr__(self, name: str) -> Any:
        return getattr(self.managers, name)


def teach_placement(module: Any) -> bool:
    """Make the Interchange of MODULE (parsl's interchange module, imported) place tasks by their
    limit. False, with nothing changed, when its loop is not the one this relies on."""
    cls = getattr(module, "Interchange", None)
    send: Callable[..., Any] | None = getattr(cls, "process_tasks_to_send", None)
    get: Callable[..., Any] | None = getattr(cls, "get_tasks", None)
    if send is None or get is None:
        return False
    try:
        source = inspect.getsource(send)
    except (OSError, TypeError):
        return False
    if not all(line in source for line in LOOP_LINES):
        return False

    def process_tasks_to_send(self: Any, *args: Any, **kwargs: Any) -> Any:
        managers = self._ready_managers
        self._ready_managers = self._gce_watched = _Watched(managers)
        try:
            return send(self, *args, **kwargs)
        finally:
            self._ready_managers, self._gce_watched = managers, None

    def get_tasks(self: Any, count: int) -> Any:
        watched = getattr(self, "_gce_watched", None)
        if watched is None or watched.last is None:
            return get(self, count)
        return take_fitting(self.pending_task_queue, count, watched.last, time.time())

    setattr(cls, "process_tasks_to_send", process_tasks_to_send)
    setattr(cls, "get_tasks", get_tasks)
    return True
