"""A pool of worker processes, each with a pipe of its own, for the ProcessPoolEngine.

``concurrent.futures.ProcessPoolExecutor`` moves each task through two threads of its own (a queue
management thread and a call-queue feeder) and a shared queue each way, and when one worker dies
it breaks the whole pool. Here a task goes straight from the thread that submits it down the pipe
of an idle worker, and one reader thread waits (``multiprocessing.connection.wait``) on every
worker's pipe and every worker's sentinel at once: a result completes its job's future there, and
a worker that dies costs its own job alone; another worker takes its place.

The worker's side, and the frames on its pipe: gce/uep/poolworker.py.
"""

from __future__ import annotations

import atexit
import logging
import pickle
import secrets
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any, Callable

from gce.uep.futures import settle
from gce.uep.poolworker import LEN, RESULT, kill_task_processes, work

log = logging.getLogger(__name__)

# A worker that dies with no task (it could not even start, say) is replaced after this long,
# doubled each time it happens again in a row, up to RESPAWN_MAX: not in a tight loop.
RESPAWN_FIRST = 0.1
RESPAWN_MAX = 5.0
STOP_GRACE = 2.0  # seconds shutdown gives busy workers after SIGTERM, before SIGKILL


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
    marker: str = field(default_factory=lambda: secrets.token_hex(16))  # in its processes' environment

    def past_limit(self, now: float) -> bool:
        return self.limit is not None and now >= self.began + self.limit


@dataclass(eq=False)
class Worker:
    process: BaseProcess
    conn: Connection  # the pool's end of the worker's pipe
    job: Job | None = None
    retired: bool = False  # given no more jobs: it is dying, or killed for a job cancelled as it ended


class ProcessPool:
    """SIZE workers of CTX running gce.uep.sandbox.run_task. LOST(job, exitcode) is the exception
    a job whose worker died is answered with (job.cancelled says when kill() did it)."""

    def __init__(self, ctx: SpawnContext, size: int, max_result_bytes: int, max_output_bytes: int,
                 lost: Callable[[Job, int | None], BaseException],
                 began: Callable[[Job], None] = lambda job: None) -> None:
        self._ctx = ctx
        self.size = size
        self._args = (max_result_bytes, max_output_bytes)
        self._lost = lost
        self._began = began  # told, holding the pool's lock, when a job is handed to a worker
        self._lock = threading.Lock()
        self._workers: list[Worker] = []
        self._idle: deque[Worker] = deque()
        self.waiting: deque[Job] = deque()
        self._closing = False
        self._respawns = 0  # workers to start once RESPAWN's delay has passed
        self._respawn_at = 0.0
        self._idle_deaths = 0  # in a row
        self._wake_r, self._wake_w = ctx.Pipe(duplex=False)
        self._reader: threading.Thread | None = None

    # -- the submitting side ----------------------------------------------------------------
    def start(self) -> None:
        # Before multiprocessing's own exit handler (atexit runs the last registered first), which
        # would wait for ever on workers that no one told to stop, should the user endpoint end
        # without shutdown().
        atexit.register(self.shutdown)
        with self._lock:  # one at once, for the first task; the others as tasks need them
            self._spawn()
        self._reader = threading.Thread(target=self._read, name="gce-process-pool", daemon=True)
        self._reader.start()

    def _spawn(self) -> None:
        # Holding the lock. The child's end of the pipe is closed here once it has it: then the
        # worker sees EOF when the pool's end closes, and the pool sees EOF when the worker dies.
        mine, theirs = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=work, args=(theirs, *self._args), name="gce-worker")
        try:
            process.start()
        finally:
            theirs.close()
        worker = Worker(process, mine)
        self._workers.append(worker)
        self._idle.append(worker)

    def submit(self, job: Job) -> None:
        """Run JOB on an idle worker at once, or when one is free."""
        with self._lock:
            if self._closing:
                job.future.cancel()
                return
            worker = self._hand_over(job)
        if worker is not None:
            self._send(worker, job)

    def _hand_over(self, job: Job) -> Worker | None:
        # Holding the lock: the idle worker JOB goes to, or None, JOB then waiting. Workers are
        # started as tasks need them, up to SIZE: a pool of one per core on a login node's 128
        # cores would otherwise hold 128 interpreters while it runs one task.
        if not self._idle and len(self._workers) + self._respawns < self.size:
            try:
                self._spawn()
                self._wake_w.send_bytes(b"")  # the reader waits on the new worker's pipe too
            except OSError as e:  # out of processes or memory: the job waits for a running worker
                log.warning("could not start a worker process of the process pool: %s", e)
        if not self._idle:
            self.waiting.append(job)
            return None
        worker = self._idle.popleft()
        self._assign(worker, job)
        return worker

    def _assign(self, worker: Worker, job: Job) -> None:
        # Holding the lock: WORKER runs JOB from now on, which its engine is told.
        worker.job, job.worker, job.began = job, worker, time.time()
        self._began(job)

    def _send(self, worker: Worker, job: Job) -> None:
        meta = pickle.dumps((job.limit, job.context, job.marker))
        try:
            worker.conn.send_bytes(LEN.pack(len(meta)) + meta + job.payload)
        except (OSError, ValueError):  # the worker died: its sentinel tells the reader, which answers JOB
            pass

    # -- cancelling --------------------------------------------------------------------------
    def claim(self, task_id: str) -> Job | None:
        """TASK_ID's job, to be cancelled: taken out of the waiting ones (its worker is None; its
        future is the caller's to cancel), or marked cancelled if a worker runs it (then kill() it)."""
        with self._lock:
            job = next((j for j in self.waiting if j.task_id == task_id), None)
            if job is not None:
                self.waiting.remove(job)
                return job
            job = next((w.job for w in self._workers if w.job is not None and w.job.task_id == task_id), None)
            if job is not None:
                job.cancelled = True
            return job

    def kill(self, job: Job) -> bool:
        """Kill the worker running JOB (and no other); False when JOB has just ended. The job is
        answered with LOST's exception (JOB is marked cancelled), and the worker is replaced."""
        with self._lock:  # JOB's worker takes no other job while this is held
            worker = job.worker
            if worker is None or worker.job is not job:
                return False
            _kill(worker)
            return True

    # -- the reader thread --------------------------------------------------------------------
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
                    _kill(worker)
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

    # -- the end -------------------------------------------------------------------------------
    def running(self) -> list[Job]:
        with self._lock:
            return [w.job for w in self._workers if w.job is not None]

    def shutdown(self) -> None:
        """Cancel the jobs waiting and the ones running (a stopping user endpoint answers neither:
        they run after its next start) and stop every worker: idle ones see their pipe close, busy
        ones get SIGTERM, then SIGKILL after STOP_GRACE seconds."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        atexit.unregister(self.shutdown)
        with self._lock:
            workers, self._workers = list(self._workers), []
            waiting, self.waiting = list(self.waiting), deque()
            self._idle.clear()
        try:
            self._wake_w.send_bytes(b"")
        except OSError:
            pass
        jobs = waiting + [w.job for w in workers if w.job is not None]
        for worker in workers:
            if worker.job is not None:
                try:
                    worker.process.terminate()
                except (OSError, ValueError):
                    pass
            worker.conn.close()
        deadline = time.monotonic() + STOP_GRACE
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.exitcode is None:
                worker.process.kill()
                worker.process.join(5)
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(5)
        for job in jobs:
            job.future.cancel()


def _kill(worker: Worker) -> None:
    try:
        worker.process.kill()
    except (OSError, ValueError):  # dead already: its sentinel tells the reader all the same
        pass
