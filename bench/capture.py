"""Benchmarks of output capture (a task's stdout and stderr sent back with its result), beside bench.py.

Two endpoints alike in all but limits.max_output_bytes (HTEX, local block, 2 workers, as bench.py's
htex-rtt row's): one keeps the default 64 KiB of each stream ("on"), the other 0 ("off"). Their no-op
throughput and no-op round trip are measured side by side in the same run, the order of the two
alternating from round to round; halfway the endpoints swap roles (restarted with each other's
setting), since two identical endpoints on one busy host differ by a few per cent by themselves.
The ratio on/off is the row (target: at least 0.95x).

capture-throughput: 10,000 no-op tasks, submitted at once, in tasks/s.
capture-rtt: one no-op task at a time, submit to result.

bench.py runs these rows with its throughput and rtt rows (or with --only capture-throughput,capture-rtt);
alone: .venv/bin/python bench/capture.py [--rounds N]
"""

from __future__ import annotations

import statistics
import sys
import time

NAMES = ("capture-throughput", "capture-rtt")
SELECTED_BY = {"throughput", "rtt", *NAMES}  # bench.py's own rows of the same figures bring these
ENDPOINTS = ("capture-a", "capture-b")
OUTPUT = {"on": 64 * 1024, "off": 0}
WORKERS = 2


def noop():
    return None


def says_hello():
    print("hello")
    return None


class Endpoints:
    """The two endpoints, configured, provisioned on bench.py's broker and started; ``role`` says
    which one is "on" and which "off"."""

    def __init__(self, s) -> None:
        from gce.config.model import read_endpoint_id
        from gce.config.paths import endpoint_paths

        self.s = s
        self.ids: dict[str, str] = {}
        self.user_urls: dict[str, str] = {}
        self.role = dict(zip(("on", "off"), ENDPOINTS))
        for name in ENDPOINTS:
            s.gce("configure", name, "--engine", "htex", "--max-workers", str(WORKERS))
            self.ids[name] = read_endpoint_id(endpoint_paths(name))
            ep_url, users = s.broker.provision(self.ids[name], users=[f"bencher-{name}"])
            self.user_urls[name] = users[f"bencher-{name}"]
            self._write_config(name, broker_url=ep_url)
        self.start()

    def _write_config(self, name: str, broker_url: str | None = None) -> None:
        import yaml

        from gce.config.paths import endpoint_paths

        paths = endpoint_paths(name)
        config = yaml.safe_load(paths.config_file.read_text())
        if broker_url is not None:
            config["broker"] = dict(config.get("broker") or {}, url=broker_url)
        output = OUTPUT["on" if self.role["on"] == name else "off"]
        config["limits"] = dict(config.get("limits") or {}, max_output_bytes=output)
        paths.config_file.write_text(yaml.safe_dump(config))
        paths.config_file.chmod(0o600)  # it holds the endpoint's broker password

    def start(self) -> None:
        for name in ENDPOINTS:
            self.s.gce("start", name, "--detach")
        self.check()

    def swap(self) -> None:
        """Restart both with each other's setting."""
        self.close()
        self.role = {"on": self.role["off"], "off": self.role["on"]}
        for name in ENDPOINTS:
            self._write_config(name)
        self.start()

    def executor(self, role: str):
        from gce.sdk import Executor

        name = self.role[role]
        return Executor(endpoint_id=self.ids[name], broker_url=self.user_urls[name])

    def check(self) -> None:
        """Both answer, and capture is on where it should be and off where not."""
        for role in OUTPUT:
            with self.executor(role) as ex:
                fut = ex.submit(says_hello)
                fut.result(timeout=180)
                got = fut.task_output().stdout
                assert got == ("hello\n" if role == "on" else ""), f"{role}: task_output().stdout is {got!r}"

    def close(self) -> None:
        for name in ENDPOINTS:
            self.s.gce("stop", name, check=False)


