"""Publisher confirms matched to their publishes, as both broker links use them."""

from __future__ import annotations

from types import SimpleNamespace

from pika.spec import Basic

from gce.transport.confirms import Confirms


def _frame(method):
    return SimpleNamespace(method=method)


def test_acks_one_or_every_one_up_to_a_tag_and_nacks():
    c: Confirms[str] = Confirms()
    for item in ("a", None, "c", "d"):  # publish 2 waits for nothing
        c.published(item)
    assert c.settle(_frame(Basic.Ack(delivery_tag=3, multiple=True))) == (["a", "c"], True)
    assert c.settle(_frame(Basic.Nack(delivery_tag=4, multiple=False))) == (["d"], False)
    assert c.settle(_frame(Basic.Ack(delivery_tag=4, multiple=False))) == ([], True)  # settled already


def test_a_new_channel_numbers_from_one_and_gives_back_what_waited_in_order():
    c: Confirms[str] = Confirms()
    c.published("a")
    c.published("b")
    assert c.new_channel() == ["a", "b"] and c.waiting == {}
    c.published("x")
    assert c.settle(_frame(Basic.Ack(delivery_tag=1, multiple=False))) == (["x"], True)


class _Walked(dict):
    """A dict that counts the walks over it from its start."""

    walks = 0

    def __iter__(self):
        _Walked.walks += 1
        return super().__iter__()


def test_settling_never_walks_the_waiting_publishes_from_the_oldest():
    """A walk over a dict passes every entry deleted since it last resized: settled from the front
    while a burst of publishes waits, a walk per confirm made a million tasks quadratic."""
    c: Confirms[int] = Confirms()
    c.waiting = _Walked()
    for i in range(1, 10_001):
        c.published(i if i % 7 else None)  # some publishes wait for nothing
    settled: list[int] = []
    for tag in range(50, 10_001, 50):
        got, acked = c.settle(_frame(Basic.Ack(delivery_tag=tag, multiple=True)))
        settled += got
        if tag % 1000 == 0:  # single acks, of the next one and of one further on
            settled += c.settle(_frame(Basic.Ack(delivery_tag=tag + 1, multiple=False)))[0]
            settled += c.settle(_frame(Basic.Nack(delivery_tag=tag + 40, multiple=False)))[0]
    assert sorted(settled) == [i for i in range(1, 10_001) if i % 7] and not c.waiting
    assert _Walked.walks == 0
