"""Handing tasks to user endpoints, and taking back what they send.

One path for every endpoint (DESIGN.md): find the UEP of the task (a personal endpoint: its one
UEP, made at start; a multi-user endpoint: by the submitter's mapped account and their user
config, made on first use), then the same queue / start / send for both. A UEP is trusted only
for its own tasks: anything else it sends stops it as compromised.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import time
from collections import deque
from typing import Any, Callable

from gce.config.model import EndpointConfig
from gce.daemon import freshness
from gce.daemon.children import UepChild
from gce.daemon.osproc import Os
from gce.daemon.privileges import LocalUser
from gce.daemon.routing import Refused, Router, UepSpec
from gce.daemon.snapshot import TaskEvents
from gce.daemon.spool import Spool
from gce.daemon.states import UepState
from gce.daemon.uep_controls import UepControls
from gce.transport import frames
from gce.transport.message import BadMessage, ErrorCode, ResultHeaders, TaskHeaders, failure

log = logging.getLogger(__name__)
DEFAULT_WINDOW = 256  # tasks in flight at a user endpoint that names no window of its own
MAX_WINDOW = 10_000


def own_account() -> tuple[str, int]:
    """The manager's own account (a personal endpoint's tasks run as it): (name, uid)."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name, uid
    except KeyError:  # a uid without a passwd entry (a container's, say)
        return str(uid), uid


def window_of(ready: dict[str, Any]) -> int:
    """How many tasks a user endpoint asks to hold at once (its READY frame's ``window``), within
    what the manager will buffer for one: a user endpoint is trusted only with its own tasks."""
    window = ready.get("window")
    if isinstance(window, bool) or not isinstance(window, int):
        return DEFAULT_WINDOW
    return max(1, min(window, MAX_WINDOW))


def _stopped_for(violation: str) -> str:
    return f"the user endpoint was stopped: it broke the channel protocol ({violation})"


