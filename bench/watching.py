"""Benchmarks of watching endpoints (`gce monitor`, the client's snapshot), beside bench.py's endpoint.

monitor-once: `gce monitor --once` from launch to its printed snapshot of every endpoint on the
  host, against what a script without it runs for the same data: `gce status NAME` once per
  endpoint, one after the other (the loop support staff write today). Rounds alternate the two.
watching: an endpoint with 200 workers whose ring holds 10,000 task events, given a trickle of new
  tasks all along, is polled by a watcher process (the client's snapshot(since) every second, as
  the monitor refreshes): the manager's CPU while watched minus while not (windows alternate),
  one refresh's time, and the watcher's RSS.
monitor-live: the real `gce monitor NAME -r 1` in a pseudo-terminal (80x24) watching that endpoint:
  its own CPU and RSS.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import statistics
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Iterator

VENV_BIN = Path(sys.executable).parent
NAMES = ("monitor-once", "watching", "monitor-live")
EXTRA_ENDPOINTS = ("watch-a", "watch-b", "watch-c")  # with bench.py's "bench": four endpoints on the host
WATCHED = "watch-a"
RING = 10_000
WORKERS = 200
TRICKLE = 20  # new tasks a second while watching, so each refresh has events to bring
WINDOW = 10.0  # seconds of each CPU window

# The watcher: polls the endpoint's snapshot every second for SECONDS, then prints its timings.
WATCHER = """
import json, sys, time
from gce.config.paths import endpoint_paths
from gce.daemon.client import EndpointClient

client = EndpointClient(endpoint_paths(sys.argv[1]))
t = time.perf_counter()
snap = client.snapshot(since=0)
first, held = time.perf_counter() - t, len(snap.events)
cursor, refreshes, events = snap.cursor, [], 0
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    t = time.perf_counter()
    snap = client.snapshot(since=cursor)
    refreshes.append(time.perf_counter() - t)
    cursor, events = snap.cursor, events + len(snap.events)
    time.sleep(max(0.0, 1.0 - (time.perf_counter() - t)))
print(json.dumps({"first": first, "held": held, "refreshes": refreshes, "events": events}), flush=True)
sys.stdin.read()  # stay alive (and measurable) until the parent closes stdin
"""


def noop():
    return None


def _cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


class Endpoints:
    """Three more endpoints beside bench.py's "bench": thread pools of 200 workers, started."""

    def __init__(self, s) -> None:
        from gce.commands.broker import set_yaml_key
        from gce.config.model import read_endpoint_id
        from gce.config.paths import endpoint_paths

        self.s = s
        self.user_urls: dict[str, str] = {}
        self.ids: dict[str, str] = {}
        for name in EXTRA_ENDPOINTS:
            s.gce("configure", name, "--engine", "thread", "--max-workers", str(WORKERS))
            paths = endpoint_paths(name)
            self.ids[name] = read_endpoint_id(paths)
            ep_url, users = s.broker.provision(self.ids[name], users=[f"watcher-{name}"])
            self.user_urls[name] = users[f"watcher-{name}"]
            set_yaml_key(paths.config_file, ("broker", "url"), ep_url)
            s.gce("start", name, "--detach")

    def names(self) -> list[str]:
        return ["bench", *EXTRA_ENDPOINTS]

    def executor(self, name: str):
        from gce.sdk import Executor

        return Executor(endpoint_id=self.ids[name], broker_url=self.user_urls[name])

    def manager_pid(self, name: str) -> int:
        from gce.config.paths import endpoint_paths
        from gce.daemon import pidfile

        return int(pidfile.read_state(endpoint_paths(name))["pid"])

    def close(self) -> None:
        for name in EXTRA_ENDPOINTS:
            self.s.gce("stop", name, check=False)


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, capture_output=True, check=True)
    return time.perf_counter() - t


def bench_monitor_once(rounds: int, s, eps: Endpoints) -> tuple[list, list]:
    """`gce monitor --once` of every endpoint vs `gce status NAME` for each of them, alternately."""
    gce = str(VENV_BIN / "gce")
    ours, peer = [], []
    # The first run of each fills the page cache, and shows they bring the same endpoints, running.
    shown = subprocess.run([gce, "monitor", "--once"], env=s.env, capture_output=True, text=True, check=True).stdout
    for name in eps.names():
        said = subprocess.run([gce, "status", name], env=s.env, capture_output=True, text=True, check=True).stdout
        assert said.startswith(f"endpoint {name} is running"), said
        assert any(ln.split()[:2] == [name, "running"] for ln in shown.splitlines()), shown
    for _ in range(rounds * 2):
        ours.append(_timed([gce, "monitor", "--once"], s.env))
        t = time.perf_counter()
        for name in eps.names():
            subprocess.run([gce, "status", name], env=s.env, capture_output=True, check=True)
        peer.append(time.perf_counter() - t)
    return ours, peer


