"""Group commit of the task spool: a task is acked only once it is on disk.

A flush comes COMMIT_WINDOW after the first record that waits for one, and the records that
came meanwhile share its fsync; the fsync runs on a thread so the loop keeps dispatching tasks
and publishing results meanwhile; what arrives during it goes into the next batch. The window
delays no task (a task is dispatched at once; only its ack waits, and the broker holds up to the
prefetch count unacked), and it spares the disk: a short task's T, R and D records
share one fsync instead of three, each with a hand-off to a thread and back (one per record
before, the manager's largest cost per task; on an NFS home directory, a round trip to the
server each). Acks are per channel generation: tags of a channel that
closed are void (the broker requeued those messages), so a reconnect forgets them.

A spool that cannot be written (full, read-only, failing disk) is a state, not a crash
(DESIGN.md, "Delivery guarantees"): the deliveries not yet spooled go back to the broker,
the link stops consuming, the flush is retried with a capped, jittered backoff, and the
link consumes again once a flush succeeds. Tasks already in memory keep running: their
records wait in the spool's buffer, and a redelivered copy is dropped as a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from gce.backoff import backoff
from gce.daemon.spool import Spool, SpoolUnwritable

log = logging.getLogger(__name__)
COMMIT_WINDOW = 0.005  # seconds from the first record waiting for a flush to that flush
RETRY_FIRST = 0.5  # seconds before the first retry of an unwritable spool
RETRY_CAP = 5.0  # and at most between two: how soon the endpoint resumes once there is room


class Link(Protocol):
    def ack(self, generation: int, tag: int, multiple: bool = False) -> None: ...
    def nack(self, generation: int, tag: int, multiple: bool = False) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...


class GroupCommit:
    def __init__(self, spool: Spool, link: Link) -> None:
        self.spool = spool
        self.link = link
        self.error = ""  # why the spool cannot be written now; "" while it can
        self.error_since: float | None = None  # time.time() it became unwritable
        self._acks: dict[int, int] = {}  # channel generation -> highest delivery tag to ack
        self._scheduled: asyncio.TimerHandle | None = None  # the next flush
        self._syncing = False  # an fsync of the spool is running on a thread
        self._again = False
        self._failures = 0
        self._retry: asyncio.TimerHandle | None = None

    def delivered(self, generation: int, tag: int) -> None:
        """A delivery to ack once what it brought is on disk."""
        self._acks[generation] = max(self._acks.get(generation, 0), tag)
        self.schedule()

    def forget_acks(self) -> None:
        """The channel closed: its tags are void, the broker redelivers those messages."""
        self._acks.clear()

    def check_disk(self) -> None:
        """At start, before the link consumes: on a spool that cannot be written, start paused."""
        try:
            self.spool.probe()
        except SpoolUnwritable as e:
            self._failed(e, {})

    def schedule(self) -> None:
        if self._scheduled is None and not self.error:  # while unwritable, the retry timer flushes
            self._scheduled = asyncio.get_running_loop().call_later(COMMIT_WINDOW, self._flush)

    def _flush(self) -> None:
        if self._scheduled is not None:  # a retry flushes before the window ends: one flush, not two
            self._scheduled.cancel()
            self._scheduled = None
        if self._syncing:
            self._again = True
            return
        acks, self._acks = self._acks, {}
        try:
            if not self.spool.begin_flush():
                self._ack(acks)
                self._writable()
                return
        except SpoolUnwritable as e:
            self._failed(e, acks)
            return
        self._syncing = True
        done = asyncio.get_running_loop().run_in_executor(None, self.spool.sync)
        done.add_done_callback(lambda f: self._synced(f, acks))

    def _synced(self, fut: asyncio.Future, acks: dict[int, int]) -> None:
        self._syncing = False
        if fut.cancelled():
            return  # the loop is closing
        error = fut.exception()
        if error is not None:  # the disk failed us: nothing of the batch is acked
            self.spool.sync_failed()
            self._failed(error, acks)
            return
        self.spool.end_flush()
        self._ack(acks)
        self._writable()
        if self._again or self.spool.dirty or self._acks:
            self._again = False
            self.schedule()

    def _ack(self, acks: dict[int, int]) -> None:
        for generation, tag in acks.items():
            self.link.ack(generation, tag, multiple=True)

    def _failed(self, error: BaseException, acks: dict[int, int]) -> None:
        """Nothing delivered since the last good flush is spooled: back to the broker with it all."""
        for generation, tag in self._acks.items():
            acks[generation] = max(acks.get(generation, 0), tag)
        self._acks.clear()
        for generation, tag in acks.items():
            self.link.nack(generation, tag, multiple=True)
        reason = str(error)
        if reason != self.error:  # log once per state change, not per retry
            log.error("cannot write the task spool: %s; not taking tasks until it can be written "
                      "(they wait on the broker); retrying", reason)
            if not self.error:
                self.error_since = time.time()
            self.error = reason
            self.link.pause()
        self._failures += 1
        delay = backoff(self._failures - 1, RETRY_FIRST, RETRY_CAP)
        log.debug("spool write failed %d time(s); next try in %.1f s", self._failures, delay)
        if self._retry is not None:
            self._retry.cancel()
        self._retry = asyncio.get_running_loop().call_later(delay, self._try_again)

    def _try_again(self) -> None:
        self._retry = None
        if self._syncing:
            return  # its outcome decides
        if self.spool.dirty:
            self._flush()
            return
        try:
            self.spool.probe()
        except SpoolUnwritable as e:
            self._failed(e, {})
            return
        self._writable()

    def _writable(self) -> None:
        if not self.error:
            return
        log.warning("the task spool can be written again after %.0f s: taking tasks again",
                    time.time() - (self.error_since or time.time()))
        self.error, self.error_since, self._failures = "", None, 0
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self.link.resume()

    async def flush_all(self) -> None:
        """At shutdown: let a running fsync finish, then flush and ack what is left."""
        while self._syncing:
            await asyncio.sleep(0.01)
        if self._scheduled is not None:  # this flush is the last
            self._scheduled.cancel()
            self._scheduled = None
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        acks, self._acks = self._acks, {}
        try:
            self.spool.flush()
        except SpoolUnwritable as e:  # the spool's close() says what that leaves undone
            log.debug("last flush failed: %s", e)
            return  # the channel closes with them unacked: the broker requeues them
        self._ack(acks)
