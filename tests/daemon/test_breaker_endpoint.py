"""A real personal endpoint whose blocks keep failing (a HighThroughputEngine whose LocalProvider
blocks run a worker_init that exits 1 until a file exists): its tasks are answered BLOCKS_FAILING,
gce status, gce list and the diagnostic say so, the log says it once, and `gce resume` or a change
of config.yaml's engine section makes it run tasks again."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gce.cli import app
from gce.commands.diagnostic import checks
from gce.daemon.client import EndpointClient
from gce.sdk import TaskFailed
from tests.endpoint import wait_until


def failing_engine(flag: Path) -> dict:
    return {"type": "HighThroughputEngine", "max_workers_per_node": 1, "strategy_period": 0.3,
            "address": "127.0.0.1", "block_failure_limit": 2, "block_grace_period": 5, "scheduler_poll_period": 1,
            "provider": {"type": "LocalProvider", "init_blocks": 1, "min_blocks": 0, "max_blocks": 1,
                         "worker_init": f"echo no module named numpi >&2; test -e {flag} || exit 1"}}


def gce(*args: str):
    return CliRunner().invoke(app, list(args))


def add(a, b):
    return a + b


def leaves_a_mark(path):
    open(path, "w").close()
    return path


def _blocks_failing(ep, fn=add, *args) -> None:
    """Submit a task and see it answered BLOCKS_FAILING, naming the block's exit code and output."""
    with ep.executor() as ex:
        with pytest.raises(TaskFailed) as failed:
            ex.submit(fn, *(args or (1, 2))).result(timeout=60)
    assert failed.value.code == "BLOCKS_FAILING"
    assert "no module named numpi" in str(failed.value) and "exit code 1" in str(failed.value)
    # At once: whoever got that answer and asks finds out why, not "running" for a status period.
    assert gce("status", ep.name).exit_code == 150


def test_failing_blocks_show_everywhere_and_gce_resume_runs_tasks_again(make_endpoint, tmp_path):
    flag = tmp_path / "fixed"
    ep = make_endpoint(name="bf", engine="thread")
    ep.set(engine=failing_engine(flag))
    ep.start()
    mark = tmp_path / "ran"
    _blocks_failing(ep, leaves_a_mark, str(mark))  # given to parsl, then answered: it must never run

    status = gce("status", "bf")
    assert status.stdout.startswith("endpoint bf is degraded: blocks failing: ")
    row = next(line for line in status.stdout.splitlines() if line.startswith("default "))
    assert row.split()[2:4] == ["blocks", "failing"]
    assert "  last block 1" in status.stdout and "exit code 1" in status.stdout
    assert "    no module named numpi" in status.stdout
    listed = gce("list")
    assert listed.stdout.splitlines()[1].split()[2] == "degraded"
    assert "bf: degraded: blocks failing: " in listed.stdout

    ctx = checks.Context(ep.paths)
    ctx.live = EndpointClient(ep.paths).liveness()
    control, blocks = checks.control(ctx), checks.blocks(ctx)
    assert control.status == "PASS", control  # the manager is well: the blocks check says what is wrong
    assert (blocks.status, blocks.hint.endswith("then: gce resume bf")) == ("FAIL", True), blocks
    assert "user endpoint default: " in blocks.reason

    flag.touch()
    resumed = gce("resume", "bf")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.startswith("resumed user endpoint default of bf (its blocks had failed: ")
    wait_until(lambda: gce("status", "bf").exit_code == 0, timeout=15, interval=0.3)
    with ep.executor() as ex:
        assert ex.submit(add, 2, 3).result(timeout=60) == 5
        assert ex.submit(add, 3, 3).result(timeout=60) == 6  # the worker has taken what it was given
    assert not mark.exists(), "a task answered BLOCKS_FAILING ran after gce resume"
    nothing = gce("resume", "bf")
    assert (nothing.exit_code, nothing.stdout) == (0, "nothing to resume: no user endpoint of bf has failing blocks\n")
    log = ep.log()
    assert log.count("user endpoint default: blocks failing, it submits no more") == 1
    assert log.count("user endpoint default: blocks no longer failing") == 1


def test_a_change_of_the_engine_section_restarts_the_failing_user_endpoint_from_it(make_endpoint, tmp_path):
    ep = make_endpoint(name="bfc", engine="thread")
    ep.set(engine=failing_engine(tmp_path / "never"))
    ep.start()
    _blocks_failing(ep)
    with ep.executor() as ex:  # while the config stays, it stays failing
        with pytest.raises(TaskFailed) as again:
            ex.submit(add, 1, 1).result(timeout=30)
        assert again.value.code == "BLOCKS_FAILING"
        fixed = failing_engine(tmp_path / "never")
        fixed["provider"]["worker_init"] = "echo fixed"
        ep.set(engine=fixed)
        assert ex.submit(add, 3, 4).result(timeout=90) == 7  # routed to it: it restarts with the new engine
    assert ep.log().count("user endpoint default: its config changed while its blocks were failing") == 1
    assert gce("status", "bfc").exit_code == 0


def test_gce_resume_after_a_change_of_the_engine_section_starts_from_the_new_one(make_endpoint, tmp_path):
    ep = make_endpoint(name="bfr", engine="thread")
    ep.set(engine=failing_engine(tmp_path / "never"))
    ep.start()
    _blocks_failing(ep)
    fixed = failing_engine(tmp_path / "never")
    fixed["provider"]["worker_init"] = "echo fixed"
    ep.set(engine=fixed)
    assert gce("resume", "bfr").exit_code == 0  # before any task could notice the change
    with ep.executor() as ex:
        assert ex.submit(add, 3, 4).result(timeout=90) == 7
