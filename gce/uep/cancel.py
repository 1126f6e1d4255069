"""Cancelling tasks at the user endpoint, and saying where each of its tasks is.

The manager sends CANCEL_TASKS and ASK_STATES frames (gce.transport.frames) only for tasks it
gave this user endpoint. A task asked to be cancelled is answered CANCELLED unless it succeeded
first, whatever its engine made of it:

- not started yet: taken out of its engine's queue, it never runs;
- running on a ThreadPoolEngine: TaskCancelled is raised in its thread (as a time limit is,
  gce.uep.timelimit: it lands when the thread next runs Python code, not inside a C call);
- running on a ProcessPoolEngine: the worker process running it, and no other, is killed and
  replaced (gce.uep.procpool); the pool's other tasks run on;
- running in parsl (HighThroughputEngine): parsl cannot stop one task; it runs to its end and its
  own outcome is its answer.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

from gce.transport import frames
from gce.transport.control import RUNNING, UNKNOWN, WAITING
from gce.transport.message import ErrorCode, ResultHeaders, failure
from gce.transport.payload import PayloadError, unpack_result

log = logging.getLogger(__name__)
MAX_IDS = 1000  # task ids read from one frame (the manager sends at most a request's)


class TaskCancelled(BaseException):
    """Raised in the thread running a cancelled task (a BaseException: the function's own
    ``except Exception`` does not take it)."""

    def __init__(self) -> None:
        super().__init__("the task was cancelled by its submitter")


def _ids(header: dict[str, Any]) -> list[str]:
    ids = header.get("task_ids")
    return [t for t in ids[:MAX_IDS] if isinstance(t, str)] if isinstance(ids, list) else []


class Cancels:
    """What the user endpoint was asked to cancel, and its engine's futures until each is answered."""

    def __init__(self, engine: Callable[[], Any], send_frame: Callable[..., None], endpoint_id: str) -> None:
        self._engine = engine  # the user endpoint's engine, once made
        self._send_frame = send_frame
        self.endpoint_id = endpoint_id
        self._lock = threading.Lock()
        self._futures: dict[str, Future[Any]] = {}  # task id -> its engine future, until answered
        self._asked: dict[str, str] = {}  # task id -> what was done to cancel it

    def track(self, task_id: str, fut: Future[Any]) -> None:
        with self._lock:
            self._futures[task_id] = fut

    # -- cancelling ------------------------------------------------------------------
    def on_cancel(self, header: dict[str, Any]) -> None:
        """CANCEL_TASKS: stop each named task this user endpoint holds (others are answered already)."""
        for task_id in _ids(header):
            with self._lock:
                fut = self._futures.get(task_id)
                if fut is None or task_id in self._asked:
                    continue
                self._asked[task_id] = "it was being stopped"
            try:
                how = stop(self._engine(), task_id, fut, functools.partial(self._say, task_id))
            except Exception as e:  # this task stays as it was; the user endpoint carries on
                log.exception("task %s: cancelling it failed", task_id)
                how = f"cancelling it failed ({type(e).__name__}: {e})"
                self._say(task_id, how)
            log.info("task %s: cancelled by its submitter: %s", task_id, how)

    def _say(self, task_id: str, how: str) -> None:
        """What was done to cancel TASK_ID: said before it is done, since a future's callbacks (and
        so its answer) may run inside the cancel itself."""
        with self._lock:
            if task_id in self._asked:
                self._asked[task_id] = how

    def cancelled(self, task_id: str, fut: Future[Any]) -> str | None:
        """Called with TASK_ID's outcome: what was done to cancel it when it was asked to be and did
        not succeed first (then its answer is CANCELLED), else None (its outcome is its answer)."""
        with self._lock:
            self._futures.pop(task_id, None)
            how = self._asked.pop(task_id, None)
        if how is None or _succeeded(fut):
            return None
        return how

    def answer(self, task_id: str, started: float, how: str) -> ResultHeaders:
        rh = failure(task_id, self.endpoint_id, ErrorCode.CANCELLED, f"the task was cancelled by its submitter: {how}")
        rh.timings = {"started": started, "finished": time.time()}
        return rh

    # -- states ----------------------------------------------------------------------
    def on_ask(self, header: dict[str, Any]) -> None:
        """ASK_STATES: where each named task is, in a TASK_STATES frame."""
        ask = header.get("ask")
        if isinstance(ask, bool) or not isinstance(ask, int):
            return
        engine = self._engine()
        held = _held_by_pools(engine) if getattr(engine, "type", "") == "HighThroughputEngine" else {}
        states: dict[str, dict[str, Any]] = {}
        for task_id in _ids(header):
            with self._lock:
                known = task_id in self._futures
            began = (engine.started_at(task_id) or held.get(task_id)) if engine is not None and known else None
            states[task_id] = {"state": RUNNING, "since": began} if began else {"state": WAITING if known else UNKNOWN}
        self._send_frame(frames.TASK_STATES, {"ask": ask, "states": states})


