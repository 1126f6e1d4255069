"""Batches and reattaching, beside bench.py, on its endpoint "bench" and its private broker.

batch: 10,000 no-op tasks submitted with Client.batch_run (one channel, confirms awaited once)
against the same 10,000 through Client.run one by one (a confirm round trip each), alternated in
one run; timed until the broker has confirmed every task, then every result is read back with
get_batch_result (untimed) so the Client's queue is left empty. Target: the batch at most 0.5x.
Also printed: how the Executor already batches, i.e. how many tasks each wake-up of its link
publishes back to back when 10,000 are submitted in a loop.

Alone: .venv/bin/python bench/bench.py --only batch
"""

from __future__ import annotations

import statistics
import sys
import time

NAMES = ("batch",)
TASKS = 10_000


def noop():
    return None


def run(only: set[str], rounds: int, s, add_row, rows) -> None:
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import bench/
    if "batch" in only:
        _batch(max(1, rounds // 2), s, add_row, rows)


def _drain_results(client, task_ids: list[str], timeout: float = 600) -> None:
    left, deadline = list(task_ids), time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        got = client.get_batch_result(left)
        left = [t for t, info in got.items() if info["pending"]]
        if left:
            time.sleep(0.5)
    assert not left, f"{len(left)} result(s) never came"


def _batch(rounds: int, s, add_row, rows) -> None:
    from gce.sdk import Client

    ours: list[float] = []
    peer: list[float] = []
    with Client(s.user_url) as client:
        fid = client.register_function(noop)
        for _ in range(rounds):
            batch = client.create_batch()
            for _ in range(TASKS):
                batch.add(fid)
            t = time.perf_counter()
            r = client.batch_run(s.endpoint_id, batch)
            ours.append(time.perf_counter() - t)
            _drain_results(client, r["tasks"][fid])
            t = time.perf_counter()
            ids = [client.run(endpoint_id=s.endpoint_id, function_id=fid) for _ in range(TASKS)]
            peer.append(time.perf_counter() - t)
            _drain_results(client, ids)
    add_row("10,000 no-op tasks submitted: Client.batch_run (vs Client.run one by one)", "s", ours, peer, 0.5, False)
    print(f"batch: batch_run {statistics.median(ours):.2f} s, run one by one {statistics.median(peer):.2f} s, "
          f"ratio {statistics.median(ours) / statistics.median(peer):.3f}x", flush=True)
    sizes = _executor_batches(s)
    rows.append(("Executor: tasks per publish wake-up, 10,000 submits", f"{statistics.median(sizes):,.0f} median",
                 f"{len(sizes):,} wake-ups", "-", "-", True))
    print(f"batch: the Executor published 10,000 submits in {len(sizes):,} wake-ups of its link: median "
          f"{statistics.median(sizes):,.0f}, largest {max(sizes):,} tasks each", flush=True)


def _executor_batches(s) -> list[int]:
    """How many tasks each wake-up of an Executor's link publishes, for TASKS submits in a loop."""
    import concurrent.futures as cf

    sizes: list[int] = []
    with s.executor() as ex:
        link = ex._link
        drain = link._drain

        def counted() -> None:  # the link's thread calls it through the attribute: count, then publish
            sizes.append(len(link._outgoing))
            drain()

        link._drain = counted
        futs = [ex.submit(noop) for _ in range(TASKS)]
        cf.wait(futs, timeout=600)
    return [n for n in sizes if n] or [0]
