"""The blocks a user endpoint's engine submitted, as its manager (and ``gce monitor``) is told of them.

Every block has a job, a state and the transitions between states, each logged once. The states
are the ones parsl's scaling strategy last polled (the engine never asks the scheduler more often
than parsl does), in the words of gce's status: pending, running, completed, failed, cancelled,
vanished (the scheduler no longer knows the job) and submitted (sent, state not known yet). The
scheduler's own word for the state (``PD``, ``R``...) and its reason come with them when the
provider's status command gave them (gce.uep.parsl_compat.watch_scheduler runs it through a
SchedulerWatch: with a timeout, and a job squeue stops listing is asked of scontrol).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger("gce.uep.blocks")

KEEP_BLOCKS = 50
KEEP_TRANSITIONS = 20
TAIL_LINES = 20  # of a failed block's stdout and stderr
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
    timed_out: bool = False  # it reached its walltime
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
            if parsl_state == "TIMEOUT":
                block.timed_out = True
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


# The scheduler's word for a job that neither squeue nor scontrol lists any more.
VANISHED = "(vanished)"
MISSES_TO_VANISH = 2
# scontrol's JobState -> the squeue code parsl reads for it.
SQUEUE_CODES = {"PENDING": "PD", "RUNNING": "R", "COMPLETING": "CG", "CONFIGURING": "CF", "SUSPENDED": "S",
                "COMPLETED": "CD", "FAILED": "F", "CANCELLED": "CA", "TIMEOUT": "TO", "NODE_FAIL": "NF",
                "OUT_OF_MEMORY": "F", "BOOT_FAIL": "F", "DEADLINE": "TO", "PREEMPTED": "CA", "REVOKED": "RV"}
# A final word of the scheduler (squeue's code or scontrol's JobState) -> parsl's JobState name.
FINAL_STATES = {"CD": "COMPLETED", "F": "FAILED", "NF": "FAILED", "RV": "FAILED", "CA": "CANCELLED",
                "TO": "TIMEOUT", **{k: v for k, v in (("COMPLETED", "COMPLETED"), ("FAILED", "FAILED"),
                                                       ("CANCELLED", "CANCELLED"), ("TIMEOUT", "TIMEOUT"),
                                                       ("NODE_FAIL", "FAILED"), ("OUT_OF_MEMORY", "FAILED"),
                                                       ("BOOT_FAIL", "FAILED"), ("DEADLINE", "TIMEOUT"),
                                                       ("PREEMPTED", "CANCELLED"), ("REVOKED", "FAILED"))}}


def run_command(command: str, timeout: float | None) -> tuple[int, str, str]:
    """Run the shell COMMAND as parsl does; past TIMEOUT seconds kill it and whatever it started
    (parsl's own runner leaves a hanging squeue behind) and raise subprocess.TimeoutExpired."""
    proc = subprocess.Popen(command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace", start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return proc.returncode, out, err


class SchedulerWatch(dict):
    """Job id -> (the scheduler's word for its state, its reason), as the provider's status command
    (PROGRAM) last printed them, run by RUN(command, timeout) for parsl, which reads what it returns.

    A job squeue no longer lists is kept as it was for one poll (parsl would call it completed at
    once); at the second, scontrol says how it ended, or it is VANISHED. A command that does not
    answer within its timeout is killed, parsl keeps the states it had, and ``silent_since`` says
    since when: scaling waits for fresh data."""

    def __init__(self, program: str, run: Callable[[str, float | None], tuple[int, str, str]] = run_command) -> None:
        super().__init__()
        self.program = program
        self.run = run
        self.silent_since: float | None = None
        self.silent_why = ""
        self._misses: dict[str, int] = {}

    def note(self) -> str | None:
        """"scheduler not answering since HH:MM:SS (why)"; None while it answers."""
        if self.silent_since is None:
            return None
        return (f"scheduler not answering since {time.strftime('%H:%M:%S', time.localtime(self.silent_since))} "
                f"({self.silent_why})")

    def status_command(self, command: str, timeout: float | None) -> tuple[int, str, str]:
        try:
            retcode, stdout, stderr = self.run(command, timeout)
        except subprocess.TimeoutExpired:
            self.silent_why = f"{self.program} did not answer within {timeout:g} s"
            if self.silent_since is None:
                self.silent_since = time.time()
                log.warning("%s: no block is started until it answers", self.note())
            return 1, "", self.silent_why
        if self.silent_since is not None:
            log.info("the scheduler answers again (%s did not since %s)", self.program,
                     time.strftime("%H:%M:%S", time.localtime(self.silent_since)))
            self.silent_since = None
        if retcode != 0 or not isinstance(stdout, str):
            return retcode, stdout, stderr
        listed = set()
        for line in stdout.splitlines():
            job_id, _, rest = line.strip().partition(" ")
            raw, _, reason = rest.strip().partition(" ")
            if job_id and raw:
                self[job_id] = (raw, reason.strip())
                listed.add(job_id)
        asked = re.search(r"--job '([^']*)'", command)
        extra = []
        for job_id in asked.group(1).split(",") if asked else []:
            if job_id in listed or not job_id:
                self._misses.pop(job_id, None)
            elif self.program != "squeue":  # sacct and the others list a job until its end
                self.pop(job_id, None)
            else:
                extra.extend(self._missing(job_id, timeout))
        return retcode, stdout + "".join(f"{line}\n" for line in extra), stderr

    def _missing(self, job_id: str, timeout: float | None) -> list[str]:
        """The line parsl is to read for JOB_ID, which squeue did not list; none to let it go."""
        misses = self._misses[job_id] = self._misses.get(job_id, 0) + 1
        last = self.get(job_id, ("PD", ""))[0]
        kept = [f"{job_id} {SQUEUE_CODES.get(last, last)}"]
        if misses < MISSES_TO_VANISH:
            return kept
        try:
            retcode, out, _ = self.run(f"scontrol --oneliner show job {job_id}", timeout)
        except subprocess.TimeoutExpired:
            return kept  # asked again at the next poll
        fields = dict(w.split("=", 1) for w in out.split() if "=" in w) if retcode == 0 else {}
        state = fields.get("JobState", "")
        if state in SQUEUE_CODES:
            self[job_id] = (state, fields.get("Reason", ""))
            if state in FINAL_STATES:
                self._misses.pop(job_id, None)
            return [f"{job_id} {SQUEUE_CODES[state]}"]
        self._misses.pop(job_id, None)
        self[job_id] = (VANISHED, f"neither squeue nor scontrol has listed the job for {MISSES_TO_VANISH} polls")
        log.warning("job %s: %s", job_id, self[job_id][1])
        return []


def tail(path: str | None, lines: int = TAIL_LINES) -> str:
    """The last LINES lines of the file at PATH; "" when there is none (yet)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - (64 << 10)))
            return "\n".join(deque(f.read().decode(errors="replace").splitlines(), maxlen=lines))
    except OSError:
        return ""


def scheduler_detail(provider: Any, job_id: str | None) -> dict[str, Any]:
    """What the scheduler still knows of a finished job: Slurm's ``scontrol show job`` keeps it
    for MinJobAge (300 s by default) and, unlike squeue, gives its exit code. Run with the
    provider's own command runner and timeout; {} for other providers or when it cannot tell."""
    if type(provider).__name__ != "SlurmProvider" or not job_id:
        return {}
    try:
        rc, out, _ = provider.execute_wait(f"scontrol --oneliner show job {job_id}")
    except Exception as e:
        log.warning("scontrol show job %s failed: %s", job_id, e)
        return {}
    if rc != 0 or not isinstance(out, str):
        return {}
    fields = dict(w.split("=", 1) for w in out.split() if "=" in w)
    detail: dict[str, Any] = {"raw_state": fields.get("JobState"), "scheduler_reason": fields.get("Reason")}
    code = fields.get("ExitCode", "").partition(":")[0]
    if code.isdigit():
        detail["exit_code"] = int(code)
    return {k: v for k, v in detail.items() if v is not None}