def _succeeded(fut: Future[Any]) -> bool:
    if fut.cancelled() or fut.exception() is not None:
        return False
    try:
        return unpack_result(fut.result()).ok
    except PayloadError:
        return False


NOT_STARTED = "it had not started, and never runs"


def _held_by_pools(engine: Any) -> dict[str, float]:
    """A HighThroughputEngine's tasks its worker pools hold, by task id, with when each was handed to
    the engine: parsl's interchange tells which pool holds which task (gce's MANAGER_DETAIL command),
    not when a worker began it, and a pool takes no more tasks than it has workers to run them."""
    from gce.uep import parsl_compat

    try:
        detail = parsl_compat.manager_detail(engine.htex)
    except Exception as e:  # the interchange may be busy or gone: the tasks are said to be waiting
        log.info("could not ask parsl's interchange which tasks its worker pools hold: %s", e)
        return {}
    with engine._lock:
        by_htex_id, handed = dict(engine._by_htex_id), dict(engine._tasks)
    now = time.time()
    return {t: handed.get(t) or now for pool in detail.values() if isinstance(pool, dict)
            for htex_id in pool.get("tasks", []) for t in by_htex_id.get(htex_id, []) if t}


def stop(engine: Any, task_id: str, fut: Future[Any], say: Callable[[str], None]) -> str:
    """Stop TASK_ID on ENGINE by what its engine allows; what was done, in words, told to SAY first."""
    kind = getattr(engine, "type", "")
    if kind == "ThreadPoolEngine":
        say(NOT_STARTED)
        if fut.cancel():
            return NOT_STARTED
        return _interrupt_thread(task_id, say)
    if kind == "ProcessPoolEngine":
        return _stop_process_job(engine, task_id, say)
    if kind == "HighThroughputEngine":
        return _stop_parsl_task(engine, task_id, fut, say)
    say(f"the {kind or 'engine'} cannot cancel tasks: it runs to its end")
    return f"the {kind or 'engine'} cannot cancel tasks: it runs to its end"


def _interrupt_thread(task_id: str, say: Callable[[str], None]) -> str:
    # The thread whose stack runs ThreadPoolEngine._run for TASK_ID: found when asked, so running a
    # task costs no bookkeeping.
    for ident, frame in sys._current_frames().items():
        f: Any = frame
        while f is not None:
            if f.f_code.co_name == "_run" and f.f_locals.get("task_id") == task_id \
                    and type(f.f_locals.get("self")).__name__ == "ThreadPoolEngine":
                # As gce.uep.timelimit interrupts a thread at its limit; lands at its next bytecode.
                say(INTERRUPTED)
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(TaskCancelled))
                return INTERRUPTED
            f = f.f_back
    say("it had just finished")
    return "it had just finished"


INTERRUPTED = "its thread was interrupted (a thread inside a C call stops when the call returns)"


def _stop_process_job(engine: Any, task_id: str, say: Callable[[str], None]) -> str:
    job = engine.pool.claim(task_id)  # gce.uep.procpool
    if job is None:
        say("it had just finished")
        return "it had just finished"
    if job.worker is None:  # taken out of the waiting ones
        say(NOT_STARTED)
        job.future.cancel()
        return NOT_STARTED
    say(KILLED)
    if engine.pool.kill(job):
        return KILLED
    say("it had just finished")
    return "it had just finished"


KILLED = "its worker process was killed (another takes its place; the pool's other tasks run on)"


def _stop_parsl_task(engine: Any, task_id: str, fut: Future[Any], say: Callable[[str], None]) -> str:
    with engine._lock:
        waiting = next(((p, o) for p, o in engine._waiting if o is fut), None)
        if waiting is not None:
            engine._waiting.remove(waiting)
            engine._ids.pop(fut, None)
    if waiting is not None:
        say(NOT_STARTED)
        fut.cancel()
        return NOT_STARTED
    say("the HighThroughputEngine cannot stop a task parsl holds: it runs to its end")
    return "the HighThroughputEngine cannot stop a task parsl holds: it runs to its end"
