"""endpoint_setup and endpoint_teardown, and the submitter's versions in a user endpoint's environment.

Globus Compute's ``endpoint_setup`` / ``endpoint_teardown`` are shell commands of the (user) config,
run by the user endpoint itself, so as the mapped user: setup before its engine starts, teardown
after it stopped. Their output goes line by line into the user endpoint's log, each runs in a
session of its own under a time limit (``endpoint_setup_timeout``, default 120 s, for either; the
manager gives a user endpoint 300 s to be ready), and a setup that fails or overruns fails the user
endpoint's start with a sentence naming the command, its exit status and the end of its output:
the FATAL reason every waiting task gets. A teardown runs within the user endpoint's stop, which
its manager lets take about six seconds before it ends what is left: keep it short.

The submitter's Python and gce versions (from the task's runtime headers, gce.config.uep.UserRuntime)
are exported as GCE_USER_PYTHON_VERSION and GCE_USER_SDK_VERSION into the user endpoint's
environment, so the setup commands, the engine's worker_init and its workers see them; each task
also gets its own submitter's (gce.uep.sandbox), since an endpoint whose template does not use
them lets submitters of several Pythons share a user endpoint (gce.daemon.routing.Router.runtime_key).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping

ENV_PYTHON = "GCE_USER_PYTHON_VERSION"
ENV_SDK = "GCE_USER_SDK_VERSION"
DEFAULT_TIMEOUT = 120.0
TAIL_LINES = 10
TAIL_CHARS = 1500
KEYS = ("endpoint_setup", "endpoint_teardown", "endpoint_setup_timeout")

log = logging.getLogger("gce.uep.setup")


def runtime_env(python_version: str, gce_version: str) -> dict[str, str]:
    """The variables that tell a process its submitter's versions (those the submitter said)."""
    env = {ENV_PYTHON: python_version, ENV_SDK: gce_version}
    return {k: v for k, v in env.items() if v}


def export_runtime(python_version: str, gce_version: str) -> None:
    """Put the submitter's versions into this process's environment, for everything it starts."""
    os.environ.update(runtime_env(python_version, gce_version))


class SetupFailed(Exception):
    """A setup command failed; str() is the sentence the waiting tasks get."""


@dataclass(frozen=True)
class Commands:
    setup: str | None = None
    teardown: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def of(cls, config: Mapping[str, Any] | None) -> Commands:
        """The commands of a (schema-checked) config mapping: config.yaml's, or a rendered template's."""
        config = config or {}
        return cls(config.get("endpoint_setup") or None, config.get("endpoint_teardown") or None,
                   float(config.get("endpoint_setup_timeout") or DEFAULT_TIMEOUT))

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint_setup": self.setup, "endpoint_teardown": self.teardown,
                "endpoint_setup_timeout": self.timeout}

    def run_setup(self) -> bool:
        """Run endpoint_setup, if any; SetupFailed saying why. True when there was one to run."""
        if self.setup:
            run("endpoint_setup", self.setup, self.timeout)
        return bool(self.setup)

    def run_teardown(self) -> None:
        """Run endpoint_teardown, if any: a failure is logged, the user endpoint stops anyway."""
        if not self.teardown:
            return
        try:
            run("endpoint_teardown", self.teardown, self.timeout)
        except SetupFailed as e:
            log.error("%s", e)


def run(what: str, command: str, timeout: float) -> None:
    """Run COMMAND with /bin/sh as this process's user, its output into the log; SetupFailed when
    it exits non-zero, is killed, or runs past TIMEOUT seconds (then its whole session is killed)."""
    log.info("%s: running %s", what, command)
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    except OSError as e:
        raise SetupFailed(f"{what} {_shown(command)} could not be started: {e.strerror or e}") from None
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    reader = threading.Thread(target=_relay, args=(proc, what, tail), name=f"gce-{what}", daemon=True)
    reader.start()
    try:
        status = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _kill_session(proc)
        reader.join(5)
        raise SetupFailed(f"{what} {_shown(command)} did not finish within {timeout:g} s (endpoint_setup_timeout) "
                          f"and was killed{_tail(tail)}") from None
    reader.join(5)  # a background child may hold the output open: its last lines are not waited for
    if status == 0:
        log.info("%s: done", what)
        return
    how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
    raise SetupFailed(f"{what} {_shown(command)} {how}{_tail(tail)}")


def _relay(proc: subprocess.Popen, what: str, tail: deque[str]) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip("\n")
        log.info("%s: %s", what, line)
        tail.append(line)


def _kill_session(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session and group: the command's children too
    except ProcessLookupError:
        pass
    proc.wait()


def _shown(command: str) -> str:
    one_line = " ".join(command.split())
    return repr(one_line if len(one_line) <= 200 else one_line[:200] + "...")


def _tail(tail: deque[str]) -> str:
    text = "\n".join(tail)[-TAIL_CHARS:]
    return f"; the end of its output:\n{text}" if text.strip() else " (it printed nothing)"
