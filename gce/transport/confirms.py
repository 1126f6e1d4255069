"""Publisher confirms on one channel, for both broker links (the endpoint's and the SDK's).

In confirm mode RabbitMQ numbers the publishes of a channel 1, 2, ... and confirms them by that
number: one, or every one up to it (``multiple``), as an ack (the broker has the message) or a
nack. A new channel numbers from 1 again, so what still waits on the old one is taken out.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pika.spec import Basic

T = TypeVar("T")

# A channel that keeps nacking may hold a stale quorum queue leader (seen on RabbitMQ 3.10, after
# the leader's node went down): after this many nacks in a row of the same messages, both links
# publish them again on a new connection, to the next node of a cluster's URL.
NACKS_BEFORE_NEW_CONNECTION = 3


class Confirms(Generic[T]):
    def __init__(self) -> None:
        self._seq = 0
        self._first = 1  # no publish numbered below this waits any more
        self.waiting: dict[int, list[T]] = {}  # by publish number: in order

    def published(self, item: T | None = None) -> None:
        """One more publish on this channel; ITEM is what waits for its confirm (None: nothing)."""
        self._seq += 1
        if item is not None:
            self.waiting[self._seq] = [item]

    def published_all(self, items: list[T]) -> None:
        """One more publish, a bundle (gce.transport.bundles): ITEMS all wait for its confirm."""
        self._seq += 1
        if items:
            self.waiting[self._seq] = list(items)

    def settle(self, frame: Any) -> tuple[list[T], bool]:
        """What the confirm FRAME settles, and whether the broker took it (ack) or not (nack)."""
        m = frame.method
        last = min(int(m.delivery_tag), self._seq)
        # Looked up by number, never by walking the dict from its start: a walk passes every entry
        # deleted since the dict last resized, which a burst of a million publishes makes quadratic.
        tags = range(self._first, last + 1) if m.multiple else (m.delivery_tag,)
        settled = [item for t in tags if t in self.waiting for item in self.waiting.pop(t)]
        if m.multiple:
            self._first = max(self._first, last + 1)
        while self._first <= self._seq and self._first not in self.waiting:  # each number passed once
            self._first += 1
        return settled, isinstance(m, Basic.Ack)

    def new_channel(self) -> list[T]:
        """The channel is gone: numbering starts again; what waited on it comes back, in order."""
        self._seq, self._first = 0, 1
        left, self.waiting = [item for items in self.waiting.values() for item in items], {}
        return left
