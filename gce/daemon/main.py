"""The manager process's life: lock, logging, signals, start-up, serve, staged shutdown.

``python -m gce.daemon NAME [--ready-fd N]`` runs it detached; ``gce start`` in the
foreground calls ``run`` directly. With a ready fd, the outcome of start-up is written
there once (gce/daemon/ready.py: ready, failed and why, or refused with the error) so
``gce start --detach`` returns only when the endpoint works (connected to the broker, engine
up) or says why it does not.
Under systemd (``Type=notify``) the same moment is reported with READY=1, followed by
STATUS= lines, WATCHDOG=1 pings and STOPPING=1 (gce/daemon/notify.py); logs then go to
stderr, which is the journal. SIGHUP to a manager without a terminal (detached, or
``systemctl reload``) reads the configuration again (gce/daemon/reload.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from gce.config import model
from gce.config.paths import EndpointPaths, system_mode
from gce.daemon import pidfile
from gce.daemon.control import serve
from gce.daemon.housekeeping import housekeeping
from gce.daemon.manager import Manager
from gce.daemon.notify import Notifier, journal_stderr, status_text
from gce.daemon.ready import Outcome, ReadyPipe, ReadyReport, Refusal
from gce.daemon.reload import Reloader, has_terminal, serve_reloads
from gce.daemon.snapshot import snapshot
from gce.daemon.states import UepState
from gce.errors import GceError
from gce.logfiles import rotating_handler
from gce.transport.link_errors import LinkError

log = logging.getLogger("gce.daemon")
# pika decodes an AMQP header table recursively, before any code of ours sees the message, and a
# RecursionError there drops the connection: the broker redelivers the same message and the loop
# repeats, for every user of the endpoint. A content header frame is at most pika's frame_max
# (128 KiB) and a nested table or array costs at least 5 bytes and at most 2 Python frames a
# level, so this limit decodes the deepest header that fits; parse_task then refuses it
# (gce.transport.limits). From Python 3.11 on, Python-to-Python calls use no C stack.
DECODE_RECURSION_LIMIT = 2 * (128 * 1024 // 5) + 8000
STOP_TIMEOUT = 20.0
NOTIFY_PERIOD = 10.0  # seconds between two STATUS= updates to systemd, at most


class _JournalFormatter(logging.Formatter):
    """Lines for journald: a ``<priority>`` prefix on each line (sd-daemon(3)); no time stamp,
    the journal has its own."""

    PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{self.PRIORITIES.get(record.levelno, 6)}>"
        return prefix + super().format(record).replace("\n", "\n" + prefix)


def setup_logging(paths: EndpointPaths, to_stderr: bool, debug: bool, journal: bool = False) -> None:
    """Log to the endpoint's rotated file, to stderr too if TO_STDERR; with JOURNAL (stderr is
    the journal) a system endpoint logs to the journal only (DESIGN.md, "Files")."""
    root = logging.getLogger()
    root.handlers.clear()
    if not (journal and system_mode()):
        root.addHandler(rotating_handler(paths.log_file, "%(asctime)s %(levelname)s manager[%(process)d] "
                                                             "%(name)s: %(message)s"))
    if journal:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(_JournalFormatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(sh)
    elif to_stderr:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        root.addHandler(sh)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    logging.getLogger("pika").setLevel(logging.WARNING if not debug else logging.INFO)


async def _notify_loop(m: Manager, notifier: Notifier, reloader: Reloader) -> None:
    """Live figures for ``systemctl status``, and the watchdog's proof that this loop runs."""
    watchdog = notifier.watchdog_interval
    period = min(NOTIFY_PERIOD, m.config.status_period, watchdog or NOTIFY_PERIOD)
    while True:
        await asyncio.sleep(period)
        fields = {"STATUS": reloader.status(status_text(snapshot(m)))}
        if watchdog:
            fields["WATCHDOG"] = "1"
        notifier.send(**fields)


async def _starting_status(m: Manager, notifier: Notifier) -> None:
    """Until READY=1: what start-up waits for, so `systemctl status` says why it takes long."""
    while True:
        broker = "connected" if m.link.connected else "connecting" + (
            f" (last error: {m.link.last_error})" if m.link.last_error else "")
        uep = f"user endpoint {m.uep.state}" if m.uep is not None else "no user endpoint yet"
        notifier.send(STATUS=f"starting: broker {broker}; {uep}")
        await asyncio.sleep(1.0)


