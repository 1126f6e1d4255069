"""The process pool's records (a Job, a Worker) and its reader thread: one thread waits
(``multiprocessing.connection.wait``) on every worker's pipe and every worker's sentinel at once. A
reply completes its job's future there and the worker takes the next waiting job; a worker that
dies costs its own job alone (and what that job started: gce/uep/poolworker.py), and another
worker takes its place. gce.uep.procpool.ProcessPool has this; the submitting side is there.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import secrets
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Callable

from gce.uep.futures import settle
from gce.uep.poolworker import RESULT, kill_task_processes

log = logging.getLogger("gce.uep.procpool")

# A job's marker: this user endpoint's own random prefix and a count, unique among its jobs and not
# guessable from outside it (a secrets.token_hex per job cost a getrandom call each).
_MARKER_PREFIX = f"{os.getpid():x}-{secrets.token_hex(8)}-"
_MARKERS = itertools.count(1)


def new_marker() -> str:
    return f"{_MARKER_PREFIX}{next(_MARKERS)}"


# A worker that dies with no task (it could not even start, say) is replaced after this long,
# doubled each time it happens again in a row, up to RESPAWN_MAX: not in a tight loop.
RESPAWN_FIRST = 0.1
RESPAWN_MAX = 5.0


@dataclass(eq=False)
class Job:
    """A task of the pool: its future is completed by the pool's reader thread."""

    task_id: str
    payload: bytes
    limit: float | None
    context: dict[str, Any] | None
    future: Future[bytes] = field(default_factory=Future)
    worker: Worker | None = None  # the one running it, once handed over
    began: float = 0.0
    cancelled: bool = False  # by its submitter: its worker was killed for it
    marker: str = field(default_factory=new_marker)  # in its processes' environment

    def past_limit(self, now: float) -> bool:
        return self.limit is not None and now >= self.began + self.limit


@dataclass(eq=False)
class Worker:
    process: BaseProcess
    conn: Connection  # the pool's end of the worker's pipe
    job: Job | None = None
    retired: bool = False  # given no more jobs: it is dying, or killed for a job cancelled as it ended


class PoolReader:
    """The reader thread's half of gce.uep.procpool.ProcessPool: its state is the pool's (set in
    ProcessPool.__init__), the three steps below are the pool's own."""

    _lock: threading.Lock
    _workers: list[Worker]
    _idle: deque[Worker]
    waiting: deque[Job]
    _closing: bool
    _respawns: int  # workers to start once RESPAWN's delay has passed
    _respawn_at: float
    _idle_deaths: int  # in a row
    _wake_r: Connection
    _lost: Callable[[Job, int | None], BaseException]

    def _spawn(self) -> None:
        raise NotImplementedError

    def _assign(self, worker: Worker, job: Job) -> None:
        raise NotImplementedError

    def _send(self, worker: Worker, job: Job) -> None:
        raise NotImplementedError

    def _read(self) -> None:
        while not self._closing:
            try:
                self._read_once()
            except Exception:  # a bug here must not leave every later task waiting for ever
                log.exception("the process pool's reader failed; it carries on")
                time.sleep(0.1)

    def _read_once(self) -> None:
        with self._lock:
            if self._closing:
                return
            by_conn = {w.conn: w for w in self._workers}
            by_sentinel = {w.process.sentinel: w for w in self._workers}
            timeout = max(0.0, self._respawn_at - time.monotonic()) if self._respawns else None
        try:
            ready = wait([self._wake_r, *by_conn, *by_sentinel], timeout)
        except (OSError, ValueError):  # a pipe closed by shutdown() meanwhile
            return
        dead: list[Worker] = []
        for obj in ready:
            if obj is self._wake_r:
                self._wake_r.recv_bytes()
            elif obj in by_conn:
                worker = by_conn[obj]  # a worker that answered and then died is given no more
                if not self._on_reply(worker, dying=worker.process.sentinel in ready):
                    dead.append(worker)
            elif isinstance(obj, int):
                dead.append(by_sentinel[obj])
        for worker in dict.fromkeys(dead):
            self._on_death(worker)
        self._respawn()

    def _on_reply(self, worker: Worker, dying: bool) -> bool:
        """Complete WORKER's job from what came on its pipe; False when the pipe says it died."""
        try:
            reply = worker.conn.recv_bytes()
        except (EOFError, OSError):
            return False
        with self._lock:
            job, worker.job = worker.job, None
            self._idle_deaths = 0
            following = None
            if dying or (job is not None and job.cancelled):
                # A cancel may have killed it after it answered (the answer stands): its sentinel
                # fires soon, and a job handed to it now would be lost with it.
                worker.retired = True
                if not dying:
                    kill_worker(worker)
            else:
                following = self._next_for(worker)
        if following is not None:  # the next one first: it need not wait for this one's callbacks
            self._send(worker, following)
        if job is None:
            return True
        if reply[:1] == RESULT:
            settle(job.future, reply[1:])
        else:
            try:
                exc = pickle.loads(reply[1:])
            except Exception as e:
                exc = RuntimeError(f"the worker's error could not be read: {e}")
            settle(job.future, b"", exc)
        return True

    def _next_for(self, worker: Worker) -> Job | None:
        # Holding the lock: WORKER is free; the next waiting job is handed to it, else it is idle.
        if self._closing or worker not in self._workers:
            return None
        if self.waiting:
            job = self.waiting.popleft()
            self._assign(worker, job)
            return job
        self._idle.append(worker)
        return None

    def _on_death(self, worker: Worker) -> None:
        worker.process.join(1)
        with self._lock:
            if self._closing or worker not in self._workers:
                return
            self._workers.remove(worker)
            if worker in self._idle:
                self._idle.remove(worker)
            job, worker.job = worker.job, None
            if job is None and not worker.retired:
                self._idle_deaths += 1
                delay = min(RESPAWN_MAX, RESPAWN_FIRST * 2 ** (self._idle_deaths - 1))
                log.warning("a worker process of the process pool died while idle (exit code %s): another "
                            "starts in %.1f s", worker.process.exitcode, delay)
                self._respawn_at = max(self._respawn_at, time.monotonic() + delay)
            self._respawns += 1
        worker.conn.close()
        if job is None:
            return
        kill_task_processes(job.marker, job.task_id)
        settle(job.future, b"", self._lost(job, worker.process.exitcode))

    def _respawn(self) -> None:
        sends: list[tuple[Worker, Job]] = []
        with self._lock:
            while self._respawns and not self._closing and time.monotonic() >= self._respawn_at:
                try:
                    self._spawn()
                except OSError as e:  # out of processes or memory: tried again shortly
                    log.warning("could not start a worker process of the process pool: %s", e)
                    self._respawn_at = time.monotonic() + RESPAWN_FIRST * 10
                    break
                self._respawns -= 1
                worker = self._idle.pop()
                following = self._next_for(worker)
                if following is not None:
                    sends.append((worker, following))
        for worker, job in sends:
            self._send(worker, job)


def kill_worker(worker: Worker) -> None:
    try:
        worker.process.kill()
    except (OSError, ValueError):  # dead already: its sentinel tells the reader all the same
        pass
