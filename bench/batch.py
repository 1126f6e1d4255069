"""Batches and reattaching, beside bench.py, on its endpoint "bench" and its private broker.

batch: 10,000 no-op tasks submitted with Client.batch_run (one channel, confirms awaited once)
against the same 10,000 through Client.run one by one (a confirm round trip each), alternated in
one run; timed until the broker has confirmed every task, then every result is read back with
get_batch_result (untimed) so the Client's queue is left empty. Target: the batch at most 0.5x.
Also printed: how the Executor already batches, i.e. how many tasks each wake-up of its link
publishes back to back when 10,000 are submitted in a loop.

reload: with the endpoint stopped, a process submits 10,000 no-op tasks from an Executor of a
task group and is killed (SIGKILL) once the broker has them all; the endpoint starts again, and a new process creates an Executor of that group and
calls reload_tasks(). Printed: the time from Executor() to the 10,000 futures, then to every
result, and that process's RSS before the Executor, after reload_tasks and at the end. No peer
here (Globus Compute's reload asks its web service); target: reload_tasks under 1 s, at most
1 KiB of RSS per reloaded future.

Alone: .venv/bin/python bench/bench.py --only batch,reload
"""

from __future__ import annotations

import statistics
import sys
import time

NAMES = ("batch", "reload")
TASKS = 10_000


def noop():
    return None


