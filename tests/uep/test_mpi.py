"""The MPI engine on a block of this host (LocalProvider, mpi_launcher mpiexec, Debian's Open MPI):
a real user endpoint runs an MPIFunction as the ranks its task asks for, refuses what it could
never run, and other engines refuse MPI counts with a sentence naming the engine that takes them."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from gce.transport import frames
from tests import mpi_hello
from tests.rendezvous import meet, wait_for
from tests.uep.uep_process import UepProcess

pytestmark = [pytest.mark.slow]

HELLO = "def hello(program):\n    from gce.sdk.mpi import MPIFunction\n    return MPIFunction(program)()\n"
RANKS = "def ranks():\n    import os\n    return os.environ.get('PARSL_NUM_RANKS')\n"
MEET = inspect.getsource(wait_for) + inspect.getsource(meet)  # run as source, as the other tasks here are


LOCAL_MPI = {"type": "MPIEngine", "mpi_launcher": "mpiexec", "max_workers_per_block": 2, "strategy_period": 0.5,
             "provider": {"type": "LocalProvider", "init_blocks": 1, "min_blocks": 0, "max_blocks": 1}}


def _answers(uep: UepProcess, *task_ids: str, timeout: float = 60) -> dict[str, tuple[dict, object]]:
    """Each task's (result header, value): answers come in any order, and wait_for drops the others."""
    import time

    import cloudpickle

    from gce.transport.payload import unpack_result

    got: dict[str, tuple[dict, object]] = {}
    deadline = time.monotonic() + timeout
    while len(got) < len(task_ids):
        _kind, header, body = uep.wait_for(lambda k, h: k == frames.RESULT and h["task_id"] in task_ids,
                                           max(0.1, deadline - time.monotonic()))
        value = cloudpickle.loads(unpack_result(body).value) if header["status"] == "success" else None
        got[header["task_id"]] = (header, value)
    return got


def test_an_mpi_function_comes_back_with_every_rank_s_line(tmp_path: Path) -> None:
    program = mpi_hello.hello()
    uep = UepProcess(LOCAL_MPI, tmp_path, env=mpi_hello.ENV)
    try:
        three = uep.submit(HELLO, "hello", program, resource_specification={"num_ranks": 3})
        two = uep.submit(HELLO, "hello", program, resource_specification={"num_nodes": 1, "ranks_per_node": 2})
        plain = uep.submit(RANKS, "ranks")  # no spec: one node, one rank
        too_many = uep.submit(RANKS, "ranks", resource_specification={"num_nodes": 2})
        priority = uep.submit(RANKS, "ranks", resource_specification={"num_ranks": 2, "priority": 1})
        marks = [str(tmp_path / f"meeting-{i}") for i in range(2)]
        meetings = [uep.submit(MEET, "meet", marks[i], marks[1 - i], resource_specification={"num_ranks": 1})
                    for i in range(2)]
        answers = _answers(uep, three, two, plain, too_many, priority, *meetings, timeout=120)
        for task, size in ((three, 3), (two, 2)):
            header, result = answers[task]
            assert header["status"] == "success", header
            assert result.returncode == 0 and set(result.stdout.splitlines()) == mpi_hello.lines(size), result
        assert answers[plain][1] == "1"
        assert [answers[n][1] for n in meetings] == [True, True]  # max_workers_per_block 2: both ran at once here
        header = answers[too_many][0]
        assert header["error_code"] == "BAD_MESSAGE"
        assert "the task asks for 2 nodes, but a block of this endpoint has 1 (engine.provider.nodes_per_block)" \
            in header["error_message"], header
        header = answers[priority][0]
        assert "an MPIEngine does not take priority (it takes num_nodes, ranks_per_node, num_ranks" \
            in header["error_message"], header
    finally:
        uep.close()


def test_an_engine_without_mpi_refuses_mpi_counts_naming_the_engine_that_takes_them(tmp_path: Path) -> None:
    uep = UepProcess({"type": "ProcessPoolEngine", "max_workers": 1}, tmp_path)
    try:
        refused = uep.submit(RANKS, "ranks", resource_specification={"num_nodes": 1, "num_ranks": 2})
        fine = uep.submit(RANKS, "ranks", resource_specification={"walltime": 30, "priority": 2})
        answers = _answers(uep, refused, fine)
        header = answers[refused][0]
        assert header["error_code"] == "BAD_MESSAGE"
        assert header["error_message"] == (
            "resource_specification: this endpoint's ProcessPoolEngine does not take num_nodes, num_ranks (it "
            "takes walltime, priority); MPI ranks (num_nodes, ranks_per_node, num_ranks) need an endpoint whose "
            "engine is an MPIEngine")
        assert answers[fine][0]["status"] == "success"
    finally:
        uep.close()


def test_the_engine_gce_configure_writes_for_mpi_runs_an_mpi_function(tmp_path: Path) -> None:
    import yaml

    from gce.config import writer

    ep = writer.NewEndpoint(name="mpi", broker_url="amqp://u:p@127.0.0.1/v", engine="mpi", max_workers=2)
    engine = yaml.safe_load(writer.render(ep, tmp_path / "config.yaml"))["engine"]
    assert (engine["type"], engine["mpi_launcher"], engine["provider"]["type"]) == ("MPIEngine", "mpiexec",
                                                                                   "LocalProvider")
    uep = UepProcess(engine, tmp_path, env=mpi_hello.ENV)
    try:
        task = uep.submit(HELLO, "hello", mpi_hello.hello(), resource_specification={"num_ranks": 2})
        header, result = _answers(uep, task)[task]
        assert header["status"] == "success", header
        assert result.returncode == 0 and set(result.stdout.splitlines()) == mpi_hello.lines(2), result
    finally:
        uep.close()