class Dispatcher(UepControls):
    def __init__(self, config: EndpointConfig, router: Router, spool: Spool, stop_event: asyncio.Event,
                 answer: Callable[[ResultHeaders, bytes], None], counts: dict[str, int], *,
                 os_: Os | None = None, events: TaskEvents | None = None) -> None:
        self.config = config
        self.router = router
        self.spool = spool
        self.stop_event = stop_event
        self.answer = answer  # a result for the submitter (the manager spools and publishes it)
        self.counts = counts
        self.os = os_  # what the UEPs do to the OS; None: the real one
        self.uep: UepChild | None = None  # a personal endpoint's one UEP
        self.ueps: dict[tuple[int, str], UepChild] = {}  # multi_user: (uid, canonical user config) -> UEP
        self.unrouted: list[str] = []  # tasks recovered from the spool, routed once the endpoint is ready
        self._mapping: dict[str, list[str]] = {}  # identity -> its tasks waiting for it to be mapped
        self.events = TaskEvents() if events is None else events  # what happened to tasks, for gce monitor
        self.own_account = own_account()
        self.renewals = freshness.Renewals(freshness.Watch(router.paths, config), stop_event)
        # A user endpoint's word on where its tasks are, for gce.daemon.cancel (set by the manager).
        self.on_task_states: Callable[[UepChild, dict[str, Any]], None] = lambda uep, header: None

    def personal_uep(self) -> UepChild:
        """Make the one UEP of a personal endpoint (not started yet)."""
        self.uep = self._new_uep(self.router.personal_uep())
        return self.uep

    def _new_uep(self, spec: UepSpec, target: LocalUser | None = None) -> UepChild:
        uep = UepChild(spec.name, spec.conf, spec.stderr_file, self.on_frame, self.on_exit, target=target,
                       environment_file=self.config.user_environment_path if target is not None else None,
                       os_=self.os)
        uep.config_digest = freshness.started_from(self.config, spec.conf.engine)
        return uep

    # -- tasks to user endpoints -----------------------------------------------------
    def dispatch(self, task_id: str, body: bytes | None = None) -> None:
        """Hand TASK_ID to its UEP (or queue it); a failure to do so answers that task alone."""
        try:
            self._route(task_id, body)
        except Exception as e:
            self._not_dispatched(task_id, e)

    def _not_dispatched(self, task_id: str, e: Exception) -> None:
        log.error("dispatching task %s failed", task_id, exc_info=e)
        try:
            self._finish_with_error(task_id, ErrorCode.INTERNAL, f"the endpoint could not dispatch this task "
                                    f"({type(e).__name__}; the endpoint's log says more)")
        except Exception:
            log.exception("answering task %s failed too", task_id)

    def _route(self, task_id: str, body: bytes | None) -> None:
        if self.stop_event.is_set():
            return  # stays in the spool: the next start recovers it
        uep = self._uep_for(task_id)
        if uep is None:
            return
        name, uid = (uep.target.name, uep.target.uid) if uep.target is not None else self.own_account
        self.events.mapped(task_id, name, uid)
        if self.renewals.renewing(uep) or self.renewals.if_changed(uep):
            uep.queued.append(task_id)  # for the fresh one
            return
        if uep.state is not UepState.RUNNING:
            uep.queued.append(task_id)
            if uep.state is UepState.STOPPED:
                asyncio.ensure_future(uep.start())
            elif uep.may_retry():
                log.info("trying user endpoint %s again after its fatal failure (%s)", uep.key, uep.reason)
                asyncio.ensure_future(uep.start())
            elif uep.state is UepState.FATAL:
                self._fail_queued(uep)
            return
        self._refill(uep)  # older tasks first
        if uep.queued or len(uep.in_flight) >= uep.window:  # it stays spooled until results come back
            uep.queued.append(task_id)
            return
        self._send(uep, task_id, body)

    def _refill(self, uep: UepChild) -> None:
        """Flow control: send UEP the tasks queued for it, oldest first, while fewer than its window
        are in flight there. The rest waits in the spool, on disk: only its id is in memory."""
        while uep.queued and len(uep.in_flight) < uep.window and uep.state is UepState.RUNNING \
                and not self.renewals.renewing(uep):
            task_id = uep.queued.popleft()
            try:
                self._send(uep, task_id, None)
            except Exception as e:
                self._not_dispatched(task_id, e)

    def _send(self, uep: UepChild, task_id: str, body: bytes | None) -> None:
        entry = self.spool.entries.get(task_id)
        if entry is None:  # answered meanwhile
            return
        if body is None:
            body = self.spool.body(task_id)
        uep.in_flight[task_id] = uep.in_flight.get(task_id, 0) + 1
        uep.active_at = time.monotonic()
        uep.send_frame(frames.TASK, {"task": entry.header["task"]}, body)
        task = entry.header["task"]
        name, uid = (uep.target.name, uep.target.uid) if uep.target is not None else self.own_account
        self.events.dispatched(task_id, uep.key, name, uid, function_name=str(task.get("function_name") or ""),
                               submitter=str(task.get("user_id") or ""))

    def _uep_for(self, task_id: str) -> UepChild | None:
        """The UEP that runs TASK_ID; None when there is none to give it to now: before a
        personal endpoint's UEP is made (the task waits unrouted), while its submitter's identity
        is being mapped (it is dispatched again after) and once the task is answered."""
        if not self.config.multi_user:
            if self.uep is None:
                self.unrouted.append(task_id)
            return self.uep
        entry = self.spool.entries.get(task_id)
        if entry is None:
            return None
        th = TaskHeaders.from_dict(entry.header["task"])
        target = self.router.known_target(th.user_id)
        if target is None:
            waiting = self._mapping.setdefault(th.user_id, [])
            waiting.append(task_id)
            if len(waiting) == 1:
                asyncio.ensure_future(self._map(th.user_id))
            return None
        try:
            if isinstance(target, Refused):
                raise target
            canonical = self.router.canonical_config(th.user_endpoint_config or {})
            key = canonical + self.router.runtime_key(th)  # the submitter's versions, when its template uses them
            uep = self.ueps.get((target.uid, key))
            if uep is None:
                uep = self.ueps[(target.uid, key)] = self._new_uep(
                    self.router.templated_uep(target, canonical, th), target)
            return uep
        except Refused as e:
            self._finish_with_error(task_id, e.code, str(e))
            return None

    async def _map(self, identity: str) -> None:
        """Map IDENTITY off the loop, then dispatch the tasks that waited for it, in order."""
        try:
            await self.router.map(identity)
        finally:
            for tid in self._mapping.pop(identity, []):
                self.dispatch(tid)

    def _fail_queued(self, uep: UepChild) -> None:
        queued, uep.queued = uep.queued, deque()
        code = uep.fatal_code or ErrorCode.ENDPOINT_FAILED
        for tid in queued:
            self._finish_with_error(tid, code, f"the user endpoint could not start: {uep.reason}")

    def route_unrouted(self) -> None:
        """Hand the tasks recovered from the spool to their UEPs, routed like new ones."""
        unrouted, self.unrouted = self.unrouted, []
        for tid in unrouted:
            self.dispatch(tid)

    def _finish_with_error(self, task_id: str, code: str, message: str) -> None:
        if task_id in self.spool.entries:
            self.answer(failure(task_id, self.config.endpoint_id, code, message), b"")

    # -- what user endpoints send ----------------------------------------------------
    def on_frame(self, uep: UepChild, kind: bytes, header: dict[str, Any], body: bytes) -> None:
        """A frame from a UEP, which runs its user's code and is trusted only for its own tasks: a
        result is taken only for a task sent to this very UEP and still in flight there. Anything
        else is a protocol violation: the UEP is treated as compromised and stopped."""
        if kind == frames.RESULT:
            # The worker's traceback, as text, for `gce monitor` (the submitter has it in the result)
            traceback = header.pop("traceback", "")
            if not isinstance(traceback, str):
                return self._violation(uep, "a RESULT frame whose traceback is not text")
            try:
                rh = ResultHeaders.from_uep(header, self.config.endpoint_id)
            except BadMessage as e:
                return self._violation(uep, f"a malformed RESULT frame: {e}")
            if rh.task_id not in uep.in_flight:
                return self._violation(uep, f"a result for task {rh.task_id!r}, which it is not running")
            # A result payload: the value, what the function printed (stdout and stderr), lengths.
            if len(body) > self.config.max_result_bytes + 2 * self.config.max_output_bytes + 64 * 1024:
                return self._violation(uep, f"a result of {len(body):,} bytes, over the endpoint's limit")
            uep.in_flight.pop(rh.task_id)
            uep.active_at = time.monotonic()
            if traceback and rh.status == "failed":
                self.events.traceback(rh.task_id, traceback)
            self.answer(rh, body)
            self._refill(uep)
        elif kind == frames.TASK_STATES:
            self.on_task_states(uep, header)
        elif kind == frames.READY:
            uep.window = window_of(header)
            queued, uep.queued = uep.queued, deque()
            for tid in queued:
                self.dispatch(tid)

    def _violation(self, uep: UepChild, what: str) -> None:
        """UEP sent WHAT, which no honest UEP sends: its tasks fail now (a retry would run the same
        code in a fresh UEP again) and it is stopped, with all below it."""
        self.counts["violations"] += 1
        log.error("protocol violation: user endpoint %s (pid %s) sent %s; stopping it as compromised",
                  uep.key, uep.pid, what)
        lost, uep.in_flight = uep.in_flight, {}
        for tid in lost:
            self._finish_with_error(tid, ErrorCode.ENDPOINT_FAILED, _stopped_for(what))
        uep.kill_compromised(what)

    def on_exit(self, uep: UepChild, reason: str) -> None:
        lost, uep.in_flight = uep.in_flight, {}
        again: list[str] = []  # run again before the tasks that never left the spool: they are older
        for tid, attempts in lost.items():
            if uep.violation:  # its own tasks made it break the protocol: running them again would too
                self._finish_with_error(tid, ErrorCode.ENDPOINT_FAILED, _stopped_for(uep.violation))
            elif attempts >= self.config.task_attempts:
                self._finish_with_error(tid, ErrorCode.WORKER_LOST, f"{reason} while running this task "
                                        f"({attempts} attempt{'s' if attempts > 1 else ''})")
            else:
                again.append(tid)
        uep.queued.extendleft(reversed(again))
        if uep.state is UepState.FATAL:
            self._fail_queued(uep)
        elif uep.state is UepState.BACKOFF and not self.stop_event.is_set():
            delay = uep.backoff_delay()
            log.info("restarting the user endpoint in %.0f s", delay)
            asyncio.get_running_loop().call_later(delay, lambda: asyncio.ensure_future(self._restart(uep)))

    async def _restart(self, uep: UepChild) -> None:
        if uep.state is UepState.BACKOFF and not self.stop_event.is_set():
            await uep.start()
