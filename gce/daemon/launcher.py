"""What `gce start`, `gce start --detach` and `gce stop` do.

Detached start runs ``python -m gce.daemon NAME --ready-fd N`` in a new session and waits
on the pipe for its start-up outcome, so success means the endpoint works (broker
connected, engine up) and failure comes with the reason and the log's last lines.
Nothing is double-forked and nothing is left half-started.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

from gce.config import model
from gce.config.paths import EndpointPaths
from gce.daemon import pidfile
from gce.daemon.ready import Outcome, ReadyReport, ReportError
from gce.daemon.spawn import python_command
from gce.errors import AlreadyRunning, GceError, TemporaryFailure, Unavailable
from gce.logfiles import open_append, rotate_if_large, tail


def run_foreground(paths: EndpointPaths) -> int:
    from gce.daemon.main import run

    model.check_broker_account(model.load(paths), str(paths.config_file))
    return run(paths, ready_fd=None, to_stderr=True)


def _check_startable(paths: EndpointPaths) -> None:
    # Config errors are reported here, before anything starts: also the engine options parsl
    # would refuse in the user endpoint (this process may import parsl; the manager may not).
    config = model.load(paths, engine_options=True)
    if pidfile.lock_is_held(paths):
        st = pidfile.read_state(paths) or {}
        raise AlreadyRunning(
            f"endpoint {paths.name!r} is already running", f"pid {st.get('pid')} on {st.get('host', '?')}",
            hint=f"gce status {paths.name}",
        )
    _refuse_if_elsewhere(paths, "start")
    model.check_broker_account(config, str(paths.config_file))  # after "already running": that one matters more


def _refuse_if_elsewhere(paths: EndpointPaths, what: str) -> None:
    other = pidfile.running_elsewhere(paths)
    if other is not None:
        raise AlreadyRunning(
            f"cannot {what} endpoint {paths.name!r} here: it runs on host {other.get('host')}",
            f"pid {other.get('pid')} there refreshed {paths.state_file} within the last "
            f"{pidfile.STALE_AFTER_SECONDS:.0f} s, and this directory is shared with that host",
            hint=f"run gce {what} {paths.name} on {other.get('host')}",
        )


# How long a manager whose start-up failed or timed out gets to stop by itself and its children
# before they are killed; as long as `gce stop` waits for a manager's children at most.
STOP_GRACE = 10.0


def start_detached(paths: EndpointPaths, timeout: float = 120.0) -> dict:
    _check_startable(paths)
    paths.log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    rfd, wfd = os.pipe()
    devnull = os.open(os.devnull, os.O_RDWR)
    # The manager's own log rotates by itself; what it writes to stderr (a crash before its
    # logging is set up, a C library's message) is bounded at each start instead.
    rotate_if_large(stderr_file(paths))
    err = open_append(stderr_file(paths))  # 0600, never through a planted link
    try:
        proc = subprocess.Popen(
            python_command("gce.daemon", paths.name, "--ready-fd", str(wfd)),
            stdin=devnull, stdout=devnull, stderr=err, pass_fds=(wfd,), close_fds=True, start_new_session=True,
            cwd="/",  # a daemon holds no directory busy
        )
    finally:
        os.close(wfd)
        os.close(devnull)
        err.close()
    answer = b""
    deadline = time.monotonic() + timeout
    try:
        while not answer.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                _take_down(proc, terminate=True)
                raise TemporaryFailure(
                    f"endpoint {paths.name!r} did not become ready within {timeout:g} s",
                    "it had neither connected to the broker with its engine up, nor failed; "
                    "it was stopped with all it had started" + _last_lines(paths),
                    hint=f"look at {paths.log_file}, or retry with a larger --timeout",
                )
            r, _, _ = select.select([rfd], [], [], min(left, 1.0))
            if r:
                chunk = os.read(rfd, 65536)
                if not chunk:
                    break
                answer += chunk
    finally:
        os.close(rfd)
    report = _read_report(answer)
    if isinstance(report, ReadyReport) and report.outcome is Outcome.READY:
        return {"pid": proc.pid, "endpoint_id": model.read_endpoint_id(paths), "log_file": str(paths.log_file)}
    # The manager exits by itself after a failed start; one whose report is garbled is not trusted to.
    _take_down(proc, terminate=isinstance(report, str) and bool(report))
    if isinstance(report, ReadyReport) and report.error is not None:
        e = report.error
        raise GceError(e.what, e.why, hint=e.hint, exit_code=e.exit_code)
    if isinstance(report, ReadyReport):
        reason = report.reason + _last_lines(paths)
    else:  # it died before it could say why (or said it garbled): what it wrote to stderr may
        reason = (f"the manager exited with status {proc.returncode}{report}" + _last_lines(paths)
                  + _last_lines(paths, stderr_file(paths)))
    raise Unavailable(f"endpoint {paths.name!r} failed to start", reason, hint=start_hint(paths, reason))


def _read_report(answer: bytes) -> ReadyReport | str:
    """The manager's start-up report, or why there is none (in words to append to the reason)."""
    if not answer.strip():
        return ""  # the pipe closed unwritten: the manager died first
    try:
        return ReadyReport.from_line(answer)
    except ReportError as e:
        return f", and its start-up report could not be read ({e})"


