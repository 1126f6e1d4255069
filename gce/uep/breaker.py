"""The failing-block breaker: a user endpoint whose batch jobs keep failing stops submitting them.

A block counts as failed when it ends (failed, completed, vanished: not cancelled, which someone
chose) without a worker pool of it ever connecting, or within ``block_grace_period`` seconds of
running. After ``block_failure_limit`` such blocks in a row the breaker opens: the engine submits
no more blocks (parsl's scaling strategy is refused, so there is never one job more than the
limit), cancels the ones still pending and answers every task, waiting or new, with
BLOCKS_FAILING and one sentence naming the last block's job, exit code, the scheduler's word and
the tail of its output. A block whose worker connected and that ran past the grace period resets
the count. The breaker stays open for the life of the user endpoint: ``gce resume``, or a change of
its config, has its manager start a fresh one (gce.daemon.dispatch), so that no task this one
answered BLOCKS_FAILING, still queued in its interchange, runs after all.

The blocks are judged where parsl polls the scheduler, in the executor's block error handler,
which parsl calls after each poll and before its strategy decides to scale out: a failure seen
there stops the very next submission.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any, Callable

from gce.transport.message import ErrorCode
from gce.uep import parsl_compat
from gce.uep.accounting import (FINAL_STATES, TERMINAL, VANISHED, BlockBook, SchedulerWatch, scheduler_detail, tail,
                                walltime_seconds)
from gce.uep.pools import TaskRefused, WorkerLost

log = logging.getLogger("gce.uep.breaker")

COUNTED = ("failed", "completed", "vanished")  # a cancelled block was ended on purpose
WALLTIME_SLACK = 15.0  # seconds before its walltime a block's loss is taken for the walltime's doing


def drain_period(walltime: Any) -> int | None:
    """Seconds after a worker pool starts when it takes no new task: 5% of its block's WALLTIME
    before it ends (at least 30 s, at most 10 min, at most half of it); None when it is unknown."""
    limit = walltime_seconds(walltime)
    if not limit:
        return None
    return int(limit - min(max(30.0, limit * 0.05), 600.0, limit / 2))


def take_options(opts: dict[str, Any]) -> dict[str, float]:
    """Take the breaker's and the scheduler's keys out of the engine options OPTS (parsl takes none)."""
    return {"limit": int(opts.pop("block_failure_limit", 3)), "grace": float(opts.pop("block_grace_period", 60.0)),
            "timeout": float(opts.pop("scheduler_timeout", 30.0)),
            "poll": float(opts.pop("scheduler_poll_period", 0) or 0)}


def tune_provider(provider: Any, limits: dict[str, float]) -> None:
    """The provider's scheduler commands time out at scheduler_timeout; it is polled every
    scheduler_poll_period seconds when one is set (else as often as parsl polls it)."""
    if hasattr(provider, "cmd_timeout"):
        provider.cmd_timeout = limits["timeout"]
    if limits["poll"]:
        parsl_compat.poll_every(provider, limits["poll"])


class Breaker:
    """The count of failed blocks in a row and, once it reaches LIMIT, the open state."""

    def __init__(self, limit: int = 3, grace: float = 60.0) -> None:
        self.limit = limit
        self.grace = grace
        self.failures = 0
        self.opened: dict[str, Any] | None = None

    @property
    def is_open(self) -> bool:
        return self.opened is not None

    def ended(self, block: Any, now: float) -> bool:
        """BLOCK ended by itself at NOW; True when this failure opens the breaker."""
        if getattr(block, "timed_out", False):  # it ran its whole walltime: not the config's fault
            return False
        if self._ran_well(block, now):
            self.failures = 0
            return False
        self.failures += 1
        if self.failures >= self.limit and not self.is_open:
            self.opened = {"since": now}
            return True
        return False

    def healthy(self, block: Any, now: float) -> bool:
        """BLOCK still runs at NOW; True (and the count reset) when it has proven itself."""
        if not self._ran_well(block, now):
            return False
        if not self.is_open:
            self.failures = 0
        return True

    def _ran_well(self, block: Any, now: float) -> bool:
        start = block.running_since if block.running_since is not None else block.connected_at
        return block.connected_at is not None and start is not None and now - start >= self.grace


def sentence(d: dict[str, Any], provider: str) -> str:
    """The one sentence answered to every task while the breaker is open."""
    job = f"{provider} job {d['job_id']}" if d["job_id"] else f"{provider}, no job id"
    word = ", ".join(w for w in (d["raw_state"], d["scheduler_reason"]) if w and w != "None")
    how = d["state"] + (f" [{word}]" if word else "")
    how += f" with exit code {d['exit_code']}" if d["exit_code"] is not None else " (exit code not known)"
    how += "; its worker pool never connected" if not d["connected"] else ", soon after its worker pool connected"
    text = (f"{d['failures']} blocks in a row failed (engine.block_failure_limit is {d['limit']}); the last, "
            f"block {d['block_id']} ({job}), {how}.")
    for name in ("stdout", "stderr"):
        shown = d[f"{name}_tail"]
        text += f"\nThe last lines of its {name}" + (f" ({d[name]}):\n{shown}" if shown else
                                                      f": (empty or not readable: {d[name] or 'no file'})")
    return (text + "\nThe endpoint submits no more blocks and answers every task with BLOCKS_FAILING. Fix "
            "worker_init or the provider settings in the engine's config (the worker pool must start and reach "
            "this host), or run `gce resume NAME` once the cause is gone.")


class BlockGuard:
    """Feeds an engine's BlockBook from parsl's polls and the engine's status, and runs the breaker
    on what it records. ON_OPEN(refusal) answers the engine's tasks when it opens."""

    def __init__(self, htex: Any, provider: Any, book: BlockBook, words: SchedulerWatch,
                 limit: int, grace: float, on_open: Callable[[TaskRefused], None]) -> None:
        self.htex, self.provider, self.book, self.words = htex, provider, book, words
        self.breaker = Breaker(limit, grace)
        self.on_open = on_open
        self._judged: set[str] = set()
        self._let_go_of: set[str] = set()
        self._managers: dict[str, str] = {}  # a worker pool's manager id -> its block id
        self._sent_again: weakref.WeakSet[Any] = weakref.WeakSet()  # tasks sent again after a walltime
        self._lock = threading.Lock()
        self._refusal: TaskRefused | None = None

    def on_poll(self, executor: Any, status: dict[str, Any]) -> None:
        """parsl's block error handler: called after each poll of the scheduler, before scaling."""
        try:
            self.observe()
        except Exception:
            log.exception("judging the blocks after parsl's poll failed")

    def observe(self) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Record every block's state now; (connected worker pools, workers by block id)."""
        managers = parsl_compat.connected_managers(self.htex)
        states = parsl_compat.block_states(self.htex)
        jobs = parsl_compat.block_jobs(self.htex)
        workers: dict[str, int] = {}
        for m in managers:
            workers[str(m["block_id"])] = workers.get(str(m["block_id"]), 0) + int(m["worker_count"])
            self._managers[str(m["manager"])] = str(m["block_id"])
        for bid, b in states.items():
            job = jobs.get(bid)
            raw, reason = self.words.get(str(job), (None, None))
            state, message = b.state.name, b.message
            if workers.get(str(bid)) and state in ("UNKNOWN", "PENDING", "HELD"):
                # Known before parsl's next poll of the scheduler (once a minute for Slurm), at no cost.
                state, message, raw, reason = "RUNNING", "its worker pool connected", None, None
            code = getattr(b, "exit_code", None)
            if b.terminal and state != "SCALED_IN":
                # parsl says MISSING of any block that ended with no worker connected, and COMPLETED
                # of a job squeue no longer lists: the scheduler's own final word, when it has one, wins.
                if raw == VANISHED:
                    state, message, raw = "MISSING", reason, None
                    self._let_go(str(bid), job)
                elif raw in FINAL_STATES:
                    state = FINAL_STATES[raw]
                elif state == "MISSING" and code is not None:
                    state, message = ("FAILED" if code else "COMPLETED"), "its worker pool never connected"
            self.book.observe(str(bid), job, state, message, raw, reason,
                              parsl_compat.job_files(self.provider, job), workers=workers.get(str(bid), 0),
                              exit_code=code)
        self._judge()
        return managers, workers

    def _let_go(self, block_id: str, job: Any) -> None:
        """A vanished block no longer counts against max_blocks: cancel its job (once), should the
        scheduler still run it unseen, so that the block started in its place is not one too many."""
        if block_id in self._let_go_of:
            return
        self._let_go_of.add(block_id)
        try:
            self.provider.cancel([job])
        except Exception as e:
            log.warning("cancelling the vanished job %s of block %s failed: %s", job, block_id, e)

    def _judge(self) -> None:
        opened = None
        with self._lock:
            now = time.time()
            for block in self.book.blocks_now():
                if block.block_id in self._judged:
                    continue
                if block.state in COUNTED:
                    self._judged.add(block.block_id)
                    if self.breaker.ended(block, block.updated_at):
                        opened = block
                elif block.state == "cancelled":
                    self._judged.add(block.block_id)
                elif block.state == "running":
                    self.breaker.healthy(block, now)
            if opened is not None:
                self._open(opened)
        if opened is not None and self._refusal is not None:
            self._cancel_pending()
            self.on_open(self._refusal)

    def _open(self, block: Any) -> None:
        d: dict[str, Any] = {
            "state": block.state, "failures": self.breaker.failures, "limit": self.breaker.limit,
            "block_id": block.block_id, "job_id": block.job_id, "exit_code": block.exit_code,
            "raw_state": block.raw_state, "scheduler_reason": (block.reason or None) if block.raw_state else None,
            "connected": block.connected_at, "stdout": block.stdout, "stderr": block.stderr,
            "stdout_tail": tail(block.stdout), "stderr_tail": tail(block.stderr)}
        detail = scheduler_detail(self.provider, block.job_id)
        d.update(detail)
        if d["state"] == "vanished" and "exit_code" in detail:  # gone from squeue; scontrol knows how it ended
            d["state"] = "failed" if detail["exit_code"] else "completed"
        reason = sentence(d, self.book.provider)
        assert self.breaker.opened is not None
        self.breaker.opened.update({k: d[k] for k in ("failures", "limit", "block_id", "job_id", "exit_code",
                                                      "raw_state", "scheduler_reason", "stdout_tail",
                                                      "stderr_tail")}, state="blocks failing", reason=reason)
        self._refusal = TaskRefused(ErrorCode.BLOCKS_FAILING, reason)
        log.error("blocks failing: no more blocks are submitted and every task is refused until `gce resume`: %s",
                  reason)

    def _cancel_pending(self) -> None:
        for block in self.book.blocks_now():
            if block.state in ("submitted", "pending") and block.job_id is not None:
                try:
                    self.provider.cancel([block.job_id])
                    self.book.cancelled(block.block_id, "the failing-block breaker opened")
                except Exception as e:
                    log.warning("cancelling pending block %s failed: %s", block.block_id, e)

    def after_loss(self, task: Any, exc: BaseException) -> BaseException | None:
        """The answer to TASK, whose worker pool was lost (EXC); None to send it once more, when
        the pool's block reached its walltime (the next block may give it the time it needs)."""
        manager = getattr(exc, "manager_id", b"")
        manager = manager.decode(errors="replace") if isinstance(manager, bytes) else str(manager)
        block = next((b for b in self.book.blocks_now() if b.block_id == self._managers.get(manager)), None)
        limit = walltime_seconds(block.walltime) if block else None
        start = block and (block.running_since or block.connected_at)
        reached = block is not None and (block.timed_out or bool(
            limit and start and time.time() >= start + limit - WALLTIME_SLACK))
        if block is None or not reached:
            return WorkerLost(f"{exc} (the worker died: killed by a signal, out of memory, or its batch job ended)")
        if task not in self._sent_again:
            self._sent_again.add(task)
            log.info("block %s (job %s) reached its walltime (%s) with a task running: sending it once more",
                     block.block_id, block.job_id, block.walltime)
            return None
        return TaskRefused(ErrorCode.WALLTIME, f"the task was still running when block {block.block_id} (job "
                           f"{block.job_id}) reached its walltime of {block.walltime}, and so it was on the block "
                           "before: it needs more time than a block has. Raise the provider's walltime, or split "
                           "the task.")

    def refusal(self) -> TaskRefused | None:
        """The answer to a task while the breaker is open; None while it is closed."""
        return self._refusal

    def may_scale_out(self) -> bool:
        """No new block while the breaker is open, nor on stale data (the scheduler not answering)."""
        return self._refusal is None and self.words.silent_since is None

    def note_silence(self, status: dict[str, Any]) -> None:
        """Say in the engine's STATUS what its blocks' states are worth while the scheduler is silent."""
        silent = self.words.note()
        if silent:
            status["scheduler"] = silent
            for b in status.get("block_list", []):
                if b["state"] not in TERMINAL:
                    b["reason"] = silent

    def status(self) -> dict[str, Any] | None:
        with self._lock:
            return dict(self.breaker.opened) if self.breaker.opened and self._refusal else None
