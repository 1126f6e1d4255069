"""A million no-op tasks from one Executor, beside bench.py: does gce stay linear?

On bench.py's endpoint "bench" (gce configure's default: a process pool, 2 workers) and its private broker: first 10,000
no-op tasks, then 1,000,000, each submitted at once from one Executor and counted as they complete
(a done callback; the bench keeps no future, so the SDK holds only what is outstanding). The row
is the million's throughput against the 10,000's of the same run (target: at least 0.9x), with
its wall time, the peak RSS of the SDK (this process), the manager, the user endpoint (the process
that holds the tasks sent to it; its engine's processes apart) and the broker (beam.smp), sampled
with psutil, and the SDK's RSS per outstanding task (its growth over the start, at the moment most
tasks were outstanding; target: at most 1 KiB).

It takes about 10 minutes at ~1.6k tasks/s: bench.py runs it only when named
(.venv/bin/python bench/bench.py --only million); alone: .venv/bin/python bench/million.py [--tasks N]
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

NAMES = ("million",)
TASKS = 1_000_000
SMALL = 10_000
SAMPLE_SECONDS = 0.5


def noop():
    return None


class Peaks:
    """Peak RSS of named processes, sampled every SAMPLE_SECONDS in a thread; and the SDK's RSS
    over its baseline per outstanding task, at the sample with most outstanding."""

    def __init__(self, pids: dict[str, int], outstanding) -> None:
        import psutil

        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.outstanding = outstanding  # () -> tasks submitted and not completed
        self.peak = {name: 0 for name in pids}
        self.base = self.procs["SDK"].memory_info().rss
        self.most = 0
        self.per_task = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss sampler")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            for name, proc in self.procs.items():
                try:
                    rss = proc.memory_info().rss
                except Exception:  # gone: keep what was seen
                    continue
                self.peak[name] = max(self.peak[name], rss)
                if name == "SDK":
                    n = self.outstanding()
                    if n > self.most:
                        self.most, self.per_task = n, (rss - self.base) / n

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Counted:
    """Counts the tasks that complete and those that failed; ``wait(n)`` until N completed."""

    def __init__(self) -> None:
        self.done = self.failed = 0
        self._cond = threading.Condition()

    def __call__(self, fut) -> None:
        with self._cond:
            self.done += 1
            self.failed += fut.exception() is not None
            self._cond.notify_all()

    def wait(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.done >= n, timeout)


def submit_all(ex, n: int, counted: Counted) -> float:
    """Submit N no-ops at once; the seconds until the last one completed."""
    start = time.perf_counter()
    for _ in range(n):
        ex.submit(noop).add_done_callback(counted)
    if not counted.wait(n, timeout=max(600.0, n / 100)):
        raise RuntimeError(f"only {counted.done:,} of {n:,} tasks completed in time")
    return time.perf_counter() - start


def pids_of(s) -> dict[str, int]:
    import os

    from gce.daemon import pidfile
    from gce.daemon.client import EndpointClient

    ueps = EndpointClient(s.paths).status().user_endpoints
    beam = int((s.broker.dir / "beam.pid").read_text().split()[0])
    return {"SDK": os.getpid(), "manager": int(pidfile.read_state(s.paths)["pid"]),
            "user endpoint": int(ueps[0].pid or 0), "broker": beam}


def run(only: set[str], s, rows: list, tasks: int = TASKS) -> None:
    """Add the million's rows when ONLY names them, on bench.py's setup S."""
    if not only & set(NAMES):
        return
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import bench/
    with s.executor() as ex:
        ex.submit(noop).result(timeout=120)  # the engine's workers are up
        small = Counted()
        small_rate = SMALL / submit_all(ex, SMALL, small)
        counted = Counted()
        submitted = [0]

        def outstanding() -> int:
            return submitted[0] - counted.done

        peaks = Peaks(pids_of(s), outstanding)
        start = time.perf_counter()
        try:
            for _ in range(tasks):
                ex.submit(noop).add_done_callback(counted)
                submitted[0] += 1
            submitted_in = time.perf_counter() - start
            if not counted.wait(tasks, timeout=max(600.0, tasks / 100)):
                raise RuntimeError(f"only {counted.done:,} of {tasks:,} tasks completed in time")
            wall = time.perf_counter() - start
        finally:
            peaks.stop()
    rate = tasks / wall
    ratio = rate / small_rate
    failed = small.failed + counted.failed
    print(f"million: {tasks:,} submitted in {submitted_in:.0f} s, all answered in {wall:.0f} s "
          f"({failed} failed); at most {peaks.most:,} outstanding", flush=True)
    mib = {name: rss / 2**20 for name, rss in peaks.peak.items()}
    rows.append((f"{tasks:,} no-op tasks from one Executor (vs {SMALL:,}, same run)", f"{rate:,.0f} tasks/s",
                 f"{small_rate:,.0f} tasks/s", f"{ratio:.2f}x", "≥ 0.9x", ratio >= 0.9 and not failed))
    rows.append((f"{tasks:,} no-op tasks: wall time", f"{wall:,.0f} s", "-", "-", "-", True))
    for name, value in mib.items():
        rows.append((f"{tasks:,} no-op tasks: peak RSS of the {name}", f"{value:,.0f} MiB", "-", "-", "-", True))
    rows.append((f"{tasks:,} no-op tasks: SDK RSS per outstanding task", f"{peaks.per_task:,.0f} B", "-", "-",
                 "≤ 1024 B", 0 < peaks.per_task <= 1024))


def main() -> int:
    """This row alone, on a private broker as bench.py sets it up."""
    import argparse
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench  # noqa: E402 - bench/ is the script's directory

    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=TASKS)
    args = ap.parse_args()
    rows: list[bench.Row] = []
    with tempfile.TemporaryDirectory(prefix="gce-bench-million-") as tmp:
        s = bench.Setup(Path(tmp))
        try:
            s.start()
            run(set(NAMES), s, rows, args.tasks)
        finally:
            s.close()
    return bench.print_rows(rows, f"{args.tasks:,} tasks", f"{SMALL:,} tasks")


if __name__ == "__main__":
    sys.exit(main())
