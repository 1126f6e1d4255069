"""What is asked of a manager's user endpoints as a whole, beside the tasks they run: by the
control socket (find one, whose it is, stop it, cancel one of its blocks, resume it) and by the
manager's housekeeping (stop the idle ones, renew the changed ones, stop all at the end).
gce.daemon.dispatch.Dispatcher has these; the tasks' own path is there."""

from __future__ import annotations

import asyncio
import logging

from gce.config.model import EndpointConfig
from gce.daemon import freshness
from gce.daemon.children import UepChild
from gce.daemon.states import UepState
from gce.transport import frames

log = logging.getLogger("gce.daemon.dispatch")


class UepControls:
    config: EndpointConfig
    uep: UepChild | None  # a personal endpoint's one UEP
    ueps: dict[tuple[int, str], UepChild]  # multi_user: (uid, canonical user config) -> UEP
    own_account: tuple[str, int]
    renewals: freshness.Renewals

    def stop_idle(self) -> None:
        """Stop the UEPs of a multi-user endpoint that had no task for idle_timeout seconds."""
        for key, uep in list(self.ueps.items()):
            idle = uep.idle_for() >= self.config.idle_timeout
            if idle and (uep.state in (UepState.RUNNING, UepState.BACKOFF) or uep.may_retry()):
                del self.ueps[key]
                log.info("stopping user endpoint %s: idle for %.0f s", uep.key, uep.idle_for())
                asyncio.ensure_future(uep.stop())

    def replace_changed(self) -> None:
        """On the status tick: every UEP whose blocks kept failing and whose config changed restarts."""
        for uep in [u for u in (self.uep, *self.ueps.values()) if u is not None]:
            self.renewals.if_changed(uep)

    def find(self, key: str) -> UepChild | None:
        """The user endpoint named KEY (a status's user_endpoints[i].key)."""
        return next((u for u in (self.uep, *self.ueps.values()) if u is not None and u.key == key), None)

    def owner_of(self, key: str) -> int | None:
        """The uid of the account user endpoint KEY runs as; None when there is no such one."""
        uep = self.find(key)
        if uep is None:
            return None
        return uep.target.uid if uep.target is not None else self.own_account[1]

    def stop_uep(self, key: str) -> bool:
        """Stop user endpoint KEY (its tasks in flight are retried or answered as on any exit); a
        multi-user one is forgotten, so its user's next task starts a fresh one. False: no such one."""
        uep = self.find(key)
        if uep is None:
            return False
        for k, u in list(self.ueps.items()):
            if u is uep:
                del self.ueps[k]
        log.info("stopping user endpoint %s on request", key)
        asyncio.ensure_future(uep.stop())
        return True

    def cancel_block(self, key: str, block_id: str) -> bool:
        """Ask user endpoint KEY to cancel its block BLOCK_ID; False when it is not running."""
        uep = self.find(key)
        return uep is not None and uep.state is UepState.RUNNING and \
            uep.send_frame(frames.CANCEL_BLOCK, {"block_id": block_id})

    def resume(self, key: str) -> bool:
        """Have user endpoint KEY submit blocks again after they kept failing: it is restarted from its
        config as it is now. Not resumed in place: the tasks it answered BLOCKS_FAILING may still sit
        in its interchange's queue, and would run on its first good block. False when it is not running."""
        uep = self.find(key)
        if uep is None or uep.state is not UepState.RUNNING:
            return False
        self.renewals.asked(uep)
        return True

    async def stop_all(self, timeout: float) -> None:
        """Stop every user endpoint (and all below them) at once."""
        children = [u for u in (self.uep, *self.ueps.values()) if u is not None]
        await asyncio.gather(*(u.stop(timeout=timeout) for u in children))
