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
