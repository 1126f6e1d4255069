"""Run shell commands on an endpoint: ``ex.submit(ShellFunction("echo {x}"), x=3)``.

A ShellFunction is a plain picklable object of an importable class, so cloudpickle sends it
by reference and the endpoint runs this very code (gce is installed there). The command is
formatted with the call's keyword arguments (``str.format``, no shell quoting: quote values
yourself with ``shlex.quote`` if they come from untrusted input) and run with ``/bin/sh -c``.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from typing import Any

# The exit status timeout(1) uses, and Globus Compute's ShellFunction too, for a walltime kill.
WALLTIME_EXIT = 124


@dataclass(frozen=True)
class ShellResult:
    returncode: int
    stdout: str
    stderr: str
    cmd: str

    def __str__(self) -> str:
        return self.stdout


def _tail(text: str, lines: int) -> str:
    if lines <= 0:
        return text
    parts = text.splitlines(keepends=True)
    return "".join(parts[-lines:])


def _kill_session(pid: int) -> None:
    """SIGKILL the command's whole group (it leads its own session); gone already is fine: the
    interrupt that brought us here must not turn into a ProcessLookupError."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class ShellFunction:
    """A shell command template; calling it on the endpoint returns a ShellResult.

    ``walltime`` (seconds) kills the command when exceeded (return code 124). ``snippet_lines``
    keeps only the last lines of stdout and stderr (0 keeps everything).
    """

    def __init__(self, cmd: str, walltime: float | None = None, snippet_lines: int = 1000,
                 name: str | None = None) -> None:
        if not isinstance(cmd, str) or not cmd.strip():
            raise ValueError("ShellFunction needs a non-empty command string")
        self.cmd = cmd
        self.walltime = walltime
        self.snippet_lines = snippet_lines
        # Some tools label tasks by __name__; a command has none of its own.
        self.__name__ = name or "ShellFunction"

    def __call__(self, **kwargs: Any) -> ShellResult:
        cmd = self.cmd.format(**kwargs)
        # A session of its own, so a walltime kill reaches the command's children too: a
        # surviving grandchild holding the pipes open would make communicate() wait forever.
        with subprocess.Popen(["/bin/sh", "-c", cmd], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True) as proc:
            try:
                out, err = proc.communicate(timeout=self.walltime)
                code = proc.returncode
            except subprocess.TimeoutExpired:
                _kill_session(proc.pid)
                out, err = proc.communicate()
                code = WALLTIME_EXIT
                err += f"\ncommand killed after exceeding its walltime of {self.walltime} s\n"
            except BaseException:
                # The task is interrupted (its time limit's TaskTimedOut, a KeyboardInterrupt): the
                # command ends with it. Left alone, leaving the with-block would wait for it, and
                # then it would run on in its session after the worker was killed.
                _kill_session(proc.pid)
                raise
        return ShellResult(code, _tail(out, self.snippet_lines), _tail(err, self.snippet_lines), cmd)

    def __repr__(self) -> str:
        return f"ShellFunction({self.cmd!r}, walltime={self.walltime!r})"