def run(only: set[str], rounds: int, s, add_row, rows) -> None:
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import bench/
    if "batch" in only:
        _batch(max(1, rounds // 2), s, add_row, rows)
    if "reload" in only:
        _reload(s, rows)


def _drain_results(client, task_ids: list[str], timeout: float = 600) -> None:
    left, deadline = list(task_ids), time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        got = client.get_batch_result(left)
        left = [t for t, info in got.items() if info["pending"]]
        if left:
            time.sleep(0.5)
    assert not left, f"{len(left)} result(s) never came"


def _wait_for_results(client, count: int, timeout: float = 600) -> None:
    """Until COUNT results wait in the Client's queue (untimed: the endpoint's pace, not the SDK's)."""
    deadline = time.monotonic() + timeout
    ready = lambda ch: ch.queue_declare(client.result_queue, passive=True).method.message_count  # noqa: E731
    while client._call(ready) < count and time.monotonic() < deadline:
        time.sleep(0.2)


def _batch(rounds: int, s, add_row, rows) -> None:
    from gce.sdk import Client

    ours: list[float] = []
    peer: list[float] = []
    reads: list[float] = []
    with Client(s.user_url) as client:
        fid = client.register_function(noop)
        for _ in range(rounds):
            batch = client.create_batch()
            for _ in range(TASKS):
                batch.add(fid)
            t = time.perf_counter()
            r = client.batch_run(s.endpoint_id, batch)
            ours.append(time.perf_counter() - t)
            _wait_for_results(client, TASKS)
            t = time.perf_counter()
            got = client.get_batch_result(r["tasks"][fid])
            reads.append(time.perf_counter() - t)
            assert not any(info["pending"] for info in got.values())
            t = time.perf_counter()
            ids = [client.run(endpoint_id=s.endpoint_id, function_id=fid) for _ in range(TASKS)]
            peer.append(time.perf_counter() - t)
            _drain_results(client, ids)
    add_row("10,000 no-op tasks submitted: Client.batch_run (vs Client.run one by one)", "s", ours, peer, 0.5, False)
    print(f"batch: batch_run {statistics.median(ours):.2f} s, run one by one {statistics.median(peer):.2f} s, "
          f"ratio {statistics.median(ours) / statistics.median(peer):.3f}x", flush=True)
    rows.append(("get_batch_result of 10,000 results waiting in the queue", f"{statistics.median(reads) * 1000:,.0f} ms",
                 "-", "-", "-", True))
    print(f"batch: get_batch_result took {statistics.median(reads):.2f} s for {TASKS:,} results", flush=True)
    sizes, published = _executor_batches(s)
    rows.append(("Executor: 10,000 submits confirmed by the broker", f"{published * 1000:,.1f} ms",
                 f"{len(sizes):,} wake-ups", "-", "-", True))
    print(f"batch: the Executor had 10,000 submits confirmed in {published:.2f} s, published in {len(sizes):,} "
          f"wake-ups of its link: median {statistics.median(sizes):,.0f}, mean {TASKS / len(sizes):,.1f}, "
          f"largest {max(sizes):,} tasks each", flush=True)


def _executor_batches(s) -> tuple[list[int], float]:
    """How many tasks each wake-up of an Executor's link publishes, for TASKS submits in a loop, and
    the seconds until the broker confirmed them all."""
    import concurrent.futures as cf

    sizes: list[int] = []
    with s.executor() as ex:
        link = ex._link
        drain = link._drain

        def counted() -> None:  # the link's thread calls it through the attribute: count, then publish
            sizes.append(len(link._outgoing))
            drain()

        link._drain = counted
        t = time.perf_counter()
        futs = [ex.submit(noop) for _ in range(TASKS)]
        link.wait_published(600)
        published = time.perf_counter() - t
        cf.wait(futs, timeout=600)
    return [n for n in sizes if n] or [0], published


SUBMIT_AND_DIE = """
import json, sys
from gce.sdk import Executor

def noop():
    return None

ex = Executor(endpoint_id=sys.argv[1], broker_url=sys.argv[2], task_group_id=sys.argv[3])
futs = [ex.submit(noop) for _ in range(int(sys.argv[4]))]
assert ex._link.wait_published(600)
print("published", flush=True)
sys.stdin.read()  # killed here
"""

RELOAD = """
import json, sys, time, psutil
from concurrent.futures import wait
from gce.sdk import Executor

me = psutil.Process()
before = me.memory_info().rss
t0 = time.perf_counter()
ex = Executor(endpoint_id=sys.argv[1], broker_url=sys.argv[2], task_group_id=sys.argv[3])
futs = ex.reload_tasks()
t1 = time.perf_counter()
reloaded = me.memory_info().rss
done, not_done = wait(futs, timeout=600)
t2 = time.perf_counter()
end = me.memory_info().rss
ex.shutdown()
print(json.dumps({"futures": len(futs), "not_done": len(not_done), "reload": t1 - t0, "results": t2 - t0,
                  "rss_before": before, "rss_reloaded": reloaded, "rss_end": end}), flush=True)
"""


def _reload(s, rows) -> None:
    import json
    import subprocess
    import uuid

    group = str(uuid.uuid4())
    args = [s.endpoint_id, s.user_url, group]
    s.stop()  # the tasks wait on the broker: none is answered before the submitter dies
    child = subprocess.Popen([sys.executable, "-c", SUBMIT_AND_DIE, *args, str(TASKS)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=s.env)
    try:
        assert child.stdout.readline().strip() == "published"
    finally:
        child.kill()  # SIGKILL: it never reads a result
        child.wait()
        s.start()
    out = subprocess.run([sys.executable, "-c", RELOAD, *args], capture_output=True, text=True, env=s.env,
                         check=True, timeout=900)
    r = json.loads(out.stdout)
    assert r["futures"] == TASKS and r["not_done"] == 0, r
    per = (r["rss_reloaded"] - r["rss_before"]) / TASKS
    rows.append(("reload_tasks of 10,000 tasks of a killed Executor", f"{r['reload'] * 1000:,.0f} ms", "-", "-",
                 "≤ 1000 ms", r["reload"] <= 1.0))
    rows.append(("  RSS per reloaded future (Executor included)", f"{per:,.0f} B", "-", "-", "≤ 1024 B", per <= 1024))
    print(f"reload: {TASKS:,} futures in {r['reload']:.3f} s, every result by {r['results']:.1f} s; RSS "
          f"{r['rss_before'] / 2**20:.1f} MiB before, {r['rss_reloaded'] / 2**20:.1f} after reload_tasks, "
          f"{r['rss_end'] / 2**20:.1f} at the end", flush=True)