def _orders(rounds: int) -> list[tuple[str, str]]:
    return [("on", "off") if i % 2 == 0 else ("off", "on") for i in range(rounds)]


def bench_throughput(rounds: int, eps: Endpoints, n: int = 10_000) -> dict[str, list[float]]:
    import concurrent.futures as cf

    rates: dict[str, list[float]] = {role: [] for role in OUTPUT}
    for half in range(2):
        if half:
            eps.swap()
        for order in _orders(rounds):
            for role in order:
                with eps.executor(role) as ex:
                    t = time.perf_counter()
                    futs = [ex.submit(noop) for _ in range(n)]
                    cf.wait(futs, timeout=600)
                    assert all(f.done() and f.exception() is None for f in futs), f"{role}: some no-op tasks failed"
                    rates[role].append(n / (time.perf_counter() - t))
    return rates


def bench_rtt(rounds: int, eps: Endpoints) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {role: [] for role in OUTPUT}
    for half in range(2):
        if half:
            eps.swap()
        executors = {role: eps.executor(role) for role in OUTPUT}
        try:
            for ex in executors.values():
                ex.submit(noop).result(timeout=60)
            for order in _orders(rounds * 20):
                for role in order:
                    t = time.perf_counter()
                    executors[role].submit(noop).result(timeout=60)
                    times[role].append(time.perf_counter() - t)
        finally:
            for ex in executors.values():
                ex.shutdown()
    return times


def run(only: set[str], rounds: int, s, ratio_row, rows: list) -> None:
    """Add the capture rows (ratio capture on / off) when ONLY selects them, beside bench.py's setup S."""
    if not only & SELECTED_BY:
        return
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import bench/
    eps = Endpoints(s)
    try:
        if only & {"throughput", "capture-throughput"}:
            rates = bench_throughput(max(1, rounds // 2), eps)
            ratio_row("10,000 no-op tasks throughput, output capture on (vs off)", "tasks/s",
                      rates["on"], rates["off"], 0.95, True)
            # Rounds run one after the other, on and off alternately: on a busy machine the ratio of
            # each round's pair drifts less than the ratio of the medians.
            paired = statistics.median(a / b for a, b in zip(rates["on"], rates["off"]))
            print(f"capture-throughput: on {[round(r) for r in rates['on']]} tasks/s, "
                  f"off {[round(r) for r in rates['off']]} tasks/s; median of the rounds' ratios "
                  f"{paired:.3f}x", flush=True)
        if only & {"rtt", "capture-rtt"}:
            times = bench_rtt(rounds, eps)
            # a round trip is better when shorter: on/off at most 1/0.95 is on's rate at least 0.95x off's
            ratio_row("no-op round trip, output capture on (vs off)", "s", times["on"], times["off"],
                      round(1 / 0.95, 3), False)
            paired = statistics.median(a / b for a, b in zip(times["on"], times["off"]))
            print(f"capture-rtt: on p90 {statistics.quantiles(times['on'], n=10)[-1] * 1000:.1f} ms, "
                  f"off p90 {statistics.quantiles(times['off'], n=10)[-1] * 1000:.1f} ms; median of the "
                  f"pairs' ratios {paired:.3f}x", flush=True)
    finally:
        eps.close()


def main() -> int:
    """These rows alone, on a private broker as bench.py sets it up."""
    import argparse
    import functools
    import tempfile
    from pathlib import Path

    import bench  # noqa: E402 - bench/ is the script's directory

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default=",".join(NAMES))
    args = ap.parse_args()
    rows: list[bench.Row] = []
    add_row = functools.partial(bench.ratio_row, rows, digits=3)

    with tempfile.TemporaryDirectory(prefix="gce-bench-capture-") as tmp:
        s = bench.Setup(Path(tmp))
        try:
            run(set(args.only.split(",")), args.rounds, s, add_row, rows)
        finally:
            s.close()
    return bench.print_rows(rows, "capture on", "capture off")


if __name__ == "__main__":
    sys.exit(main())
