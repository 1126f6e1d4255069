"""The error hierarchy; the CLI (`gce/cli.py`) is the only place these become exit codes.

Every error carries what failed, why, and a hint with the next thing to run, so that
messages read ``error: <what failed>: <why>`` then ``hint: <what to run next>``.
Exit codes follow sysexits(3) as Globus Compute's users already expect.
"""

from __future__ import annotations

import os

EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78


class GceError(Exception):
    """A failure a user can act on."""

    exit_code = 1

    def __init__(self, what: str, why: str = "", hint: str = "", exit_code: int | None = None):
        super().__init__(f"{what}: {why}" if why else what)
        self.what = what
        self.why = why
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.what}: {self.why}" if self.why else self.what


class UsageError(GceError):
    exit_code = EX_USAGE


class ConfigError(GceError):
    exit_code = EX_CONFIG


class PermissionDenied(GceError):
    exit_code = EX_NOPERM


class Unavailable(GceError):
    exit_code = EX_UNAVAILABLE


class AlreadyRunning(GceError):
    exit_code = EX_CANTCREAT


class TemporaryFailure(GceError):
    exit_code = EX_TEMPFAIL


class NotRunning(GceError):
    """Raised by commands that need a live endpoint; LSB's 'program is not running'."""

    exit_code = 3


def debug_enabled() -> bool:
    return os.environ.get("GCE_DEBUG", "") not in ("", "0")
