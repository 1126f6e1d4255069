"""Publisher confirms on one channel, for both broker links (the endpoint's and the SDK's).

In confirm mode RabbitMQ numbers the publishes of a channel 1, 2, ... and confirms them by that
number: one, or every one up to it (``multiple``), as an ack (the broker has the message) or a
nack. A new channel numbers from 1 again, so what still waits on the old one is taken out.
"""

from __future__ import annotations

from itertools import takewhile
from typing import Any, Generic, TypeVar

from pika.spec import Basic

T = TypeVar("T")


class Confirms(Generic[T]):
    def __init__(self) -> None:
        self._seq = 0
        self.waiting: dict[int, T] = {}  # by publish number: in order

    def published(self, item: T | None = None) -> None:
        """One more publish on this channel; ITEM is what waits for its confirm (None: nothing)."""
        self._seq += 1
        if item is not None:
            self.waiting[self._seq] = item

    def settle(self, frame: Any) -> tuple[list[T], bool]:
        """What the confirm FRAME settles, and whether the broker took it (ack) or not (nack)."""
        m = frame.method
        tags = list(takewhile(lambda t: t <= m.delivery_tag, self.waiting)) if m.multiple else [m.delivery_tag]
        return [self.waiting.pop(t) for t in tags if t in self.waiting], isinstance(m, Basic.Ack)

    def new_channel(self) -> list[T]:
        """The channel is gone: numbering starts again; what waited on it comes back, in order."""
        self._seq = 0
        left, self.waiting = list(self.waiting.values()), {}
        return left