def fill_ring(eps: Endpoints) -> None:
    """Run tasks on the watched endpoint until its ring of events is full (three events a task)."""
    import concurrent.futures as cf

    with eps.executor(WATCHED) as ex:
        for _ in range(RING // 3 // 500 + 1):
            futures = [ex.submit(noop) for _ in range(500)]
            cf.wait(futures, timeout=300)
            assert all(f.done() and f.exception() is None for f in futures), "the tasks filling the ring failed"


@contextlib.contextmanager
def trickle(eps: Endpoints) -> Iterator[None]:
    """New tasks on the watched endpoint, TRICKLE a second, while the block runs."""
    done = threading.Event()

    def submit() -> None:
        with eps.executor(WATCHED) as ex:
            while not done.is_set():
                t = time.monotonic()
                futures = [ex.submit(noop) for _ in range(TRICKLE)]
                for f in futures:
                    f.result(timeout=60)
                done.wait(max(0.0, 1.0 - (time.monotonic() - t)))

    thread = threading.Thread(target=submit, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=60)


def _manager_cpu(pid: int, seconds: float) -> float:
    c0, t0 = _cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (_cpu_seconds(pid) - c0) / (time.monotonic() - t0) * 100


def bench_watching(rounds: int, s, eps: Endpoints) -> dict:
    """The manager's CPU while watched and not (alternate windows), the watcher's refreshes and RSS."""
    import psutil

    fill_ring(eps)
    pid = eps.manager_pid(WATCHED)
    idle, watched, refreshes, rss, firsts, held = [], [], [], [], [], 0
    with trickle(eps):
        time.sleep(2)
        for _ in range(max(1, rounds // 2)):
            idle.append(_manager_cpu(pid, WINDOW))
            watcher = subprocess.Popen([sys.executable, "-c", WATCHER, WATCHED, str(WINDOW + 1)], env=s.env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            try:
                time.sleep(1)  # its start-up and first full snapshot are not what watching costs
                watched.append(_manager_cpu(pid, WINDOW))
                report = json.loads(watcher.stdout.readline())
                rss.append(psutil.Process(watcher.pid).memory_info().rss / 2**20)
            finally:
                watcher.stdin.close()
                watcher.wait(timeout=30)
            refreshes += report["refreshes"]
            firsts.append(report["first"])
            held = report["held"]
    return {"extra_cpu": statistics.median(watched) - statistics.median(idle),
            "refresh": statistics.median(refreshes), "refresh_max": max(refreshes),
            "first": statistics.median(firsts), "held": held, "rss": max(rss)}


def _drain(fd: int, done: threading.Event) -> None:
    """Read what the monitor draws, as a terminal would (a full pty would block it)."""
    while not done.is_set():
        try:
            if not os.read(fd, 65536):
                return
        except OSError:
            return


def bench_monitor_live(s, eps: Endpoints, seconds: float = 20.0) -> tuple[float, float]:
    """`gce monitor WATCHED -r 1` in an 80x24 pseudo-terminal: its CPU (% of a core) and RSS (MiB)."""
    import psutil

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = dict(s.env, TERM="xterm-256color")
    proc = subprocess.Popen([str(VENV_BIN / "gce"), "monitor", WATCHED, "-r", "1"], stdin=slave, stdout=slave,
                            stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    done = threading.Event()
    reader = threading.Thread(target=_drain, args=(master, done), daemon=True)
    reader.start()
    try:
        with trickle(eps):
            time.sleep(3)  # start-up and the first frame are the other row's
            p = psutil.Process(proc.pid)
            c0, t0 = p.cpu_times(), time.monotonic()
            rss = 0.0
            while time.monotonic() - t0 < seconds:
                time.sleep(1)
                rss = max(rss, p.memory_info().rss / 2**20)
            c1 = p.cpu_times()
            cpu = (c1.user + c1.system - c0.user - c0.system) / (time.monotonic() - t0) * 100
    finally:
        os.write(master, b"q")
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        done.set()
        os.close(master)
    return cpu, rss


def run(only: set[str], rounds: int, s, ratio_row, rows: list) -> None:
    """Add the watching rows selected in ONLY, beside bench.py's running endpoint S."""
    if not only & set(NAMES):
        return
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import bench/
    eps = Endpoints(s)
    try:
        if "monitor-once" in only:
            ours, peer = bench_monitor_once(rounds, s, eps)
            ratio_row(f"gce monitor --once, {len(eps.names())} endpoints (vs gce status looped over them)", "s",
                      ours, peer, 0.5, False)
            wall = statistics.median(ours)
            rows.append(("gce monitor --once: launch to printed snapshot", f"{wall * 1000:,.1f} ms", "-", "-",
                         "≤ 1 s", wall <= 1.0))
        if "watching" in only:
            w = bench_watching(rounds, s, eps)
            rows.append((f"watched every 1 s ({w['held']:,} events held): manager's extra CPU",
                         f"{w['extra_cpu']:.2f} % of a core", "-", "-", "≤ 1 %", w["extra_cpu"] <= 1.0))
            rows.append(("watched: one refresh, snapshot(since) (median)", f"{w['refresh'] * 1000:,.1f} ms", "-", "-",
                         "≤ 100 ms", w["refresh"] <= 0.1))
            print(f"watching: slowest refresh {w['refresh_max'] * 1000:.1f} ms; first snapshot of all "
                  f"{w['held']:,} events {w['first'] * 1000:.1f} ms", flush=True)
            rows.append(("watched: the watcher's RSS", f"{w['rss']:.1f} MiB", "-", "-", "≤ 90 MiB", w["rss"] <= 90))
        if "monitor-live" in only:
            cpu, rss = bench_monitor_live(s, eps)
            rows.append(("gce monitor -r 1 in a terminal: its CPU", f"{cpu:.2f} % of a core", "-", "-", "≤ 3 %",
                         cpu <= 3.0))
            rows.append(("gce monitor -r 1 in a terminal: its RSS", f"{rss:.1f} MiB", "-", "-", "≤ 90 MiB", rss <= 90))
    finally:
        eps.close()
