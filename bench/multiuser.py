"""Multi-user endpoint benchmarks (issue 3): a root manager, four mapped local users.

The endpoint is the one `gce configure NAME --multi-user` writes, unchanged but for the broker
URL: its example identity mapping sends USER@example.org to the local account USER, and its
template (an HTEX engine on a LocalProvider) is filled with the schema's defaults. Needs root
to create the users (gcebench-1..4) and to run the manager; the users, their processes and
every file are removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

VENV_BIN = Path(sys.executable).parent
NAME = "mubench"
USERS = [f"gcebench-{i}" for i in range(1, 5)]
NAMES = ("mu-cold", "mu-rtt", "mu-idle", "mu-concurrent")


def noop():
    return None


def identity_of(user: str) -> str:
    return f"{user}@example.org"  # the example rule of the configured identity_mapping.json


# A fresh process of the peer's venv: GlobusComputeEngine with its defaults (parsl defaults
# underneath), started, given one no-op task packed as the endpoint packs tasks. It prints the
# wall clock when the result is back; the parent took the wall clock before spawning it.
PEER_GC_COLD = """
import sys, time, uuid
from globus_compute_common import messagepack
from globus_compute_common.messagepack.message_types import Task
from globus_compute_endpoint.engines import GlobusComputeEngine
from globus_compute_endpoint.engines.base import GCFuture
from globus_compute_sdk.serialize import ComputeSerializer

def noop():
    return None

engine = GlobusComputeEngine(address="127.0.0.1")
engine.start(endpoint_id=uuid.uuid4(), run_dir=sys.argv[1])
serde = ComputeSerializer()
task_id = uuid.uuid4()
buffer = serde.pack_buffers([serde.serialize(noop), serde.serialize(()), serde.serialize({})])
fut = GCFuture(task_id)
engine.submit(fut, messagepack.pack(Task(task_id=task_id, task_buffer=buffer)), {})
result = messagepack.unpack(fut.result(timeout=300))
print("RESULT", time.time(), result.is_error, flush=True)
engine.shutdown()
"""


def _processes_of(user: str) -> list:
    import psutil

    uid = pwd.getpwnam(user).pw_uid
    found = []
    for p in psutil.process_iter(["uids", "status"]):
        if p.info["uids"] and p.info["uids"].real == uid and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p)
    return found


def _kill_processes_of(user: str) -> None:
    import psutil

    for p in _processes_of(user):
        with contextlib.suppress(psutil.Error):
            p.kill()


class MultiUser:
    """A root multi-user endpoint NAME on BROKER, its four users and their executors."""

    def __init__(self, broker) -> None:
        self.broker = broker
        self.made: list[str] = []
        self.top = Path(tempfile.mkdtemp(prefix="gce-bench-mu-"))
        self.top.chmod(0o711)  # the users read the template and schema after the privilege drop
        self.home = self.top / "home"
        self.home.mkdir(mode=0o711)
        self.env = dict(os.environ, GCE_HOME=str(self.home), PATH=f"{VENV_BIN}:{os.environ['PATH']}")

    @contextlib.contextmanager
    def _gce_home(self) -> Iterator[None]:
        """GCE_HOME of this endpoint for gce's own functions (the personal one's is set too)."""
        old = os.environ.get("GCE_HOME")
        os.environ["GCE_HOME"] = str(self.home)
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("GCE_HOME", None)
            else:
                os.environ["GCE_HOME"] = old

    def setup(self) -> None:
        for user in USERS:
            subprocess.run(["userdel", "-r", user], capture_output=True)
            subprocess.run(["useradd", "-m", "-K", "UID_MIN=1000", user], check=True)
            self.made.append(user)
        self.gce("configure", NAME, "--multi-user")
        from gce.commands.broker import set_yaml_key
        from gce.config.model import read_endpoint_id
        from gce.config.paths import endpoint_paths

        with self._gce_home():
            self.paths = endpoint_paths(NAME)
            self.endpoint_id = read_endpoint_id(self.paths)
        ep_url, self.urls = self.broker.provision(self.endpoint_id, users=[identity_of(u) for u in USERS])
        set_yaml_key(self.paths.config_file, ("broker", "url"), ep_url)

    def gce(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([str(VENV_BIN / "gce"), *args], env=self.env, capture_output=True, text=True,
                              check=check)

    def start(self) -> None:
        self.gce("start", NAME, "--detach")

    def stop(self) -> None:
        self.gce("stop", NAME, check=False)
        deadline = time.monotonic() + 30
        while any(_processes_of(u) for u in self.made) and time.monotonic() < deadline:
            time.sleep(0.1)

    def restart(self) -> None:
        """A running, settled manager without UEPs: the next task of each user spawns one."""
        self.stop()
        self.start()
        time.sleep(1)

    def manager_pid(self) -> int:
        from gce.daemon import pidfile

        return int(pidfile.read_state(self.paths)["pid"])

    def executor(self, user: str):
        from gce.sdk import Executor

        return Executor(endpoint_id=self.endpoint_id, broker_url=self.urls[identity_of(user)],
                        user_endpoint_config={})

    def close(self) -> None:
        try:
            self.stop()
        finally:
            for user in self.made:
                _kill_processes_of(user)
                subprocess.run(["userdel", "-r", user], capture_output=True)
            shutil.rmtree(self.top, ignore_errors=True)


def _first_results(mu: MultiUser, users: list[str], together: bool) -> float:
    """Seconds from the first submission until every user's first result is back."""
    with contextlib.ExitStack() as stack:
        exs = [stack.enter_context(mu.executor(u)) for u in users]
        t = time.perf_counter()
        if together:
            for fut in [ex.submit(noop) for ex in exs]:
                fut.result(timeout=300)
        else:
            for ex in exs:
                ex.submit(noop).result(timeout=300)
        return time.perf_counter() - t


