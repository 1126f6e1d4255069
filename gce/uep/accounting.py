"""The blocks a user endpoint's engine submitted, as its manager (and ``gce monitor``) is told of them.

Every block has a job, a state and the transitions between states, each logged once. The states
are the ones parsl's scaling strategy last polled (the engine never asks the scheduler more often
than parsl does), in the words of gce's status: pending, running, completed, failed, cancelled,
vanished (the scheduler no longer knows the job) and submitted (sent, state not known yet). The
scheduler's own word for the state (``PD``, ``R``...) and its reason come with them when the
provider's status command gave them (gce.uep.parsl_compat.watch_scheduler).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("gce.uep.blocks")

KEEP_BLOCKS = 50
KEEP_TRANSITIONS = 20
# parsl's JobState names -> gce's block states, and the reason a state says by itself.
STATES = {"UNKNOWN": "submitted", "PENDING": "pending", "HELD": "pending", "RUNNING": "running",
          "COMPLETED": "completed", "FAILED": "failed", "TIMEOUT": "failed", "CANCELLED": "cancelled",
          "SCALED_IN": "cancelled", "MISSING": "vanished"}
TERMINAL = {"completed", "failed", "cancelled", "vanished"}
REASONS = {"TIMEOUT": "the job reached its walltime", "SCALED_IN": "scaled in: idle, or fewer blocks needed",
           "HELD": "the scheduler holds the job"}


def walltime_seconds(walltime: Any) -> float | None:
    """Seconds of a provider's walltime: "HH:MM:SS", "MM:SS", "D-HH:MM:SS"; None when unknown."""
    if not isinstance(walltime, str) or not re.fullmatch(r"(\d+-)?\d+(:\d+){0,2}", walltime.strip()):
        return None
    days, _, rest = walltime.strip().rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return float((int(days or 0) * 24 + parts[0]) * 3600 + parts[1] * 60 + parts[2])


@dataclass
class Block:
    block_id: str
    job_id: str | None
    provider: str
    submitted_at: float
    walltime: str | None = None
    state: str = "submitted"
    raw_state: str | None = None
    reason: str = ""
    updated_at: float = 0.0
    running_since: float | None = None
    connected_at: float | None = None  # when a worker pool of it was first seen connected
    exit_code: int | None = None
    submit_script: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    transitions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, now: float, workers: int) -> dict[str, Any]:
        limit = walltime_seconds(self.walltime)
        left = None
        if limit is not None and self.running_since is not None and self.state not in TERMINAL:
            left = max(0.0, limit - (now - self.running_since))
        return {"block_id": self.block_id, "job_id": self.job_id, "provider": self.provider, "state": self.state,
                "raw_state": self.raw_state, "reason": self.reason, "submitted_at": self.submitted_at,
                "updated_at": self.updated_at, "walltime": self.walltime, "walltime_left": left,
                "workers": workers, "transitions": list(self.transitions[-KEEP_TRANSITIONS:]),
                "submit_script": self.submit_script, "stdout": self.stdout, "stderr": self.stderr}


class BlockBook:
    """The last KEEP_BLOCKS blocks of one engine, fed what the engine observes."""

    def __init__(self, provider: str, walltime: str | None = None) -> None:
        self.provider = provider
        self.walltime = walltime
        self.blocks: OrderedDict[str, Block] = OrderedDict()
        self._lock = threading.Lock()  # the status reporter and the channel's reader both write

    def observe(self, block_id: str, job_id: Any, parsl_state: str, message: str | None = None,
                raw_state: str | None = None, reason: str | None = None, files: tuple | None = None,
                now: float | None = None, workers: int = 0, exit_code: int | None = None) -> None:
        """Block BLOCK_ID is in PARSL_STATE (a JobState name) now, with WORKERS connected: record it
        once if it changed."""
        now = time.time() if now is None else now
        state = STATES.get(parsl_state, "submitted")
        why = reason or message or REASONS.get(parsl_state, "")
        with self._lock:
            block = self.blocks.get(block_id)
            if block is None:
                block = self.blocks[block_id] = Block(block_id, None if job_id is None else str(job_id),
                                                      self.provider, now, self.walltime, updated_at=now)
                self._forget_old()
            if files is not None:
                block.submit_script, block.stdout, block.stderr = files
            if workers and block.connected_at is None:
                block.connected_at = now
            if exit_code is not None:
                block.exit_code = exit_code
            if block.transitions and (state, raw_state) == (block.state, block.raw_state):
                return
            if block.state in TERMINAL and block.transitions:  # a final word is not taken back
                return
            self._move(block, state, raw_state, why, now)

    def cancelled(self, block_id: str, reason: str, now: float | None = None) -> bool:
        """Record that the UEP cancelled BLOCK_ID; False when no such block is known."""
        now = time.time() if now is None else now
        with self._lock:
            block = self.blocks.get(block_id)
            if block is None:
                return False
            if block.state not in TERMINAL:
                self._move(block, "cancelled", block.raw_state, reason, now)
            return True

    def blocks_now(self) -> list[Block]:
        """The blocks as they are now (the objects themselves: read, do not change them)."""
        with self._lock:
            return list(self.blocks.values())

    def to_list(self, workers_by_block: dict[str, int], now: float | None = None) -> list[dict[str, Any]]:
        now = time.time() if now is None else now
        with self._lock:
            return [b.to_dict(now, workers_by_block.get(b.block_id, 0)) for b in self.blocks.values()]

    def _move(self, block: Block, state: str, raw_state: str | None, reason: str, now: float) -> None:
        block.state, block.raw_state, block.reason, block.updated_at = state, raw_state, reason, now
        if state == "running" and block.running_since is None:
            block.running_since = now
        block.transitions.append({"at": now, "state": state, "raw_state": raw_state, "reason": reason})
        del block.transitions[:-KEEP_TRANSITIONS]
        log.info("block %s (job %s, %s): %s%s%s", block.block_id, block.job_id, self.provider, state,
                 f" [{raw_state}]" if raw_state else "", f": {reason}" if reason else "")

    def _forget_old(self) -> None:
        while len(self.blocks) > KEEP_BLOCKS:
            oldest = next((k for k, b in self.blocks.items() if b.state in TERMINAL), None)
            if oldest is None:
                return
            del self.blocks[oldest]