def start_hint(paths: EndpointPaths, reason: str) -> str:
    """What to do about the cause REASON names, then how to try again."""
    name, config = paths.name, paths.config_file
    if "refused the login" in reason:
        todo = f"check the broker URL's user and password in {config}"
    elif "may not use the virtual host" in reason or "permission" in reason:
        todo = (f"give the endpoint's broker account its grants (gce broker provision --endpoint {name}), "
                f"or fix the virtual host in {config}")
    elif "broker's TLS certificate" in reason or "TLS with the broker failed" in reason:  # link_errors' words
        todo = (f"the endpoint trusts the CAs of the system's store, or of SSL_CERT_FILE in its environment "
                f"(under systemd: systemctl edit, Environment=SSL_CERT_FILE=...); gce diagnostic --endpoint {name} "
                f"checks the way there")
    elif "cannot connect to the broker" in reason or "did not answer within" in reason:
        todo = (f"is the broker running, and is its address in {config} right? "
                f"gce diagnostic --endpoint {name} checks the way there")
    else:
        todo = f"gce diagnostic --endpoint {name} checks each part of the endpoint"
    return f"{todo}; then gce start {name} --detach (full log: {paths.log_file})"


def stderr_file(paths: EndpointPaths) -> Path:
    """Where a detached manager's stderr goes."""
    return paths.log_file.with_name(paths.log_file.name + ".stderr")


def _last_lines(paths: EndpointPaths, path: Path | None = None) -> str:
    path = path or paths.log_file
    shown, left_out = lines_for_people(tail(path, 200), 10)
    if not shown:
        return ""
    note = (f" ({left_out} lines of pika, the AMQP library, left out: they repeat the cause above)"
            if left_out else "")
    return f"\nlast lines of {path}{note}:\n" + "\n".join(shown)


# "<date> <time> <LEVEL> manager[<pid>] <logger>: <message>", as the manager's log handler writes it.
_LINE = re.compile(r"^(\S+ (\S+)) \S+ \S+ (\S+): ")


def lines_for_people(text: str, lines: int) -> tuple[list[str], int]:
    """The last LINES lines of the log TEXT worth reading, and how many pika lines were left out.

    pika logs one failed connection five times over at ERROR, each a restatement of the reason
    gce already gives; and a line repeated but for its time is shown once, with a count."""
    kept: list[list] = []  # [line, key, repeats, last time]
    left_out = 0
    for ln in text.splitlines():
        m = _LINE.match(ln)
        if m and m.group(3).startswith("pika."):
            left_out += 1
            continue
        key = ln[m.end(1):] if m else ln
        if kept and kept[-1][1] == key:
            kept[-1][2] += 1
            kept[-1][3] = m.group(2) if m else ""
            continue
        kept.append([ln, key, 0, ""])
    shown = [ln + (f"  (and {n} more time{'s' * (n != 1)}" + (f" until {last})" if last else ")") if n else "")
             for ln, _, n, last in kept[-lines:]]
    return shown, left_out


def _take_down(proc: subprocess.Popen, terminate: bool) -> None:
    """Make sure a manager that did not start is gone with everything it started (user
    endpoints run in sessions of their own): SIGTERM first when TERMINATE, so it can stop its
    engine (and cancel batch jobs), then SIGKILL for whatever is left after STOP_GRACE seconds."""
    tree = _tree(proc.pid)
    if terminate:
        _signal(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    _kill_left(tree, grace=STOP_GRACE)


def _kill_left(procs: list, grace: float) -> None:
    """SIGKILL whatever of PROCS is still alive after GRACE seconds, and reap it."""
    import psutil

    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


def stop(paths: EndpointPaths, timeout: float = 30.0) -> bool:
    """Stop the endpoint's manager and everything under it; False if it was not running."""
    from gce.daemon import control

    if not pidfile.lock_is_held(paths):
        _refuse_if_elsewhere(paths, "stop")
        return False
    st = pidfile.read_state(paths) or {}
    pid = st.get("pid")
    tree = _tree(pid)
    try:
        control.request(paths, "stop", timeout=5.0)
    except GceError:
        if pid:
            _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pidfile.lock_is_held(paths) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pidfile.lock_is_held(paths) and pid:
        _signal(pid, signal.SIGKILL)
        time.sleep(0.2)
    _kill_left(tree, grace=0)  # anything the manager failed to take down with it
    if pidfile.lock_is_held(paths):
        raise Unavailable(f"endpoint {paths.name!r} did not stop", f"pid {pid} still holds the lock")
    return True


def _tree(pid: int | None) -> list:
    import psutil

    if not pid:
        return []
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