def peer_gc_cold(run_dir: Path, gc_bin: Path) -> float:
    """Seconds from spawning the peer's process to its first result."""
    run_dir.mkdir(parents=True)
    env = dict(os.environ, PATH=f"{gc_bin}:{os.environ['PATH']}")  # it launches globus-compute-endpoint
    t = time.time()
    proc = subprocess.Popen([str(gc_bin / "python"), "-c", PEER_GC_COLD, str(run_dir)], cwd=run_dir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the interchange or workers, should shutdown leave any
    line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
    if line is None or line.split()[2] != "False":
        raise RuntimeError(f"the peer's cold start failed ({proc.returncode}):\n{out}\n{err[-3000:]}")
    return float(line.split()[1]) - t


def bench_cold(rounds: int, mu: MultiUser, gc_bin: Path) -> tuple[list, list]:
    ours, peer = [], []
    for i in range(rounds):
        mu.restart()
        ours.append(_first_results(mu, USERS[:1], together=True))
        peer.append(peer_gc_cold(mu.top / f"peer-gc-{i}", gc_bin))
    return ours, peer


def bench_concurrent(rounds: int, mu: MultiUser) -> tuple[list, list]:
    together, one_by_one = [], []
    for _ in range(rounds):
        mu.restart()
        together.append(_first_results(mu, USERS, together=True))
        mu.restart()
        one_by_one.append(_first_results(mu, USERS, together=False))
    return together, one_by_one


def bench_rtt(rounds: int, mu: MultiUser, s) -> tuple[list, list]:
    ours, peer = [], []
    with mu.executor(USERS[0]) as ex, s.executor() as personal:
        ex.submit(noop).result(timeout=300)
        personal.submit(noop).result(timeout=60)
        for _ in range(rounds * 20):
            for e, out in ((ex, ours), (personal, peer)):
                t = time.perf_counter()
                e.submit(noop).result(timeout=60)
                out.append(time.perf_counter() - t)
    return ours, peer


def idle_rss(mu: MultiUser, seconds: float = 5.0) -> float:
    """RSS in MiB of the manager with one idle UEP per user, each having run a task."""
    import psutil

    _first_results(mu, USERS, together=True)
    time.sleep(seconds)
    return psutil.Process(mu.manager_pid()).memory_info().rss / 2**20


def run(only: set[str], rounds: int, s, gc_bin: Callable[[], Path], ratio_row, rows: list) -> None:
    """Add the multi-user rows selected in ONLY, next to the personal endpoint S."""
    if not only & set(NAMES):
        return
    if os.geteuid() != 0:
        print(f"skipped {', '.join(n for n in NAMES if n in only)}: they need root, to create the users "
              "gcebench-1..4 and run a multi-user manager", flush=True)
        return
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the users' workers cannot import bench/
    mu = MultiUser(s.broker)
    try:
        mu.setup()
        mu.start()
        if "mu-cold" in only:
            ratio_row("multi-user cold spawn: submit to first result (vs GlobusComputeEngine cold start)", "s",
                      *bench_cold(max(1, rounds), mu, gc_bin().parent), 0.3, False)
        if "mu-concurrent" in only:
            ratio_row("multi-user: 4 users' first results, submitted at once (vs one by one)", "s",
                      *bench_concurrent(max(1, rounds), mu), 0.6, False)
        if "mu-idle" in only:
            rss = idle_rss(mu)
            rows.append(("multi-user manager RSS, 4 idle UEPs", f"{rss:.1f} MiB", "-", "-", "≤ 40 MiB", rss <= 40))
        if "mu-rtt" in only:
            ratio_row("multi-user no-op round trip, UEP running (vs personal endpoint)", "s",
                      *bench_rtt(rounds, mu, s), 1.15, False)
    finally:
        mu.close()
