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
