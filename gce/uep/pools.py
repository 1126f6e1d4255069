"""The engine every user endpoint engine is, and the engines that are a pool on this host.

An engine takes opaque task payloads and returns result payloads (bytes), running
``gce.uep.execute.run_task`` on its workers: the UEP itself never unpickles what a submitter
sent, it only passes bytes through. Besides its figures, an engine's status names what it runs
on (versions), its workers (nodes) and its batch jobs (blocks): see gce/daemon/status.py.
"""

from __future__ import annotations

import itertools
import math
import os
import platform
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from gce import __version__ as gce_version
from gce.transport.message import ErrorCode
from gce.uep import sandbox
from gce.uep.execute import run_task

log = logging.getLogger(__name__)

class WorkerLost(Exception):
    """The worker running a task died; str() says how."""


class TaskRefused(Exception):
    """The engine answers a task itself, with an error code of gce.transport.message.ErrorCode
    (TIMEOUT, WALLTIME, BLOCKS_FAILING...) and a sentence that says why and what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# Keys of a task's resource_specification that gce reads itself and never hands to a provider.
GCE_RESOURCE_KEYS = ("walltime",)


def split_spec(resource_spec: dict) -> tuple[dict, float | None]:
    """(the resource specification without gce's own keys, the task's time limit in seconds or
    None). ValueError naming a walltime that is not a positive, finite number of seconds (the SDK
    never sends one, another client might)."""
    spec = {k: v for k, v in (resource_spec or {}).items() if k not in GCE_RESOURCE_KEYS}
    walltime = (resource_spec or {}).get("walltime")
    if walltime is None:
        return spec, None
    if isinstance(walltime, bool) or not isinstance(walltime, (int, float)) or not 0 < walltime < math.inf:
        raise ValueError(f"the task's resource_specification['walltime'] must be a positive, finite number "
                         f"of seconds, not {walltime!r}")
    return spec, float(walltime)


def versions() -> dict[str, str | None]:
    """What this user endpoint runs: Python, parsl (read from its metadata: importing it costs a
    local pool half a second) and gce."""
    from importlib import metadata

    try:
        parsl: str | None = metadata.version("parsl")
    except metadata.PackageNotFoundError:
        parsl = None
    return {"python": platform.python_version(), "parsl": parsl, "gce": gce_version}


# A user endpoint holds at most WINDOW_PER_SLOT times the tasks its workers take at once (and
# no fewer than MIN_WINDOW): its manager keeps the rest of a backlog spooled on disk and sends
# more as results come back (gce.daemon.dispatch), so a million waiting tasks cost the user
# endpoint no more memory than a few hundred.
WINDOW_PER_SLOT = 4
MIN_WINDOW = 64


class Engine:
    type = "Engine"
    # What became of a task the user endpoint answered TIMEOUT itself, its worker having said nothing.
    overrun = "its worker may still be running it"

    def __init__(self, options: dict, run_dir: str, max_result_bytes: int, max_output_bytes: int = 64 << 10) -> None:
        self.options = options
        self.run_dir = run_dir
        self.max_result_bytes = max_result_bytes
        self.max_output_bytes = max_output_bytes  # of each of a task's stdout and stderr; 0: not captured
        self.done = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._outstanding = 0
        # Task id -> when the UEP handed it to the engine, oldest first; workers pick tasks
        # unseen by the UEP, so this is what the engine knows of what they run.
        self._tasks: dict[str, float] = {}
        self._started: dict[str, float] = {}  # task id -> when a worker began it, where the engine knows
        self._versions = versions()
        self.task_dirs = sandbox.take(options, run_dir, self.type)  # run_in_sandbox, working_dir
        self._task_env: dict[str, dict[str, str]] = {}  # task id -> its own variables (its submitter's versions)

    def task_context(self, task_id: str) -> dict[str, Any]:
        """Where task TASK_ID runs and what it is told, for its worker (gce.uep.sandbox)."""
        with self._lock:
            env = self._task_env.get(task_id)
        return self.task_dirs.context(task_id, env)

    def start(self) -> None:
        raise NotImplementedError

    @property
    def capacity(self) -> int:
        """How many tasks its workers take at once, once started."""
        return 1

    def window(self) -> int:
        """How many tasks its manager may have sent it and not had answered (see WINDOW_PER_SLOT)."""
        return max(MIN_WINDOW, WINDOW_PER_SLOT * self.capacity)

    def _submit(self, payload: bytes, resource_spec: dict, task_id: str = "") -> Future:
        raise NotImplementedError

    def submit(self, payload: bytes, resource_spec: dict, task_id: str = "",
               env: dict[str, str] | None = None) -> Future:
        """ENV: variables of this task alone, set on its worker around it (gce.uep.sandbox)."""
        with self._lock:
            self._outstanding += 1
            if task_id:
                self._tasks[task_id] = time.time()
                if env:
                    self._task_env[task_id] = env
        fut = self._submit(payload, resource_spec, task_id)
        fut.add_done_callback(lambda f: self._count(f, task_id))
        return fut

    def _count(self, fut: Future, task_id: str = "") -> None:
        with self._lock:
            self._outstanding -= 1
            self._tasks.pop(task_id, None)
            self._started.pop(task_id, None)
            self._task_env.pop(task_id, None)
            if not fut.cancelled() and fut.exception() is None:  # one cancelled (gce.uep.cancel) failed
                self.done += 1
            else:
                self.failed += 1

    def status(self) -> dict[str, Any]:
        return {"type": self.type, "outstanding": self._outstanding, "done": self.done, "failed": self.failed,
                "versions": dict(self._versions), "block_list": [], "nodes": [], "breaker": None}

    def started_at(self, task_id: str) -> float | None:
        """When a worker began TASK_ID; None while it waits, or when this engine cannot tell (the
        user endpoint's deadline for a time limit counts from it: gce.uep.deadlines)."""
        with self._lock:
            return self._started.get(task_id)

    def _begin(self, task_id: str) -> None:
        with self._lock:
            if task_id in self._tasks:
                self._started[task_id] = time.time()

    def oldest_tasks(self, n: int) -> list[dict[str, Any]]:
        """The N tasks handed to the engine longest ago and not done: the ones its busy workers run."""
        with self._lock:  # the first N only: a status must not cost the whole backlog
            tasks = list(itertools.islice(self._tasks.items(), max(0, n)))
        return [{"task_id": tid, "started_at": at} for tid, at in tasks]

    def cancel_block(self, block_id: str) -> bool:
        """Cancel block BLOCK_ID; False when this engine has no such block."""
        return False

    def shutdown(self) -> None:
        raise NotImplementedError


class _LocalPoolEngine(Engine):
    """A pool of ``max_workers`` (default: one per CPU) on this host: one block, one manager."""

    pool: Any

    @property
    def workers(self) -> int:
        return int(self.options.get("max_workers") or os.cpu_count() or 1)

    @property
    def capacity(self) -> int:
        return self.workers

    def status(self) -> dict[str, Any]:
        s = super().status()
        busy = min(self.workers, s["outstanding"])
        s.update(blocks=1, managers=1, workers_total=self.workers,
                 workers_idle=max(0, self.workers - s["outstanding"]), running=busy)
        s["nodes"] = [{"manager": "local", "host": platform.node(), "block_id": None, "workers": self.workers,
                       "busy": busy, "idle": self.workers - busy, "last_heartbeat": None,
                       "python": self._versions["python"], "parsl": None, "tasks": self.oldest_tasks(busy)}]
        return s

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class ThreadPoolEngine(_LocalPoolEngine):
    type = "ThreadPoolEngine"
    overrun = "a thread cannot be killed: it is left running until the function returns"

    def start(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="gce-worker")

    def _submit(self, payload: bytes, resource_spec: dict, task_id: str = "") -> Future:
        _, limit = split_spec(resource_spec)
        return self.pool.submit(self._run, task_id, payload, limit)

    def _run(self, task_id: str, payload: bytes, limit: float | None) -> bytes:
        self._begin(task_id)
        return run_task(payload, self.max_result_bytes, self.max_output_bytes, limit)


class ProcessPoolEngine(_LocalPoolEngine):
    """A local pool of worker processes (gce.uep.procpool), each given one task at a time: a task
    handed to a worker runs at once, and its time limit counts from then.

    A worker that dies costs its own task alone and is replaced. When the death was a time
    limit's (a worker kills its process when its function will not stop: gce.uep.timelimit), the
    task is answered TIMEOUT; when its submitter cancelled it (gce.uep.cancel), CANCELLED;
    otherwise it fails WORKER_LOST, which gce.uep.retries may run again.
    """

    type = "ProcessPoolEngine"

    def start(self) -> None:
        import multiprocessing

        from gce.uep.procpool import ProcessPool

        self.pool = ProcessPool(multiprocessing.get_context("spawn"), self.workers, self.max_result_bytes,
                                self.max_output_bytes, self._lost, self._handed)
        self.pool.start()

    def _submit(self, payload: bytes, resource_spec: dict, task_id: str = "") -> Future:
        from gce.uep.poolreader import Job

        _, limit = split_spec(resource_spec)
        job = Job(task_id, payload, limit, self.task_context(task_id))
        self.pool.submit(job)
        return job.future

    def _handed(self, job: Any) -> None:  # a worker begins JOB now (told holding the pool's lock)
        with self._lock:
            if job.task_id in self._tasks:
                self._started[job.task_id] = job.began

    def _lost(self, job: Any, exitcode: int | None) -> BaseException:
        if job.cancelled:  # answered CANCELLED (gce.uep.cancel), never run again
            return TaskRefused(ErrorCode.CANCELLED, "the task was cancelled by its submitter: its worker process "
                               "was killed")
        if job.past_limit(time.time()):
            return TaskRefused(ErrorCode.TIMEOUT, (
                f"the task ran past its time limit of {job.limit:g} s and was stopped: its worker process was "
                "killed (its walltime, or the Executor's task_timeout)"))
        how = "killed by a signal or out of memory"
        if exitcode is not None and exitcode < 0:
            import signal

            try:
                how = f"killed by {signal.Signals(-exitcode).name}: a signal, or out of memory"
            except ValueError:
                pass
        elif exitcode is not None:
            how = f"it exited with status {exitcode}"
        return WorkerLost(f"a worker process of the process pool died abruptly ({how})")

    def shutdown(self) -> None:
        self.pool.shutdown()
