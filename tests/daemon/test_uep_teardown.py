"""When a user endpoint dies, its whole process tree and its batch jobs go with it (DESIGN.md).

A real personal endpoint, and a root multi-user endpoint with a real account, each with a parsl
HighThroughputEngine on LocalProvider: the user endpoint is killed with SIGKILL, which gives it
no chance to shut its engine down. The interchange, the block's shells and its worker pool must
still be gone within seconds (they are re-parented to init, out of the dead process's tree), and
so must a daemon a task started in a session of its own; the endpoint must restart its user
endpoint and serve again, and stopping it must then leave nothing. (Batch jobs: tests/slurm.)
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from gce.daemon import control
from tests.daemon.multiuser import MultiUserEndpoint, local_accounts, processes_of
from tests.endpoint import processes_under, wait_until

pytestmark = pytest.mark.broker

GONE_WITHIN = 10.0  # seconds; the engine's heartbeat threshold is 10 s, its walltime unbounded


def square(x):
    return x * x


def worker_pid():
    import os

    return os.getpid()


def leave_a_daemon():
    """Start a process in a session of its own (setsid): out of the UEP's tree and session."""
    import subprocess

    out = subprocess.run(["setsid", "-f", "/bin/sh", "-c", "sleep 600 </dev/null >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


def user_endpoint(ep) -> dict:
    [uep] = control.request(ep.paths, "status")["user_endpoints"]
    return uep


def endpoint_processes(home, manager: int) -> list[psutil.Process]:
    """Every process of this endpoint but its manager (psutil pins each one's start time).

    Not the user endpoint's children: LocalProvider starts a block with ``bash -c '... &'``,
    so its worker pool is re-parented to init from the start, even while the UEP lives.
    """
    return [psutil.Process(int(line.split()[0])) for line in processes_under(home)
            if int(line.split()[0]) != manager]


def alive(procs: list[psutil.Process]) -> list[str]:
    left = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
        except psutil.Error:
            continue
    return left


def started_before(home, moment: float, manager: int) -> list[str]:
    """Processes of this endpoint (by their environment, cwd or command line) older than MOMENT,
    other than its manager: what a dead user endpoint would have left behind."""
    left = []
    for line in processes_under(home):
        pid = int(line.split()[0])
        try:
            if pid != manager and psutil.Process(pid).create_time() < moment:
                left.append(line)
        except psutil.Error:
            continue
    return left


def test_kill_9_of_a_user_endpoint_takes_its_engine_down_and_it_serves_again(make_endpoint):
    ep = make_endpoint(engine="htex")
    ep.start()
    with ep.executor() as ex:
        worker = ex.submit(worker_pid).result(timeout=60)
        daemon = ex.submit(leave_a_daemon).result(timeout=60)
        uep = user_endpoint(ep)
        tree = endpoint_processes(ep.home, ep.manager_pid())
        cmdlines = " ".join(" ".join(p.cmdline()) for p in tree)
        assert "interchange" in cmdlines and "worker-pool" in cmdlines, cmdlines
        assert {worker, uep["pid"], daemon} <= {p.pid for p in tree}
        assert os.getsid(daemon) != uep["pid"]
        killed_at = time.time()
        os.kill(uep["pid"], signal.SIGKILL)
        deadline = time.monotonic() + GONE_WITHIN
        while alive(tree) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(tree), f"the dead user endpoint's engine outlived it by {GONE_WITHIN:g} s: {alive(tree)}"
        assert not started_before(ep.home, killed_at, ep.manager_pid())
        # The manager starts a new user endpoint, which serves.
        assert ex.submit(square, 7).result(timeout=90) == 49
    new = user_endpoint(ep)
    assert new["pid"] != uep["pid"] and new["state"] == "running"
    assert "killed by signal SIGKILL" in ep.log()
    assert ep.stop() is True
    wait_until(lambda: not processes_under(ep.home), timeout=10)


HTEX_TEMPLATE = """engine:
  type: HighThroughputEngine
  max_workers_per_node: {{ workers }}
  strategy_period: 0.5
  provider: {type: LocalProvider, init_blocks: 1, min_blocks: 0, max_blocks: 1}
"""
USER = "gcetest-td-a"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create users and drop privileges")
def test_kill_9_of_a_multi_user_endpoints_user_endpoint_takes_its_engine_down(broker):
    with local_accounts((USER,), users={"alice@uni.edu": USER}) as accounts:
        uid = accounts["alice@uni.edu"].pw_uid
        ep = MultiUserEndpoint(broker, mapping={"alice@uni.edu": USER}, template=HTEX_TEMPLATE,
                               identities=("alice@uni.edu",))
        try:
            with ep.executor("alice@uni.edu") as ex:
                daemon = ex.submit(leave_a_daemon).result(timeout=120)
                [uep] = ep.user_endpoints()
                tree = [p for p in psutil.process_iter(["uids", "status"])
                        if p.info["uids"] and p.info["uids"].real == uid and p.info["status"] != psutil.STATUS_ZOMBIE]
                cmdlines = " ".join(alive(tree))
                assert "interchange" in cmdlines and "worker-pool" in cmdlines, cmdlines
                assert {uep["pid"], daemon} <= {p.pid for p in tree}
                os.kill(uep["pid"], signal.SIGKILL)
                deadline = time.monotonic() + GONE_WITHIN
                while alive(tree) and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert not alive(tree), f"the dead user endpoint's processes outlived it: {alive(tree)}"
                assert ex.submit(square, 6).result(timeout=120) == 36
            [new] = ep.user_endpoints()
            assert new["pid"] != uep["pid"] and new["state"] == "running"
        finally:
            ep.close()
        wait_until(lambda: not processes_of([USER]), timeout=10)


@pytest.mark.parametrize(("engine", "status_type", "batch"), [
    ({"type": "ProcessPoolEngine"}, None, False),
    ({"type": "HighThroughputEngine"}, None, False),
    ({"type": "MPIEngine", "provider": {"type": "LocalProvider"}}, None, False),
    ({"type": "GlobusMPIEngine"}, None, False),
    ({"type": "MPIEngine", "provider": {"type": "SlurmProvider"}}, None, True),
    ({"type": "HighThroughputEngine", "provider": {"type": "SlurmProvider"}}, None, True),
    ({}, "MPIEngine", False),  # a multi-user endpoint's UEP renders its own: its last status says which
    ({}, None, True),  # nothing known: its jobs are looked for
])
def test_only_an_engine_that_may_have_left_blocks_in_a_batch_system_has_them_cancelled(engine, status_type, batch):
    from types import SimpleNamespace

    from gce.daemon.teardown import _may_have_batch_jobs

    uep = SimpleNamespace(conf=SimpleNamespace(engine=engine), engine_status={"type": status_type} if status_type else {})
    assert _may_have_batch_jobs(uep) is batch  # type: ignore[arg-type]
