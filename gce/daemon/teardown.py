"""What goes when a user endpoint has gone: every process it left on this host, then its batch jobs.

DESIGN.md: "When a user endpoint dies, its whole process tree and its batch jobs go with it",
however it died (SIGKILL, out of memory, a protocol violation, a stop). Its processes are
found by gce.daemon.proctree; its batch jobs are cancelled by ``gce.uep.blocks``, started as
the UEP's own user in the UEP's environment, so root never runs ``scancel`` on what a user's
files say. Both happen before the UEP may be started again.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any, Protocol

from gce.config.uep import UepConfig
from gce.daemon.osproc import Os, ProcessTree
from gce.daemon.privileges import LocalUser

log = logging.getLogger(__name__)

CANCEL_TIMEOUT = 60.0  # for a dead UEP's batch jobs to be cancelled (parsl gives each command 10 s)
KILL_PASSES = 100  # SIGKILL sweeps, each waiting up to KILL_PASS_WAIT for its victims to go
KILL_PASS_WAIT = 0.05
LOCAL_ENGINES = ("ThreadPoolEngine", "ProcessPoolEngine")  # nothing of theirs leaves this host
# parsl's HTEX and the MPI engines on it: their blocks leave this host only through a batch provider.
PARSL_ENGINES = ("HighThroughputEngine", "MPIEngine", "GlobusMPIEngine")


class Reaped(Protocol):
    """What this module needs of a reaped user endpoint (gce.daemon.children.UepChild)."""

    key: str
    conf: UepConfig
    engine_status: dict[str, Any]
    log_path: Path
    target: LocalUser | None
    environment_file: str | None
    os: Os

    @property
    def tree(self) -> ProcessTree | None: ...


async def take_down(uep: Reaped) -> None:
    """Kill what the reaped UEP left on this host, then cancel the batch jobs it left."""
    tree = uep.tree
    if tree is None:
        return
    # The session first (the interchange: no block is started from now on), then the batch jobs,
    # then whatever still carries the UEP's marker (a task's daemon, a job's leftovers here).
    await _sweep(uep, tree, marked=False)
    if _may_have_batch_jobs(uep):
        await _cancel_blocks(uep, tree.uid)
    await _sweep(uep, tree, marked=True)


async def _sweep(uep: Reaped, tree: ProcessTree, marked: bool) -> None:
    for _ in range(KILL_PASSES):  # each pass kills what the previous one's victims forked meanwhile
        if not tree.signal(signal.SIGKILL, marked):
            return
        await uep.os.wait_gone(tree, marked, KILL_PASS_WAIT)
    log.error("user endpoint %s: processes of its tree survive SIGKILL: %s", uep.key, tree.members(marked)[:20])


def _may_have_batch_jobs(uep: Reaped) -> bool:
    """False when the UEP's engine is known to run nothing off this host."""
    engine = uep.conf.engine  # empty: a multi-user endpoint's UEP renders its own
    if not engine and isinstance(uep.engine_status, dict):
        engine = {"type": uep.engine_status.get("type")}
    if engine.get("type") in LOCAL_ENGINES:
        return False
    provider = engine.get("provider") if isinstance(engine.get("provider"), dict) else None
    return not (engine.get("type") in PARSL_ENGINES and
                (provider is None or provider.get("type", "LocalProvider") == "LocalProvider"))


async def _cancel_blocks(uep: Reaped, uid: int) -> None:
    """Run ``gce.uep.blocks`` as the UEP's user and wait for it (at most CANCEL_TIMEOUT)."""
    marker = uep.os.new_marker()
    identity = uep.conf.identity
    conf = {"run_dir": uep.conf.run_dir, "identity": identity.to_dict() if identity is not None else None}
    try:
        proc = uep.os.spawn_block_cancel(conf, uep.log_path, uep.target, uep.environment_file, marker)
    except OSError as e:
        log.error("user endpoint %s: cannot start what cancels its batch jobs: %s", uep.key, e)
        return
    tree = uep.os.tree_of(proc.pid, uid, marker)
    rc = await uep.os.wait_exit(proc, CANCEL_TIMEOUT)
    if rc is None:
        log.error("user endpoint %s: cancelling its batch jobs took over %.0f s: stopped; see %s", uep.key,
                  CANCEL_TIMEOUT, uep.log_path)
        tree.signal(signal.SIGKILL)
        proc.kill()
        rc = await uep.os.wait_exit(proc, None)
    if rc:
        log.error("user endpoint %s: cancelling its batch jobs failed (%s); see %s", uep.key,
                  f"exit status {rc}" if rc > 0 else f"signal {-rc}", uep.log_path)
