"""The states of a user endpoint child and the moves between them (after supervisor's states.py).

  stopped  --start-->            starting
  starting --READY-->            running
  starting --exit, N quick/FATAL--> fatal      (its tasks get the reason, no restart loop)
  starting/running --exit-->     backoff --start--> starting ...
  starting/running/stopping --protocol violation--> compromised --reaped--> backoff/fatal/stopped
  starting/running/compromised --stop()--> stopping --reaped--> stopped
  backoff/fatal --stop()-->      stopped;  fatal --retry after a cool-down--> starting

The values are the words the status JSON has always shown.
"""

from __future__ import annotations

import enum
from typing import Mapping


class UepState(str, enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    FATAL = "fatal"
    STOPPING = "stopping"
    COMPROMISED = "compromised"

    def __str__(self) -> str:  # the word in log lines and f-strings, not "UepState.RUNNING"
        return self.value


S = UepState

TRANSITIONS: Mapping[UepState, frozenset[UepState]] = {
    S.STOPPED: frozenset({S.STARTING}),
    S.STARTING: frozenset({S.RUNNING, S.BACKOFF, S.FATAL, S.STOPPING, S.COMPROMISED}),
    S.RUNNING: frozenset({S.BACKOFF, S.STOPPING, S.COMPROMISED}),
    S.BACKOFF: frozenset({S.STARTING, S.STOPPED}),
    S.FATAL: frozenset({S.STARTING, S.STOPPED}),
    S.STOPPING: frozenset({S.STOPPED, S.COMPROMISED}),
    S.COMPROMISED: frozenset({S.BACKOFF, S.FATAL, S.STOPPED, S.STOPPING}),
}

# Where a task may be sent (the UEP reads its channel and has not been told to stop).
ACCEPTS_FRAMES = frozenset({S.STARTING, S.RUNNING})


def allowed(old: UepState, new: UepState) -> bool:
    return new in TRANSITIONS[old]
