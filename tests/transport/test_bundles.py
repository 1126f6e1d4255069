"""Several results in one message (gce.transport.bundles): what is written reads back, in
order; a bundle that is cut short or garbled gives what could be read and says why; splitting
stays under the bounds."""

from __future__ import annotations

import json
import struct

from gce.transport import bundles
from gce.transport.message import ResultHeaders, failure


def _results(n: int, size: int = 10) -> list[tuple[dict, bytes]]:
    return [(ResultHeaders(f"t{i}", "ep", "success", timings={"started": 1.5}).amqp_headers(), bytes([i % 256]) * size)
            for i in range(n)]


def test_what_is_encoded_decodes_the_same_in_order():
    results = _results(5) + [(failure("bad", "ep", "USER_EXCEPTION", "ZeroDivisionError: ü\n").amqp_headers(), b"")]
    decoded, why = bundles.decode(bundles.RESULTS, bundles.encode(bundles.RESULTS, results))
    assert why == ""
    assert decoded == results
    rh = ResultHeaders.from_amqp(None, decoded[-1][0])
    assert (rh.task_id, rh.status, rh.error_code, rh.error_message) == ("bad", "failed", "USER_EXCEPTION",
                                                                         "ZeroDivisionError: ü\n")
    assert ResultHeaders.from_amqp(None, decoded[0][0]).timings == {"started": 1.5}


def test_a_bundle_cut_short_gives_the_whole_results_before_the_cut():
    data = bundles.encode(bundles.RESULTS, _results(3, size=100))
    for cut in (len(data) - 1, len(data) - 100, len(data) - 150):
        decoded, why = bundles.decode(bundles.RESULTS, data[:cut])
        assert why == "it ends inside entry 3"
        assert decoded == _results(2, size=100)


def test_garbage_is_refused_with_the_reason():
    assert bundles.decode(bundles.RESULTS, b"not a bundle") == ([], "it does not start as a gce bundle of this kind")
    good = bundles.encode(bundles.RESULTS, _results(1))
    bad_json = bundles.RESULTS + struct.pack("!I", 3) + b"{x}" + struct.pack("!I", 0)
    decoded, why = bundles.decode(bundles.RESULTS, good + bad_json[len(bundles.RESULTS):])
    assert decoded == _results(1) and why.startswith("entry 2's headers are not JSON")
    def one(headers: bytes) -> tuple[list, str]:
        return bundles.decode(bundles.RESULTS, bundles.RESULTS + struct.pack("!I", len(headers)) + headers
                              + struct.pack("!I", 0))

    nested = b"[" * 100_000 + b"]" * 100_000  # refused before it is parsed: no RecursionError
    assert one(nested) == ([], "entry 1's headers are not JSON (it nests more than 1 levels deep (the limit is 1))")
    assert one(json.dumps({"task-id": {"a": "b"}}).encode())[1].startswith("entry 1's headers are not JSON")
    for not_text in (b'{"task-id": true}', b'{"task-id": null}', b'["t1"]', b'"t1"'):
        assert one(not_text) == ([], "entry 1's headers are not an object of text and numbers"), not_text
    assert one(b'{"task-id": "\xff"}')[1].startswith("entry 1's headers are not JSON")  # not UTF-8
    huge = bundles.RESULTS + struct.pack("!I", 2**31) + b"{}"
    assert bundles.decode(bundles.RESULTS, huge) == ([], "entry 1's headers are 2,147,483,648 bytes long")


def test_runs_stay_under_the_count_and_the_bytes():
    small = [(f"t{i}", {}, b"x") for i in range(bundles.MAX_ITEMS * 2 + 1)]
    parts = bundles.split(small, lambda item: len(item[2]))
    assert [len(p) for p in parts] == [bundles.MAX_ITEMS, bundles.MAX_ITEMS, 1]
    assert [item for p in parts for item in p] == small  # in order, nothing lost
    big = [(f"b{i}", {}, b"y" * bundles.SMALL) for i in range(40)]
    parts = bundles.split(big, lambda item: len(item[2]))
    assert all(sum(len(b) for _, _, b in p) <= bundles.MAX_BYTES for p in parts)
    assert sum(len(p) for p in parts) == 40 and len(parts) > 1
