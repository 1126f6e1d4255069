"""The start-up handshake between `gce start --detach` and the manager it starts.

The launcher passes the manager a pipe (``--ready-fd N``); the manager writes one JSON line there,
once, when start-up ends: READY (the broker connected, the engine up), FAILED (with the reason),
or REFUSED (it refused to start at all, e.g. its configuration changed since the launcher checked
it: the error is passed whole, so the launcher raises that very error with its exit code).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from enum import Enum
from typing import Any

# A pipe holds 64 KiB on Linux (pipe(7)): one report must fit whole, so the manager's write
# never waits for a launcher that stopped reading.
MAX_LINE = 60_000


class Outcome(str, Enum):
    READY = "ready"
    FAILED = "failed"
    REFUSED = "refused"


class ReportError(ValueError):
    """A start-up report that cannot be read."""


@dataclass(frozen=True)
class Refusal:
    """A GceError the manager refused to start with, as the launcher re-raises it."""

    what: str
    why: str = ""
    hint: str = ""
    exit_code: int = 1


@dataclass(frozen=True)
class ReadyReport:
    outcome: Outcome
    reason: str = ""  # why start-up FAILED
    error: Refusal | None = None  # why the manager REFUSED to start

    def to_line(self) -> bytes:
        limit = MAX_LINE
        while True:  # long texts are cut (JSON may escape a character into 6 bytes) until it fits
            line = json.dumps(self._data(limit)).encode() + b"\n"
            if len(line) <= MAX_LINE:
                return line
            limit //= 2

    def _data(self, limit: int) -> dict[str, Any]:
        data: dict[str, Any] = {"outcome": self.outcome.value, "reason": self.reason[:limit]}
        if self.error is not None:
            e = self.error
            data["error"] = {"what": e.what[:limit], "why": e.why[:limit], "hint": e.hint[:limit],
                             "exit_code": e.exit_code}
        return data

    @classmethod
    def from_line(cls, line: bytes) -> ReadyReport:
        """Read one report line; ReportError says what is wrong with a garbled one."""
        try:
            data = json.loads(line)
        except ValueError:
            raise ReportError(f"not a JSON line: {line[:200]!r}") from None
        if not isinstance(data, dict):
            raise ReportError(f"not a JSON object: {line[:200]!r}")
        try:
            outcome = Outcome(data.get("outcome"))
        except ValueError:
            raise ReportError(f"unknown outcome {data.get('outcome')!r}") from None
        reason = data.get("reason", "")
        if not isinstance(reason, str):
            raise ReportError("its reason is not a string")
        error = None
        if outcome is Outcome.REFUSED:
            error = _refusal(data.get("error"))
        return cls(outcome, reason, error)


def _refusal(data: object) -> Refusal:
    if not isinstance(data, dict):
        raise ReportError("a refusal without its error")
    what, why, hint, code = (data.get(k) for k in ("what", "why", "hint", "exit_code"))
    if not isinstance(what, str) or not what:
        raise ReportError("a refusal whose error says nothing")
    if not isinstance(code, int) or isinstance(code, bool):
        raise ReportError("a refusal without an exit code")
    return Refusal(what, why if isinstance(why, str) else "", hint if isinstance(hint, str) else "", code)


class ReadyPipe:
    """The manager's end: says the outcome once, then closes; without a pipe it says nothing."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def say(self, report: ReadyReport) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, report.to_line())
            os.close(self.fd)
        except OSError:
            pass  # the launcher gave up waiting: nobody to tell
        self.fd = None
