"""A Globus Compute tutorial's calls, run as a researcher runs them: a script written for Globus
Compute's SDK, with only its import line changed, in fresh Python processes (a notebook kernel, then
another after it was killed) against two real endpoints: one of parsl's HTEX, as the tutorial's
endpoint is, and one of the MPI engine (GlobusMPIEngine, Globus Compute's name) for MPIFunction.

What it calls: Executor.submit and result, an exception raised where it ran, Client's
register_function, create_batch, batch.add, batch_run and get_batch_result, ShellFunction,
MPIFunction with Executor.resource_specification, and reload_tasks in a new process after the first
was killed with tasks outstanding. (Containers are the endpoint's config, not SDK calls:
tests/uep/test_containers.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pika
import pytest

from tests import mpi_hello

pytestmark = [pytest.mark.broker, pytest.mark.slow]

GLOBUS_IMPORT = "from globus_compute_sdk import Executor, Client, ShellFunction, MPIFunction"

# As the tutorial has it, but for the import line, which the test swaps for gce's.
TUTORIAL = GLOBUS_IMPORT + '''
import json, os, sys

tutorial_endpoint, mpi_endpoint, mpi_program, step = sys.argv[1:5]
out = {}


def hello_world():
    return "Hello World!"


def division_by_zero():
    return 42 / 0


def echo(name):
    return f"Hello {name}!"


def slow_double(x):
    import time
    time.sleep(2)
    return 2 * x


if step == "first":
    with Executor(endpoint_id=tutorial_endpoint) as gce:
        out["hello"] = gce.submit(hello_world).result()
        try:
            gce.submit(division_by_zero).result()
        except ZeroDivisionError as e:
            out["error"] = type(e).__name__
        bf = ShellFunction("echo '{message}'")
        out["shell"] = gce.submit(bf, message="hello from the shell").result().stdout.strip()

    gcc = Client()
    func_uuid = gcc.register_function(echo)
    names = ["Alice", "Bob", "Carol", "Dan"]
    batch = gcc.create_batch()
    for name in names:
        batch.add(function_id=func_uuid, args=[name])
    batch_res = gcc.batch_run(endpoint_id=tutorial_endpoint, batch=batch)
    task_ids = batch_res["tasks"][func_uuid]
    import time
    deadline = time.monotonic() + 120
    while True:
        got = gcc.get_batch_result(task_ids)
        if not any(r["pending"] for r in got.values()):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"the batch is still pending after 120 s: {got}")
        time.sleep(0.1)
    out["batch"] = [got[t]["result"] for t in task_ids]

    with Executor(endpoint_id=mpi_endpoint) as ex:
        ex.resource_specification = {"num_nodes": 1, "ranks_per_node": 2}
        res = ex.submit(MPIFunction(mpi_program)).result()
        out["mpi"] = sorted(res.stdout.splitlines())

    # The kernel dies a moment later with tasks outstanding: their group is all a new one needs.
    # A task submit() has not handed to the broker yet dies with the process, as in any Executor:
    # the kernel here dies once the broker has all four (a second's sleep was not always enough
    # on a loaded machine, and the reload then waited for a task that never left).
    ex = Executor(endpoint_id=tutorial_endpoint)
    futures = [ex.submit(slow_double, i) for i in range(4)]
    out["task_group_id"] = str(ex.task_group_id)
    if not ex._link.wait_published(60):
        raise SystemExit("the broker did not confirm the four tasks within 60 s")
    print(json.dumps(out), flush=True)
    os._exit(0)
else:
    with Executor(endpoint_id=tutorial_endpoint, task_group_id=step) as ex:
        futures = ex.reload_tasks()
        out["reloaded"] = sorted(f.result(timeout=120) for f in futures)
    print(json.dumps(out), flush=True)
'''


def _run(script, user_url: str, *args: str, endpoints=(), timeout: float = 140) -> dict:
    """Run the script; if it hangs, its threads' stacks (faulthandler, on SIGABRT) and the ends of
    ENDPOINTS' logs are the failure."""
    env = {**os.environ, "GCE_BROKER_URL": user_url, "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        out, err = proc.communicate()
        logs = "".join(f"\n--- the end of endpoint {ep.name!r}'s log:\n" + "\n".join(ep.log().splitlines()[-40:])
                       for ep in endpoints)
        pytest.fail(f"the tutorial script hung for {timeout:.0f} s; its stacks:\n{err[-12000:]}\nstdout:\n{out[-2000:]}"
                    + logs)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.timeout(420)  # two runs of at most 140 s each, and two endpoints to start and stop
def test_a_globus_compute_tutorial_runs_with_only_its_import_changed(broker, make_endpoint, tmp_path, monkeypatch):
    for key, value in mpi_hello.ENV.items():  # Open MPI as root: the endpoints' workers inherit it
        monkeypatch.setenv(key, value)
    program = mpi_hello.hello()
    tutorial = make_endpoint(name="tutorial", engine="htex")
    mpi = make_endpoint(name="mpi")
    # One broker identity submits to both, as the tutorial's one Globus identity does: the MPI
    # endpoint's account goes into the tutorial endpoint's vhost, the user may submit to both.
    vhost = pika.URLParameters(tutorial.user_url).virtual_host
    mpi_url, urls = broker.provision(mpi.endpoint_id, users=["alice"], vhost=vhost, also_allowed=[tutorial.endpoint_id])
    assert urls["alice"] == tutorial.user_url
    mpi.set(broker={"url": mpi_url},
            engine={"type": "GlobusMPIEngine", "mpi_launcher": "mpiexec", "max_workers_per_block": 2,
                    "strategy_period": 0.5,
                    "provider": {"type": "LocalProvider", "init_blocks": 1, "min_blocks": 0, "max_blocks": 1}})
    tutorial.start()
    mpi.start()
    script = tmp_path / "tutorial.py"
    assert TUTORIAL.count(GLOBUS_IMPORT) == 1
    script.write_text(TUTORIAL.replace(GLOBUS_IMPORT, "from gce.sdk import Executor, Client, ShellFunction, MPIFunction"))

    first = _run(script, tutorial.user_url, tutorial.endpoint_id, mpi.endpoint_id, program, "first",
                 endpoints=(tutorial, mpi))
    assert first["hello"] == "Hello World!"
    assert first["error"] == "ZeroDivisionError"
    assert first["shell"] == "hello from the shell"
    assert first["batch"] == ["Hello Alice!", "Hello Bob!", "Hello Carol!", "Hello Dan!"]
    assert set(first["mpi"]) == mpi_hello.lines(2)

    # A new kernel, after the first was killed with four tasks outstanding.
    second = _run(script, tutorial.user_url, tutorial.endpoint_id, mpi.endpoint_id, program, first["task_group_id"],
                  endpoints=(tutorial, mpi))
    assert second["reloaded"] == [0, 2, 4, 6]