async def _serve(m: Manager, ready: ReadyPipe, notifier: Notifier) -> int:
    loop = asyncio.get_running_loop()
    reload_wanted = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, m.stop_event.set)
    # SIGHUP: a terminal's hang-up stops a manager in its foreground; detached or under systemd
    # (no terminal) it is `systemctl reload`, handled once the endpoint is ready (gce/daemon/reload.py).
    loop.add_signal_handler(signal.SIGHUP, m.stop_event.set if has_terminal() else reload_wanted.set)
    reloader = Reloader(m)
    recovered = m.spool.recover()
    m.commit.check_disk()  # a spool that cannot be written: start paused, tasks wait on the broker
    control = await serve(m.paths.control_socket, m.commands(), others=m.config.multi_user)
    if not m.config.multi_user:  # a multi-user endpoint starts a UEP per user and config, on demand
        m.dispatcher.personal_uep()
    m.dispatcher.unrouted.extend(tid for tid, _header in recovered.tasks)  # routed once the endpoint is ready
    m.outbox.unpublished.update(tid for tid, _ in recovered.results)

    link_task = loop.create_task(m.link.run(first_failure_fatal=ready.fd is not None))
    starting = loop.create_task(_starting_status(m, notifier)) if notifier.enabled else None
    if m.uep is not None:
        await m.uep.start()
    ready_wait = loop.create_task(m.uep.ready.wait() if m.uep is not None else asyncio.sleep(0))
    stop_wait = loop.create_task(m.stop_event.wait())
    await asyncio.wait({ready_wait, link_task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    failure = ""
    if link_task.done() and link_task.exception() is not None:
        failure = str(link_task.exception())
    elif m.uep is not None and m.uep.state is not UepState.RUNNING and not m.stop_event.is_set():
        failure = m.uep.reason or "the user endpoint did not start"
    while not failure and not m.link.connected and not m.stop_event.is_set():
        if link_task.done():
            failure = str(link_task.exception() or "the broker connection ended")
            break
        await asyncio.sleep(0.05)
    if starting is not None:
        starting.cancel()
    if failure:
        log.error("start-up failed: %s", failure)
        ready.say(ReadyReport(Outcome.FAILED, failure))
        notifier.send(STATUS=f"start-up failed: {failure}")
        pidfile.write_state(m.paths, "failed", failure, started_at=m.started_at)
        await _shutdown(m, link_task, control, notifier)
        return 1
    beat = None
    if not m.stop_event.is_set():
        pidfile.write_state(m.paths, "running", started_at=m.started_at, endpoint_id=m.config.endpoint_id)
        log.info("endpoint %s (%s) is ready: broker connected, %s engine up", m.paths.name,
                 m.config.endpoint_id, m.config.engine.get("type"))
        ready.say(ReadyReport(Outcome.READY))
        notifier.send(READY="1", STATUS=status_text(snapshot(m)))
        beat = loop.create_task(_notify_loop(m, notifier, reloader))  # runs on through the shutdown
        m.route_unrouted()
        status_task = loop.create_task(housekeeping(m))
        reloads = loop.create_task(serve_reloads(reloader, reload_wanted, notifier))
        stop_wait2 = loop.create_task(m.stop_event.wait())
        await asyncio.wait({stop_wait2, link_task}, return_when=asyncio.FIRST_COMPLETED)
        status_task.cancel()
        reloads.cancel()
        if link_task.done() and link_task.exception() is not None:
            reason = str(link_task.exception())
            log.error("the broker link failed: %s", reason)
            pidfile.write_state(m.paths, "failed", reason, started_at=m.started_at)
            notifier.send(STATUS=f"the broker link failed: {reason}")
            await _shutdown(m, link_task, control, notifier)
            beat.cancel()
            return 1
    log.info("stopping")
    await _shutdown(m, link_task, control, notifier)
    if beat is not None:
        beat.cancel()
    pidfile.write_state(m.paths, "stopped", "stopped on request", started_at=m.started_at)
    return 0


async def _shutdown(m: Manager, link_task: asyncio.Task, control: asyncio.AbstractServer,
                    notifier: Notifier) -> None:
    m.stop_event.set()  # no user endpoint restarts from here on
    notifier.send(STOPPING="1")
    control.close()
    await m.stop_ueps(timeout=STOP_TIMEOUT * 0.6)
    m.router.close()
    m.audit.close()  # the last lines of tasks answered while stopping
    await m.commit.flush_all()
    await m.link.close()
    if not link_task.done():
        link_task.cancel()
    m.spool.close()
    try:
        m.paths.control_socket.unlink()
    except FileNotFoundError:
        pass


def run(paths: EndpointPaths, ready_fd: int | None = None, to_stderr: bool = True) -> int:
    """Run the manager until stopped; return the process exit status."""
    ready = ReadyPipe(ready_fd)
    notifier = Notifier.from_environment()
    journal = journal_stderr(os.environ)
    try:
        config = model.load(paths)
        lock_fd = pidfile.acquire_lock(paths)
    except GceError as e:
        # Refused before starting anything (a config that changed since the launcher checked
        # it, the lock taken by a start racing this one): the launcher re-raises this very
        # error, with its exit code, rather than a generic failure to start.
        ready.say(ReadyReport(Outcome.REFUSED, error=Refusal(e.what, e.why, e.hint, e.exit_code)))
        notifier.send(STATUS=f"failed: {e}")
        raise
    del lock_fd  # held (open, close-on-exec) until this process exits
    setup_logging(paths, to_stderr, config.debug, journal=journal)
    pidfile.write_state(paths, "starting", endpoint_id=config.endpoint_id)
    m = Manager(paths, config, detached=ready_fd is not None)
    if sys.version_info >= (3, 11):
        sys.setrecursionlimit(max(sys.getrecursionlimit(), DECODE_RECURSION_LIMIT))
    try:
        return asyncio.run(_serve(m, ready, notifier))
    except LinkError as e:
        ready.say(ReadyReport(Outcome.FAILED, str(e)))
        pidfile.write_state(paths, "failed", str(e))
        return 1
    except Exception as e:
        log.exception("the manager crashed")
        reason = f"the manager crashed: {type(e).__name__}: {e}"
        ready.say(ReadyReport(Outcome.FAILED, reason))
        pidfile.write_state(paths, "failed", reason)
        return 70


def main(argv: list[str] | None = None) -> int:
    import argparse

    from gce.config.paths import endpoint_paths

    ap = argparse.ArgumentParser(prog="gce-manager")
    ap.add_argument("name")
    ap.add_argument("--ready-fd", type=int)
    args = ap.parse_args(argv)
    try:
        return run(endpoint_paths(args.name), args.ready_fd, to_stderr=False)
    except GceError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


__all__ = ["run", "main"]
