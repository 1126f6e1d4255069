from __future__ import annotations

import os

import pytest

from gce.transport import frames


def test_frames_decode_across_arbitrary_chunk_boundaries():
    msgs = [(frames.TASK, {"i": i}, os.urandom(i * 97)) for i in range(30)]
    stream = b"".join(frames.encode(*m) for m in msgs)
    dec = frames.Decoder()
    got = []
    for i in range(0, len(stream), 13):
        got.extend(dec.feed(stream[i : i + 13]))
    assert got == msgs


def test_a_corrupt_length_is_an_error_not_a_hang():
    with pytest.raises(frames.FrameError):
        list(frames.Decoder().feed(b"\x00\x00\x00\x01T"))


def _frame(kind: bytes, header_bytes: bytes, body: bytes = b"") -> bytes:
    import struct

    return struct.pack("!IcI", 5 + len(header_bytes) + len(body), kind, len(header_bytes)) + header_bytes + body


@pytest.mark.parametrize("header, why", [
    (b"[" * 30_000 + b"]" * 30_000, "not acceptable JSON: it nests more than"),
    (b"[1, 2]", "not a JSON object"),
    (b"\xff\xfe", "not acceptable JSON"),
    (b"{nope", "not acceptable JSON"),
    (b'"text"', "not a JSON object"),
])
def test_a_hostile_header_is_a_frame_error_and_nothing_else(header, why):
    with pytest.raises(frames.FrameError, match=why):
        list(frames.Decoder().feed(_frame(frames.RESULT, header)))


def test_a_frame_over_the_channels_bound_is_refused_before_it_is_buffered():
    dec = frames.Decoder(max_frame=1 << 20)
    with pytest.raises(frames.FrameError, match="bad frame length"):
        list(dec.feed(b"\x7f\xff\xff\xffR"))  # announces 2 GiB; nothing more need arrive
    with pytest.raises(frames.FrameError, match="bad header length"):
        list(frames.Decoder().feed(_frame(frames.RESULT, b"{}")[:5] + b"\x00\x20\x00\x00"))


def test_a_task_header_holding_a_config_at_the_depth_limit_still_decodes():
    config: dict = {}
    c = config
    for _ in range(31):
        c["a"] = {}
        c = c["a"]
    msg = (frames.TASK, {"task": {"user_endpoint_config": config}}, b"x")
    assert list(frames.Decoder().feed(frames.encode(*msg))) == [msg]


def test_cancel_block_is_a_kind_of_its_own_and_round_trips():
    assert frames.CANCEL_BLOCK not in (frames.TASK, frames.RESULT, frames.STATUS, frames.READY, frames.FATAL,
                                       frames.STOP)
    data = frames.encode(frames.CANCEL_BLOCK, {"block_id": "0"})
    assert list(frames.Decoder().feed(data)) == [(frames.CANCEL_BLOCK, {"block_id": "0"}, b"")]
