"""A pool of worker processes, each with a pipe of its own, for the ProcessPoolEngine.

``concurrent.futures.ProcessPoolExecutor`` moves each task through two threads of its own (a queue
management thread and a call-queue feeder) and a shared queue each way, and when one worker dies
it breaks the whole pool. Here a task goes straight from the thread that submits it down the pipe
of an idle worker, and one reader thread waits (``multiprocessing.connection.wait``) on every
worker's pipe and every worker's sentinel at once: a result completes its job's future there, and
a worker that dies costs its own job alone; another worker takes its place.

The pool's records and its reader thread: gce/uep/poolreader.py; the worker's side, and the frames
on its pipe: gce/uep/poolworker.py.
"""

from __future__ import annotations

import atexit
import logging
import pickle
import threading
import time
from collections import deque
from multiprocessing.context import SpawnContext
from typing import Callable

from gce.uep.poolreader import Job, PoolReader, Worker, kill_worker
from gce.uep.poolworker import LEN, work

log = logging.getLogger(__name__)

STOP_GRACE = 2.0  # seconds shutdown gives busy workers after SIGTERM, before SIGKILL


class ProcessPool(PoolReader):
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
            kill_worker(worker)
            return True

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
