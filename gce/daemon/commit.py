"""Group commit of the task spool: a task is acked only once it is on disk.

Deliveries that arrive while the loop is busy share one fsync, and the fsync runs on a
thread so the loop keeps dispatching tasks and publishing results meanwhile; what arrives
during it goes into the next batch. Acks are per channel generation: tags of a channel that
closed are void (the broker requeued those messages), so a reconnect forgets them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Callable

from gce.daemon.spool import Spool

log = logging.getLogger(__name__)


class GroupCommit:
    def __init__(self, spool: Spool, ack: Callable[[int, int], None], on_disk_error: Callable[[], None]) -> None:
        self.spool = spool
        self._ack_one = ack  # (channel generation, highest tag) -> ack everything up to it
        self._on_disk_error = on_disk_error
        self._acks: dict[int, int] = {}  # channel generation -> highest delivery tag to ack
        self._scheduled = False
        self._syncing = False  # an fsync of the spool is running on a thread
        self._again = False

    def delivered(self, generation: int, tag: int) -> None:
        """A delivery to ack once what it brought is on disk."""
        self._acks[generation] = max(self._acks.get(generation, 0), tag)
        self.schedule()

    def forget_acks(self) -> None:
        """The channel closed: its tags are void, the broker redelivers those messages."""
        self._acks.clear()

    def schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._syncing:
            self._again = True
            return
        acks, self._acks = self._acks, {}
        fd = self.spool.begin_flush()
        if fd is None:
            self._ack(acks)
            return
        self._syncing = True
        done = asyncio.get_running_loop().run_in_executor(None, os.fsync, fd)
        done.add_done_callback(lambda f: self._synced(f, acks))

    def _synced(self, fut: asyncio.Future, acks: dict[int, int]) -> None:
        self._syncing = False
        if fut.exception() is not None:  # the disk failed us: nothing is acked, the broker redelivers
            log.error("cannot fsync the task spool: %s", fut.exception())
            self._on_disk_error()
            return
        self.spool.end_flush()
        self._ack(acks)
        if self._again or self.spool.dirty or self._acks:
            self._again = False
            self.schedule()

    def _ack(self, acks: dict[int, int]) -> None:
        for generation, tag in acks.items():
            self._ack_one(generation, tag)

    async def flush_all(self) -> None:
        """At shutdown: let a running fsync finish, then flush and ack what is left."""
        while self._syncing:
            await asyncio.sleep(0.01)
        acks, self._acks = self._acks, {}
        self.spool.flush()
        self._ack(acks)
