"""gce-worker-pool and the interchange command: the options a user endpoint's HTEX gets, parsl
imported without typeguard's instrumentation, and the fork server forked from the pool.

What needs a fresh interpreter (imports, forks) runs in one, never in pytest's own process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

from gce.uep import worker_pool


def run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          check=True, timeout=120).stdout


def test_blocks_on_this_host_start_gce_worker_pool_and_every_interchange_this_python():
    local = worker_pool.htex_options(local_workers=True)
    assert local["launch_cmd"].startswith('"$(command -v gce-worker-pool || command -v process_worker_pool.py)" ')
    assert "--block_id={{block_id}}" in local["launch_cmd"]  # still parsl's template, filled in by HTEX
    assert local["address"] == "127.0.0.1"
    assert local["interchange_launch_cmd"][0] == sys.executable
    assert local["interchange_launch_cmd"][-2:] == ["-m", "gce.uep.interchange"]
    assert worker_pool.htex_options(local_workers=False) == {"interchange_launch_cmd": local["interchange_launch_cmd"]}


def test_a_workers_environment_without_gce_worker_pool_gets_parsls_pool(tmp_path: Path):
    for name in ("process_worker_pool.py", "gce-worker-pool"):
        d = tmp_path / name
        d.mkdir()
        (d / name).write_text("#!/bin/sh\n")
        (d / name).chmod(0o755)
    launch = worker_pool.htex_options(local_workers=True)["launch_cmd"]
    program = launch[:launch.index(')"') + 2]
    for path, expected in ((f"{tmp_path / 'process_worker_pool.py'}", "process_worker_pool.py"),
                           (f"{tmp_path / 'gce-worker-pool'}:{tmp_path / 'process_worker_pool.py'}", "gce-worker-pool")):
        out = subprocess.run(["/bin/bash", "-c", f"echo {program}"], env={"PATH": path}, capture_output=True,
                             text=True, check=True).stdout
        assert out.strip() == str(tmp_path / expected / expected)


def test_parsl_is_imported_without_type_checks_and_typeguard_is_restored_for_user_code():
    out = run_python("""
        import typeguard
        checked = typeguard.typechecked
        from gce.uep.worker_pool import import_parsl
        import_parsl()
        from parsl.executors import HighThroughputExecutor
        HighThroughputExecutor(label=3)  # a TypeCheckError where parsl is imported the usual way
        print(typeguard.typechecked is checked)
    """)
    assert out == "True\n"


def test_the_fork_server_is_forked_from_the_pool_serves_it_and_leaves_with_it():
    out = run_python("""
        import multiprocessing, time
        import psutil
        from multiprocessing import forkserver
        from gce.uep.worker_pool import fork_server, import_parsl
        import_parsl()
        assert fork_server()
        server = forkserver._forkserver._forkserver_pid
        p = multiprocessing.get_context("forkserver").Process(target=time.sleep, args=(1,))
        p.start()
        parent = psutil.Process(p.pid).ppid()
        p.join()
        print(server, parent, p.exitcode, psutil.Process(server).ppid() == psutil.Process().pid)
    """)
    server, parent, code, mine = out.split()
    assert parent == server and code == "0" and mine == "True"
    deadline = time.monotonic() + 10
    while psutil.pid_exists(int(server)) and psutil.Process(int(server)).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the fork server outlived its pool"
        time.sleep(0.1)


def test_with_another_thread_running_the_pool_does_not_fork_a_server():
    out = run_python("""
        import threading, time
        threading.Thread(target=time.sleep, args=(1,), daemon=True).start()
        from gce.uep.worker_pool import fork_server
        print(fork_server())
    """)
    assert out == "False\n"
