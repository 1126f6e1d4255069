"""The user endpoint process: ``python -m gce.uep --fd N`` with its config on stdin (started by
gce.uep.boot.main).

It talks only to its manager, over the socketpair end it inherited (fd N). It builds its
engine, says READY (or FATAL with the reason), then turns TASK frames into engine
submissions and engine outcomes into RESULT frames, and reports engine figures in
STATUS frames. It exits when the manager says STOP or the channel closes, so a UEP
never outlives its manager.

A UEP of a multi-user endpoint is started as the mapped user. Before anything else it checks
that it holds exactly that user's credentials and cannot regain root (DESIGN.md, security
invariant 2); only then does it create its log and run directories in the user's home and
render its engine config from the admin's template, so the template reads files as the user.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import threading
import time
from concurrent.futures import Future

from gce.config.uep import UepConfig
from gce.transport import frames
from gce.transport.message import ErrorCode, ResultHeaders, TaskHeaders, failure
from gce.transport.payload import PayloadError, task_function_id, unpack_result
from gce.uep.cancel import Cancels
from gce.uep.deadlines import Deadlines, Limited
from gce.uep.engines import Engine, TaskRefused, WorkerLost
from gce.uep.factory import make_engine
from gce.uep.mpi import check_spec
from gce.uep.execute import traceback_tail
from gce.uep.policy import TaskPolicy
from gce.uep.pools import split_spec
from gce.uep.retries import Retries
from gce.uep.setup_teardown import Commands, SetupFailed, runtime_env

log = logging.getLogger("gce.uep")
STATUS_PERIOD = 2.0


def _py_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


class UserEndpoint:
    def __init__(self, sock: socket.socket, conf: UepConfig) -> None:
        self.sock = sock
        self.conf = conf
        self.endpoint_id = conf.endpoint_id
        self.policy = TaskPolicy.of(conf)  # allowed_functions and allowed_serializers
        self._send_lock = threading.Lock()
        self.closed = False
        self.engine: Engine | None = None
        self.stopping = threading.Event()
        self.said_blocks_failing = False  # its STATUS went before its first BLOCKS_FAILING answer
        self.deadlines = Deadlines(self._started_at, self.on_deadline)
        self.retries = Retries()  # a task whose worker died may run again (max_retries_on_system_failure)
        self.cancels = Cancels(lambda: self.engine, self.send_frame, conf.endpoint_id)

    # -- output ----------------------------------------------------------------------
    def send_frame(self, kind: bytes, header: dict, body: bytes = b"") -> None:
        # Sent from whichever thread has the frame (the engine's result thread, mostly): a
        # hand-off to a writer thread would add a wake-up to every task's round trip.
        data = frames.encode(kind, header, body)
        with self._send_lock:
            if self.closed:
                return
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True
                self.stopping.set()

    def send_result(self, rh: ResultHeaders, body: bytes = b"") -> None:
        self.send_frame(frames.RESULT, rh.to_dict(), body)

    # -- tasks -----------------------------------------------------------------------
    def check(self, th: TaskHeaders, payload: bytes) -> ResultHeaders | None:
        """Refuse what must not reach a worker; None when the task may run."""
        mine = platform.python_version()
        if th.serializer == "cloudpickle" and th.python_version and _py_minor(th.python_version) != _py_minor(mine):
            return failure(th.task_id, self.endpoint_id, ErrorCode.VERSION_MISMATCH,
                           f"the function was serialized with Python {th.python_version} but this endpoint runs "
                           f"Python {mine}; pickled functions only work between the same Python minor versions. "
                           "Submit from Python " + _py_minor(mine) + ", or use register_source_code().")
        try:
            fid = task_function_id(payload)
        except PayloadError as e:
            return failure(th.task_id, self.endpoint_id, ErrorCode.BAD_MESSAGE, f"the task payload is malformed: {e}")
        if fid != th.function_id:
            return failure(th.task_id, self.endpoint_id, ErrorCode.BAD_MESSAGE,
                           "the function-id header does not match the function bytes in the payload")
        refused = self.policy.refused(payload, fid)  # before anything is unpickled
        if refused is not None:
            return failure(th.task_id, self.endpoint_id, refused.code, refused.sentence)
        return None

    def on_task(self, header: dict, payload: bytes) -> None:
        th = TaskHeaders.from_dict(header["task"])
        refused = self.check(th, payload)
        if refused is not None:
            self.send_result(refused)
            return
        started = time.time()
        assert self.engine is not None
        try:
            _, limit = split_spec(th.resource_specification)
            check_spec(self.engine, th.resource_specification)  # MPI counts: an MPI engine's only
        except (TypeError, ValueError) as e:
            return self.send_result(failure(th.task_id, self.endpoint_id, ErrorCode.BAD_MESSAGE, str(e)))
        if limit:
            self.deadlines.add(th.task_id, limit)
        try:
            fut = self.engine.submit(payload, th.resource_specification, th.task_id,
                                     env=runtime_env(th.python_version, th.gce_version))
        except Exception as e:
            self.deadlines.claim(th.task_id)
            self.send_result(failure(th.task_id, self.endpoint_id, ErrorCode.ENDPOINT_FAILED,
                                f"the engine refused the task: {type(e).__name__}: {e}"))
            return
        self.cancels.track(th.task_id, fut)
        self.retries.keep(th, payload)
        fut.add_done_callback(lambda f: self.on_done(th, started, f, bool(limit)))

    def on_done(self, th: TaskHeaders, started: float, fut: Future, limited: bool = False) -> None:
        """Answer TH from its engine outcome; whatever the outcome holds, the task is answered.

        But for one the engine cancelled at a stop before it ran: it is not answered, so the
        manager keeps it spooled and it runs after the next start (a restart, an upgrade)."""
        attempt = self.retries.settle(th)  # whatever the outcome, this attempt is over
        how = self.cancels.cancelled(th.task_id, fut)
        if how is not None:  # its submitter cancelled it, and it did not succeed first
            if limited and self.deadlines.claim(th.task_id) is None:
                return  # answered TIMEOUT already
            return self.send_result(self.cancels.answer(th.task_id, started, how))
        if fut.cancelled():
            if limited:
                self.deadlines.claim(th.task_id)
            return log.info("task %s: not run, the user endpoint is stopping; it runs after the next start",
                            th.task_id)
        try:
            if limited:
                task = self.deadlines.claim(th.task_id)
                if task is None:  # answered TIMEOUT at its deadline: this late outcome is dropped
                    return log.info("task %s: its outcome came after its deadline, and is dropped", th.task_id)
                if isinstance(fut.exception(), WorkerLost) and self.deadlines.past_limit(task):
                    # The worker kills itself when a function will not stop (gce.uep.timelimit).
                    how = f"it was stopped: its worker was killed ({fut.exception()})"
                    return self.send_result(task.answer(self.endpoint_id, how))
            if attempt.again(fut):  # its worker died under it, and it may run once more
                return self.on_task({"task": th.to_dict()}, self.retries.resume(attempt, fut))
            self._answer(th, started, attempt.told(fut))
        except Exception as e:  # e.g. a worker whose code replaced the result packing
            log.exception("task %s: its outcome could not be read", th.task_id)
            self.send_result(failure(th.task_id, self.endpoint_id, ErrorCode.ENDPOINT_FAILED,
                                f"the task's outcome could not be read ({type(e).__name__}: {e})"[:2000]))

    def _answer(self, th: TaskHeaders, started: float, fut: Future) -> None:
        timings = {"started": started, "finished": time.time()}
        exc = fut.exception()
        if exc is not None:
            code = ErrorCode.WORKER_LOST if isinstance(exc, WorkerLost) else ErrorCode.ENDPOINT_FAILED
            if isinstance(exc, TaskRefused):  # the engine's own answer: a time limit, failing blocks...
                code = exc.code
            if code == ErrorCode.BLOCKS_FAILING and not self.said_blocks_failing:
                # Its manager learns why before the submitter gets the first such answer: then
                # `gce status` says "blocks failing" at once, not "running" for a status period.
                self.said_blocks_failing = True
                self.send_status()
            rh = failure(th.task_id, self.endpoint_id, code, str(exc) or type(exc).__name__)
            rh.timings = timings
            self.send_result(rh)
            return
        payload = fut.result()
        outcome = unpack_result(payload)
        if outcome.ok:
            self.send_result(ResultHeaders(th.task_id, self.endpoint_id, "success", timings=timings), payload)
            return
        rh = failure(th.task_id, self.endpoint_id, outcome.code, outcome.message)
        rh.timings = timings
        header = rh.to_dict()
        if outcome.traceback:  # as text, so its manager shows it without unpickling the result
            header["traceback"] = traceback_tail(outcome.traceback)
        self.send_frame(frames.RESULT, header, payload)

    # -- time limits -----------------------------------------------------------------
    def _started_at(self, task_id: str) -> float | None:
        return self.engine.started_at(task_id) if self.engine is not None else None

    def on_deadline(self, task: Limited) -> None:
        """TASK had no outcome GRACE seconds past its limit: answer TIMEOUT for it."""
        log.warning("task %s: no outcome %g s past its time limit of %g s: answered TIMEOUT; %s", task.task_id,
                    self.deadlines.grace, task.limit, getattr(self.engine, "overrun", ""))
        how = f"the endpoint stopped waiting for it {self.deadlines.grace:g} s later"
        self.send_result(task.answer(self.endpoint_id, how))

    def on_cancel_block(self, header: dict) -> None:
        """Cancel the block the manager names; what became of it shows in the next STATUS frame."""
        block_id = str(header.get("block_id", ""))[:64]
        assert self.engine is not None
        try:
            if self.engine.cancel_block(block_id):
                log.info("block %s cancelled at the manager's request", block_id)
            else:
                log.warning("not cancelling block %r: the %s has no such block", block_id, self.engine.type)
        except Exception as e:
            log.error("cancelling block %s failed: %s: %s", block_id, type(e).__name__, e)
        self.send_status()  # the block's state, changed or not, at once rather than in STATUS_PERIOD

    # -- status ----------------------------------------------------------------------
    def send_status(self) -> None:
        try:
            assert self.engine is not None
            self.send_frame(frames.STATUS, {"engine": self.engine.status(), "pid": os.getpid()})
        except Exception:
            log.exception("engine status failed")

    def _reporter(self) -> None:
        while not self.stopping.wait(STATUS_PERIOD):
            self.send_status()

    # -- main ------------------------------------------------------------------------
    def run(self) -> int:
        commands = Commands.of(self.conf.setup)
        try:  # as this user, before the engine: its worker_init may use what the setup prepared
            commands.run_setup()
        except SetupFailed as e:
            log.error("%s", e)
            self.send_frame(frames.FATAL, {"reason": str(e)})
            return 1
        try:
            return self._run()
        finally:
            commands.run_teardown()

    def _run(self) -> int:
        try:
            self.engine = make_engine(self.retries.take(self.conf.engine), self.conf.run_dir,
                                      self.conf.max_result_bytes, self.conf.max_output_bytes)
            self.engine.start()
        except Exception as e:
            log.exception("engine failed to start")
            self.send_frame(frames.FATAL, {"reason": f"the {self.conf.engine.get('type')} engine failed to start: "
                                               f"{type(e).__name__}: {e}"})
            return 1
        self.send_frame(frames.READY, {"pid": os.getpid(), "python": platform.python_version(),
                                 "engine": self.engine.type, "status": self.engine.status(),
                                 "window": self.engine.window()})
        log.info("user endpoint ready: %s engine, Python %s", self.engine.type, platform.python_version())
        threading.Thread(target=self._reporter, name="uep-status", daemon=True).start()
        threading.Thread(target=self.deadlines.watch, args=(self.stopping,), name="uep-limits", daemon=True).start()
        decoder = frames.Decoder()
        try:
            while not self.stopping.is_set():
                for kind, header, body in frames.recv_frames(self.sock, decoder):
                    if kind == frames.TASK:
                        self.on_task(header, body)
                    elif kind == frames.STOP:
                        self.stopping.set()
                    elif kind == frames.CANCEL_BLOCK:
                        self.on_cancel_block(header)
                    elif kind == frames.CANCEL_TASKS:
                        self.cancels.on_cancel(header)
                    elif kind == frames.ASK_STATES:
                        self.cancels.on_ask(header)
        except (EOFError, OSError):
            log.info("the manager closed the channel: shutting down")
        self.stopping.set()
        self.engine.shutdown()
        return 0
