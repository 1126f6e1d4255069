"""The processes a user endpoint started, found and killed without touching anyone else's.

A UEP's children do not stay its children: parsl's LocalProvider starts a block with
``bash -c '... &'`` in a process group of its own (setpgrp), so the worker pool is re-parented
to init at once, and once the UEP is dead (``kill -9``) so is everything else it started.
What they keep is the UEP's *session*: the UEP leads one (``start_new_session``) and only
``setsid`` leaves it. So a UEP's processes are those

- in the session whose id is the UEP's pid, or carrying the UEP's instance marker in their
  environment (a task's daemon that left the session with ``setsid`` but kept its environment),
- whose real uid is the UEP's user's, and
- that started no earlier than the UEP.

The kernel gives no new process a pid that is still some live process's session id, so the
session cannot be mistaken for another while any member lives; the start time and uid rule out
a new session that got the same number after every member died. Each process is checked and
signalled through a pidfd: a pid reused between the check and the signal is never signalled.
Batch jobs are not processes of this host: ``gce.uep.blocks`` cancels those.
"""

from __future__ import annotations

import os
import secrets
import signal
from dataclasses import dataclass

MARKER = "GCE_UEP_INSTANCE"


def new_marker() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True)
class _Stat:
    state: str
    session: int
    started: int  # clock ticks after boot (proc(5), /proc/PID/stat field 22)


def _stat(pid: int) -> _Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces and ')'
    return _Stat(fields[0], int(fields[3]), int(fields[19]))


def _real_uid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _environment_has(pid: int, entry: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return entry in f.read().split(b"\0")
    except OSError:  # not ours to read, or gone
        return False


@dataclass(frozen=True)
class Tree:
    """The processes of the UEP whose pid is SESSION, run as UID, started at STARTED."""

    session: int
    uid: int
    started: int
    marker: str

    @classmethod
    def of(cls, pid: int, uid: int, marker: str) -> "Tree | None":
        """The tree of the just started (and not yet reaped) child PID; None if it is already gone."""
        st = _stat(pid)
        return None if st is None else cls(pid, uid, st.started, marker)

    def owns(self, pid: int, marked: bool = True) -> bool:
        """Whether live process PID is one of this tree's (the UEP itself included); with MARKED
        false, only its session counts (see signal)."""
        st = _stat(pid)
        if st is None or st.state in ("Z", "X") or st.started < self.started or _real_uid(pid) != self.uid:
            return False
        return st.session == self.session or (
            marked and _environment_has(pid, f"{MARKER}={self.marker}".encode()))

    def members(self, marked: bool = True) -> list[int]:
        me = os.getpid()
        return [pid for pid in _pids() if pid != me and self.owns(pid, marked)]

    def signal(self, sig: int, marked: bool = True) -> int:
        """Send SIG to every live member; how many were signalled. With MARKED false, only to the
        session: a batch job on this host carries the marker too (sbatch passes the environment
        on), and killing its processes would end the job as failed before it can be cancelled."""
        return sum(_signal_if(pid, lambda p: self.owns(p, marked), sig) for pid in self.members(marked))


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def kill_marked(entry: str, uid: int, rounds: int = 5) -> int:
    """SIGKILL every live process of real UID whose environment holds ENTRY ("NAME=value", a value
    made to be unguessable), again until a round finds none (a member may fork between the list
    and its kill); how many were killed. For what one task left running (gce.uep.procpool)."""
    wanted = entry.encode()
    signalled: set[tuple[int, int]] = set()  # (pid, start): a killed process may linger a moment
    started: dict[int, int] = {}  # pid -> start, as the last check of it saw

    def marked(pid: int) -> bool:
        st = _stat(pid)
        if st is None or st.state in ("Z", "X") or (pid, st.started) in signalled:
            return False
        started[pid] = st.started
        return _real_uid(pid) == uid and _environment_has(pid, wanted)

    me = os.getpid()
    for _ in range(rounds):
        before = len(signalled)
        for pid in _pids():
            if pid != me and marked(pid) and _signal_if(pid, marked, signal.SIGKILL):
                signalled.add((pid, started[pid]))
        if len(signalled) == before:
            break
    return len(signalled)


def _signal_if(pid: int, check, sig: int) -> bool:
    """Signal PID if CHECK(pid) holds for the very process the pidfd refers to."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except (OSError, AttributeError):  # no pidfds (Linux < 5.3): check right before the kill
        if not check(pid):
            return False
        try:
            os.kill(pid, sig)
            return True
        except OSError:
            return False
    try:
        # The pidfd pins the process: if it is still alive after the check, the check was its.
        if not check(pid):
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except OSError:  # it exited meanwhile, or it is not ours to signal
        return False
    finally:
        os.close(fd)
