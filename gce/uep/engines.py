"""Engines: where a user endpoint runs task payloads.

Every engine takes opaque task payloads and returns result payloads (bytes), running
``gce.uep.execute.run_task`` on its workers: the UEP itself never unpickles what a
submitter sent, it only passes bytes through. A worker that dies mid-task yields a
WORKER_LOST result naming the cause instead of a task that hangs. The base engine and the
local pools are in gce.uep.pools; parsl's HighThroughputExecutor is here.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from concurrent.futures import Future
from typing import Any

from gce.transport.message import ErrorCode
from gce.uep import blocks, breaker, parsl_compat, placement, sandbox, worker_pool
from gce.uep.accounting import BlockBook, walltime_seconds
from gce.uep.breaker import BlockGuard
from gce.uep.futures import settle
from gce.uep.containers import take_options as take_container
from gce.uep.pools import Engine, ProcessPoolEngine, ThreadPoolEngine, TaskRefused, WorkerLost, split_spec
from gce.uep.worker_pools import worker_pools

__all__ = ["Engine", "HighThroughputEngine", "ProcessPoolEngine", "TaskRefused", "ThreadPoolEngine", "WorkerLost"]

log = logging.getLogger(__name__)

# Small tasks that arrive faster than the workers take them go to parsl in batches: each
# parsl task costs the interchange and the UEP far more than a no-op function costs the
# worker. A batch is only formed from tasks waiting for a free slot, so a lone task is
# never delayed, and its size is bounded in tasks and bytes.
BATCH_MAX_TASKS = 32
BATCH_MAX_BYTES = 1 << 20
BATCHABLE_BYTES = 64 << 10


class HighThroughputEngine(Engine):
    """parsl's HighThroughputExecutor driven without a DataFlowKernel, plus its scaling strategy.

    At most ``slots`` parsl tasks are outstanding (twice the workers of ``max_blocks``, so the
    scaling strategy still sees the whole demand it may act on); small tasks waiting beyond
    that are sent as one parsl task running ``run_batch``. When the worker running a batch
    dies, its tasks are sent again one by one, so only the task that killed it fails.
    """

    type = "HighThroughputEngine"
    guard: BlockGuard  # the blocks' accounting and the failing-block breaker, made in start()

    def __init__(self, options: dict, run_dir: str, max_result_bytes: int, max_output_bytes: int = 64 << 10) -> None:
        super().__init__(options, run_dir, max_result_bytes, max_output_bytes)
        # Small tasks waiting for a slot, oldest first: a deque, so a batch taken from the front
        # costs its own tasks only, however long the backlog behind it.
        self._waiting: deque[tuple[bytes, Future]] = deque()
        self._in_parsl = 0
        self.slots = 1
        self.walltime: float | None = None  # a batch block's, in seconds; None: blocks without one
        self.drain_margin = 0.0  # seconds between a worker pool's drain time and its block's end
        self._ids: dict[Future, str] = {}  # a task's future -> its task id
        self._by_htex_id: dict[Any, list[str]] = {}  # a parsl task's id -> the task ids it runs

    def start(self) -> None:
        from parsl.jobs.job_status_poller import JobStatusPoller

        opts = dict(self.options)
        provider_spec = opts.pop("provider", None) or {"type": "LocalProvider"}
        strategy_period = float(opts.pop("strategy_period", 5.0))
        max_idletime = float(opts.pop("max_idletime", 120.0))
        limits = breaker.take_options(opts)
        container = take_container(opts)
        provider = parsl_compat.build("provider", provider_spec, "parsl.providers")
        breaker.tune_provider(provider, limits)
        self.provider = provider
        self.book = BlockBook(type(provider).__name__, getattr(provider, "walltime", None))
        self.scheduler_words = parsl_compat.watch_scheduler(provider)
        local = provider_spec.get("type", "LocalProvider") == "LocalProvider"
        opts = {**worker_pool.htex_options(local_workers=local), **opts}  # the config's own win
        opts.setdefault("heartbeat_period", 2)
        opts.setdefault("heartbeat_threshold", 10)
        drain = None if local else breaker.drain_period(getattr(provider, "walltime", None))
        if drain is not None:  # a worker pool takes no new task near its block's walltime
            opts.setdefault("drain_period", drain)
            # A task with a limit goes only to a pool whose block outlives it (gce.uep.placement).
            self.walltime = walltime_seconds(getattr(provider, "walltime", None))
            self.drain_margin = (self.walltime or 0) - int(opts["drain_period"])
        # The breaker judges failed blocks in place of parsl's handler, which fails every task for good.
        opts["block_error_handler"] = lambda executor, status: self.guard.on_poll(executor, status)
        self.htex = self.executor(provider, opts)
        if container is not None:  # each block starts its worker pool in the container
            self.htex.launch_cmd = container.wrap(self.htex.launch_cmd, self.run_dir)
            log.info("worker pools run in %s image %s", container.type, container.uri or "(custom)")
        self.guard = BlockGuard(self.htex, provider, self.book, self.scheduler_words, int(limits["limit"]),
                                limits["grace"], self._refuse_all)
        parsl_compat.gate_scale_out(self.htex, self.guard.may_scale_out)
        self.htex.run_dir = self.run_dir
        self.htex.run_id = "gce"
        if hasattr(provider, "script_dir"):
            provider.script_dir = os.path.join(self.run_dir, "submit_scripts")
            os.makedirs(provider.script_dir, exist_ok=True)
        if not local:  # batch jobs outlive a UEP killed by SIGKILL: keep a list for its manager
            try:
                blocks.cancel_left_behind(self.run_dir)  # a predecessor's, if its manager could not
            except Exception as e:
                log.warning("cancelling the batch jobs a previous user endpoint left failed: %s", e)
            blocks.track(provider, provider_spec, self.run_dir)
        self.htex.start()
        nodes = int(getattr(provider, "nodes_per_block", 1) or 1)
        # Without max_workers_per_node parsl guesses 1 while each worker pool starts one per core.
        per_node = self.htex.workers_per_node if "max_workers_per_node" in opts else os.cpu_count() or 1
        self.slots = 2 * max(1, int(per_node)) * nodes * max(1, int(provider.max_blocks))
        # Start the first blocks now rather than on the first strategy tick: cold start matters.
        parsl_compat.scale_out(self.htex, provider.init_blocks)
        self.poller = JobStatusPoller(strategy="simple", max_idletime=max_idletime, strategy_period=strategy_period)
        self.poller.add_executors([self.htex])
        parsl_compat.skip_first_scale_out(self.poller, self.htex.label)  # its first pass would start them again

    def executor(self, provider: Any, opts: dict[str, Any]) -> Any:
        """The parsl executor that runs the blocks (the MPI engine's is parsl's MPIExecutor: gce.uep.mpi)."""
        from parsl.executors import HighThroughputExecutor

        return HighThroughputExecutor(label="htex", provider=provider, **opts)

    def _submit(self, payload: bytes, resource_spec: dict, task_id: str = "") -> Future:
        outer: Future = Future()
        with self._lock:
            self._ids[outer] = task_id
        # Asked after the task is known: a breaker opening meanwhile answers it, or this does.
        refused = self.guard.refusal() or self._longer_than_blocks(resource_spec)
        if refused is not None:
            with self._lock:
                self._ids.pop(outer, None)
            settle(outer, exc=refused)
            return outer
        if resource_spec or len(payload) > BATCHABLE_BYTES:
            self._send([(payload, outer)], resource_spec)
            return outer
        with self._lock:
            self._waiting.append((payload, outer))
        self._drain()
        return outer

    @property
    def capacity(self) -> int:
        return self.slots * BATCH_MAX_TASKS  # each parsl task may be a batch

    def _longer_than_blocks(self, resource_spec: dict) -> TaskRefused | None:
        """The answer to a task whose time limit is longer than a whole block's walltime: no block
        could ever run it to its end. None for any other task."""
        _, limit = split_spec(resource_spec)
        why = placement.too_long(limit, self.walltime, self.provider.walltime) if self.walltime else None
        return None if why is None else TaskRefused(ErrorCode.WALLTIME, why)

    def _drain(self) -> None:
        """Send waiting tasks while parsl has free slots, as batches when more than one waits."""
        while True:
            with self._lock:
                if not self._waiting or self._in_parsl >= self.slots:
                    return
                batch: list[tuple[bytes, Future]] = []
                size = 0
                while self._waiting and len(batch) < BATCH_MAX_TASKS:
                    length = len(self._waiting[0][0])
                    if batch and size + length > BATCH_MAX_BYTES:
                        break
                    batch.append(self._waiting.popleft())
                    size += length
            self._send(batch, {})

    def _send(self, tasks: list[tuple[bytes, Future]], resource_spec: dict) -> None:
        lost = parsl_compat.lost_worker_errors()
        with self._lock:
            self._in_parsl += 1
        try:
            # Each task's directory and variables are set by the function wrapper on its worker.
            with self._lock:
                ids = [self._ids.get(outer, "") for _, outer in tasks]
            contexts = [self.task_context(task_id) for task_id in ids]
            if len(tasks) == 1:
                spec, limit = split_spec(resource_spec)
                args = (tasks[0][0], self.max_result_bytes, self.max_output_bytes, limit, contexts[0])
                if limit and self.walltime:
                    placed = {placement.CONTEXT_KEY: {"seconds": limit, "margin": self.drain_margin}}
                    inner = parsl_compat.submit_in_context(self.htex, placed, sandbox.run_task, spec, *args)
                else:
                    inner = self.htex.submit(sandbox.run_task, spec, *args)
            else:
                inner = self.htex.submit(sandbox.run_batch, {}, [p for p, _ in tasks], self.max_result_bytes,
                                         self.max_output_bytes, contexts)
        except Exception as e:
            with self._lock:
                self._in_parsl -= 1
                for _, outer in tasks:
                    self._ids.pop(outer, None)
            for _, outer in tasks:
                settle(outer, exc=e)
            return
        htex_id = getattr(inner, "parsl_executor_task_id", None)
        with self._lock:
            self._by_htex_id[htex_id] = [self._ids.get(outer, "") for _, outer in tasks]

        def relay(f: Future) -> None:
            with self._lock:
                self._in_parsl -= 1
                self._by_htex_id.pop(htex_id, None)
                if not isinstance(f.exception(), lost):  # else sent again, or answered below
                    for _, outer in tasks:
                        self._ids.pop(outer, None)
            exc = f.exception()
            if isinstance(exc, lost) and len(tasks) > 1:
                log.warning("the worker running a batch of %d tasks died (%s): sending them again one by one",
                            len(tasks), exc)
                for task in tasks:
                    if not task[1].done():  # else answered meanwhile (the breaker opened)
                        self._send([task], {})
            elif isinstance(exc, lost):
                answer = self.guard.after_loss(tasks[0][1], exc)  # None: its block reached its walltime
                if answer is None and not tasks[0][1].done():
                    self._send(tasks, resource_spec)
                else:
                    with self._lock:
                        self._ids.pop(tasks[0][1], None)
                    settle(tasks[0][1], exc=answer)
            elif exc is not None:
                for _, outer in tasks:
                    settle(outer, exc=exc)
            else:
                results = f.result()
                for (_, outer), result in zip(tasks, results if len(tasks) > 1 else [results]):
                    settle(outer, result)
            self._drain()

        inner.add_done_callback(relay)

    def _refuse_all(self, refusal: TaskRefused) -> None:
        """The breaker opened: answer every task not answered yet with REFUSAL. A task parsl
        still holds is answered here; its own outcome, should it come, is dropped by settle."""
        with self._lock:
            waiting, self._waiting = self._waiting, deque()
            for _, outer in waiting:  # never sent: nothing else will forget them
                self._ids.pop(outer, None)
            outers = [o for o in self._ids if not o.done()] + [o for _, o in waiting]
        for outer in outers:
            settle(outer, exc=refusal)
        log.info("answered %d tasks with BLOCKS_FAILING (%d were waiting for a slot)", len(outers), len(waiting))

    def status(self) -> dict[str, Any]:
        s = super().status()
        s["breaker"] = self.guard.status()
        try:
            managers, workers = self.guard.observe()
            blocks = parsl_compat.block_states(self.htex)
        except Exception as e:  # the interchange may be busy or gone; report, don't die
            s["error"] = str(e)
            return s
        total = sum(int(m.get("worker_count", 0)) for m in managers if m.get("active", True))
        running = sum(int(m.get("tasks", 0)) for m in managers)
        s.update(
            blocks=sum(1 for b in blocks.values() if not b.terminal),
            block_states={bid: b.state.name for bid, b in blocks.items()},
            managers=len(managers), workers_total=total, workers_idle=max(0, total - running), running=running,
        )
        s["breaker"] = self.guard.status()
        s["block_list"] = self.book.to_list(workers)
        self.guard.note_silence(s)
        s["nodes"] = self._nodes(managers)
        return s

    def _nodes(self, managers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """What each connected worker pool runs (gce.uep.worker_pools)."""
        detail = parsl_compat.manager_detail(self.htex)
        with self._lock:
            started, by_htex_id = dict(self._tasks), dict(self._by_htex_id)
        return worker_pools(managers, detail, started, by_htex_id, self.oldest_tasks)

    def cancel_block(self, block_id: str) -> bool:
        """Cancel BLOCK_ID's job through the provider, as parsl's scale-in does."""
        job = parsl_compat.block_jobs(self.htex).get(block_id)
        if job is None:
            return False
        done = self.provider.cancel([job])
        if not (done and done[0]):
            raise RuntimeError(f"the {type(self.provider).__name__} could not cancel job {job}")
        self.book.cancelled(block_id, "cancelled on request")
        return True

    def shutdown(self) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, deque()
        for _, outer in waiting:
            outer.cancel()
        try:
            self.poller.close(timeout=5)
        except Exception:
            log.exception("closing the scaling strategy failed")
        self.htex.shutdown()
