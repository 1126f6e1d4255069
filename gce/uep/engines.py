"""Engines: where a user endpoint runs task payloads.

Every engine takes opaque task payloads and returns result payloads (bytes), running
``gce.uep.execute.run_task`` on its workers: the UEP itself never unpickles what a
submitter sent, it only passes bytes through. A worker that dies mid-task yields a
WORKER_LOST result naming the cause instead of a task that hangs.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from gce.uep.execute import run_task

log = logging.getLogger(__name__)


class WorkerLost(Exception):
    """The worker running a task died; str() says how."""


class Engine:
    type = "Engine"

    def __init__(self, options: dict, run_dir: str, max_result_bytes: int) -> None:
        self.options = options
        self.run_dir = run_dir
        self.max_result_bytes = max_result_bytes
        self.done = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._outstanding = 0

    def start(self) -> None:
        raise NotImplementedError

    def _submit(self, payload: bytes, resource_spec: dict) -> Future:
        raise NotImplementedError

    def submit(self, payload: bytes, resource_spec: dict) -> Future:
        with self._lock:
            self._outstanding += 1
        fut = self._submit(payload, resource_spec)
        fut.add_done_callback(self._count)
        return fut

    def _count(self, fut: Future) -> None:
        with self._lock:
            self._outstanding -= 1
            if fut.exception() is None:
                self.done += 1
            else:
                self.failed += 1

    def status(self) -> dict[str, Any]:
        return {"type": self.type, "outstanding": self._outstanding, "done": self.done, "failed": self.failed}

    def shutdown(self) -> None:
        raise NotImplementedError


class ThreadPoolEngine(Engine):
    type = "ThreadPoolEngine"

    def start(self) -> None:
        self.workers = int(self.options.get("max_workers") or os.cpu_count() or 1)
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="gce-worker")

    def _submit(self, payload: bytes, resource_spec: dict) -> Future:
        return self.pool.submit(run_task, payload, self.max_result_bytes)

    def status(self) -> dict[str, Any]:
        s = super().status()
        s.update(blocks=1, managers=1, workers_total=self.workers,
                 workers_idle=max(0, self.workers - s["outstanding"]), running=min(self.workers, s["outstanding"]))
        return s

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class ProcessPoolEngine(Engine):
    """A local process pool; a pool broken by a dying worker is replaced, its tasks fail."""

    type = "ProcessPoolEngine"

    def start(self) -> None:
        import multiprocessing

        self.workers = int(self.options.get("max_workers") or os.cpu_count() or 1)
        self._ctx = multiprocessing.get_context("spawn")
        self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=self._ctx)

    def _submit(self, payload: bytes, resource_spec: dict) -> Future:
        from concurrent.futures.process import BrokenProcessPool

        outer: Future = Future()
        pool = self.pool
        inner = pool.submit(run_task, payload, self.max_result_bytes)

        def relay(f: Future) -> None:
            exc = f.exception()
            if isinstance(exc, BrokenProcessPool):
                with self._lock:
                    if self.pool is pool:  # replace it once, not once per failed task
                        self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=self._ctx)
                outer.set_exception(WorkerLost("a worker process of the process pool died abruptly "
                                               "(killed by a signal or out of memory)"))
            elif exc is not None:
                outer.set_exception(exc)
            else:
                outer.set_result(f.result())

        inner.add_done_callback(relay)
        return outer

    def status(self) -> dict[str, Any]:
        s = super().status()
        s.update(blocks=1, managers=1, workers_total=self.workers,
                 workers_idle=max(0, self.workers - s["outstanding"]), running=min(self.workers, s["outstanding"]))
        return s

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _build(kind: str, spec: dict, module: str) -> Any:
    import importlib

    spec = dict(spec)
    cls_name = spec.pop("type")
    cls = getattr(importlib.import_module(module), cls_name)
    if kind == "provider" and "launcher" in spec:
        spec["launcher"] = _build("launcher", spec["launcher"], "parsl.launchers")
    return cls(**spec)


class HighThroughputEngine(Engine):
    """parsl's HighThroughputExecutor driven without a DataFlowKernel, plus its scaling strategy."""

    type = "HighThroughputEngine"

    def start(self) -> None:
        from parsl.executors import HighThroughputExecutor
        from parsl.jobs.job_status_poller import JobStatusPoller

        opts = dict(self.options)
        provider_spec = opts.pop("provider", None) or {"type": "LocalProvider"}
        strategy_period = float(opts.pop("strategy_period", 5.0))
        max_idletime = float(opts.pop("max_idletime", 120.0))
        provider = _build("provider", provider_spec, "parsl.providers")
        if provider_spec.get("type", "LocalProvider") == "LocalProvider":
            opts.setdefault("address", "127.0.0.1")  # workers are local: don't probe interfaces
        opts.setdefault("heartbeat_period", 2)
        opts.setdefault("heartbeat_threshold", 10)
        self.htex = HighThroughputExecutor(label="htex", provider=provider, **opts)
        self.htex.run_dir = self.run_dir
        self.htex.run_id = "gce"
        if hasattr(provider, "script_dir"):
            provider.script_dir = os.path.join(self.run_dir, "submit_scripts")
            os.makedirs(provider.script_dir, exist_ok=True)
        self.htex.start()
        # Start the first blocks now rather than on the first strategy tick: cold start matters.
        self.htex.scale_out_facade(provider.init_blocks)
        self.poller = JobStatusPoller(strategy="simple", max_idletime=max_idletime, strategy_period=strategy_period)
        self.poller.add_executors([self.htex])
        # The strategy would scale out init_blocks again on its first pass ("first"); we did it.
        self.poller._strategy.executors[self.htex.label]["first"] = False

    def _submit(self, payload: bytes, resource_spec: dict) -> Future:
        from parsl.executors.high_throughput.errors import ManagerLost
        from parsl.executors.high_throughput.errors import WorkerLost as ParslWorkerLost

        outer: Future = Future()
        inner = self.htex.submit(run_task, resource_spec or {}, payload, self.max_result_bytes)

        def relay(f: Future) -> None:
            exc = f.exception()
            if isinstance(exc, (ParslWorkerLost, ManagerLost)):
                outer.set_exception(WorkerLost(f"{exc} (the worker died: killed by a signal, out of memory, "
                                               "or its batch job ended)"))
            elif exc is not None:
                outer.set_exception(exc)
            else:
                outer.set_result(f.result())

        inner.add_done_callback(relay)
        return outer

    def status(self) -> dict[str, Any]:
        s = super().status()
        try:
            managers = self.htex.connected_managers()
            blocks = self.htex.status_facade
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
        return s

    def shutdown(self) -> None:
        try:
            self.poller.close(timeout=5)
        except Exception:
            log.exception("closing the scaling strategy failed")
        self.htex.shutdown()


ENGINES = {cls.type: cls for cls in (ThreadPoolEngine, ProcessPoolEngine, HighThroughputEngine)}


def make_engine(spec: dict, run_dir: str, max_result_bytes: int) -> Engine:
    spec = dict(spec)
    kind = spec.pop("type")
    return ENGINES[kind](spec, run_dir, max_result_bytes)
