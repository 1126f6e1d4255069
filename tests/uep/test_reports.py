"""A real user endpoint tells its manager its versions, its nodes and its blocks in STATUS frames.

The engines are real (a thread pool, parsl HTEX with LocalProvider blocks); the test plays the
manager on the channel. A task held on a gate keeps a worker busy until the status is read.
"""

from __future__ import annotations

import inspect
import os
import platform
import time
from pathlib import Path
from typing import Iterator

import parsl
import pytest

import gce
from gce.transport import frames
from tests.rendezvous import wait_for
from tests.uep.uep_process import UepProcess

SLEEP = "import time\ndef nap(s):\n    time.sleep(s)\n    return s\n"
# Runs until the file GATE exists (at most LIMIT seconds); sent as source.
HOLD = inspect.getsource(wait_for) + "def hold(gate, limit):\n    return wait_for(gate, limit)\n"
HTEX = {"type": "HighThroughputEngine", "max_workers_per_node": 1, "strategy_period": 0.5,
        "provider": {"type": "LocalProvider", "init_blocks": 1, "min_blocks": 0, "max_blocks": 1}}
VERSIONS = {"python": platform.python_version(), "parsl": parsl.__version__, "gce": gce.__version__}


@pytest.fixture()
def uep(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[UepProcess]:
    u = UepProcess(request.param, tmp_path)
    try:
        yield u
    finally:
        (tmp_path / "gate").touch()  # a held task ends, whatever the test did
        u.close()


@pytest.fixture()
def gate(tmp_path: Path) -> Path:
    """The file a held task waits for: the test creates it once it has seen what it wanted."""
    return tmp_path / "gate"


@pytest.mark.parametrize("uep", [{"type": "ThreadPoolEngine", "max_workers": 2}], indirect=True)
def test_a_local_pool_reports_one_node_with_the_task_it_runs(uep: UepProcess, gate: Path) -> None:
    before = time.time()
    task_id = uep.submit(HOLD, "hold", str(gate), 120)
    s = uep.status(lambda e: e["outstanding"] == 1)
    assert s["versions"] == VERSIONS and s["block_list"] == []
    [node] = s["nodes"]
    assert {k: node[k] for k in ("manager", "host", "block_id", "workers", "busy", "idle")} == {
        "manager": "local", "host": platform.node(), "block_id": None, "workers": 2, "busy": 1, "idle": 1}
    assert node["python"] == platform.python_version()
    [task] = node["tasks"]
    assert task["task_id"] == task_id and before <= task["started_at"] <= time.time()
    gate.touch()
    uep.wait_for(lambda k, h: k == frames.RESULT, 30)
    assert uep.status(lambda e: e["outstanding"] == 0)["nodes"][0]["tasks"] == []


@pytest.mark.parametrize("uep", [HTEX], indirect=True)
def test_htex_reports_its_worker_pool_and_its_block(uep: UepProcess, gate: Path) -> None:
    task_id = uep.submit(HOLD, "hold", str(gate), 120)
    s = uep.status(lambda e: e.get("nodes") and e["nodes"][0]["busy"] == 1, timeout=60)
    assert "error" not in s and s["versions"] == VERSIONS
    [node] = s["nodes"]
    assert (node["host"], node["block_id"], node["workers"], node["idle"]) == (platform.node(), "0", 1, 0)
    assert (node["python"], node["parsl"]) == (platform.python_version(), parsl.__version__)
    assert time.time() - 15 < node["last_heartbeat"] <= time.time()  # the heartbeat period is 2 s
    assert [t["task_id"] for t in node["tasks"]] == [task_id]
    [block] = s["block_list"]
    assert (block["block_id"], block["provider"], block["state"], block["workers"]) == ("0", "LocalProvider",
                                                                                         "running", 1)
    assert block["job_id"] and block["raw_state"] is None and block["walltime"] is None
    assert [t["state"] for t in block["transitions"]] == ["pending", "running"]
    assert block["submitted_at"] <= block["transitions"][-1]["at"] == block["updated_at"] <= time.time()
    run_dir = str(Path(uep.log).parent)
    assert block["submit_script"].startswith(os.path.join(run_dir, "submit_scripts", "parsl.htex.block-0."))
    assert os.path.exists(block["submit_script"])
    assert (block["stdout"], block["stderr"]) == (block["submit_script"] + ".out", block["submit_script"] + ".err")
    gate.touch()
    uep.wait_for(lambda k, h: k == frames.RESULT, 30)
    log = uep.log.read_text()
    assert log.count("block 0 (job ") == 2 and "LocalProvider): running" in log, log


@pytest.mark.parametrize("uep", [HTEX], indirect=True)
def test_cancel_block_cancels_that_block_through_its_provider_and_an_unknown_one_changes_nothing(
        uep: UepProcess) -> None:
    running = uep.status(lambda e: any(b["state"] == "running" for b in e.get("block_list", [])), timeout=60)
    job = running["block_list"][0]["job_id"]
    uep.send(frames.CANCEL_BLOCK, {"block_id": "7"})
    after = uep.status(lambda e: True, timeout=5)  # sent at once, not after STATUS_PERIOD
    assert [(b["block_id"], b["state"]) for b in after["block_list"]] == [("0", "running")]
    uep.send(frames.CANCEL_BLOCK, {"block_id": "0"})
    cancelled = uep.status(lambda e: e["block_list"][0]["state"] == "cancelled", timeout=30)
    block = cancelled["block_list"][0]
    assert (block["job_id"], block["reason"]) == (job, "cancelled on request")
    assert [t["state"] for t in block["transitions"]] == ["pending", "running", "cancelled"]
    # LocalProvider's job is the block's process group: it is gone.
    pid = int(job)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), f"block 0's process {pid} outlived its cancellation"
    log = uep.log.read_text()
    assert "not cancelling block '7': the HighThroughputEngine has no such block" in log, log
    assert "block 0 cancelled at the manager's request" in log


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


FAIL = "def fail(lines):\n    raise ValueError('\\n'.join(f'line {i}' for i in range(lines)))\n"


@pytest.mark.parametrize("uep", [{"type": "ThreadPoolEngine", "max_workers": 1}], indirect=True)
def test_a_failed_task_s_result_header_carries_its_traceback_as_bounded_text(uep: UepProcess) -> None:
    short = uep.submit(FAIL, "fail", 3)
    _, header, _ = uep.wait_for(lambda k, h: k == frames.RESULT and h["task_id"] == short, 30)
    assert header["status"] == "failed" and header["error_code"] == "TASK_EXCEPTION"
    assert header["traceback"].startswith("Traceback (most recent call last):\n")
    assert "in fail\n" in header["traceback"] and header["traceback"].endswith("line 1\nline 2\n")
    long = uep.submit(FAIL, "fail", 5000)
    _, header, _ = uep.wait_for(lambda k, h: k == frames.RESULT and h["task_id"] == long, 30)
    text = header["traceback"]
    assert len(text.encode()) <= 16 * 1024 and text.endswith("line 4998\nline 4999\n")
    cut = int(text.split()[1])
    assert text.startswith(f"(... {cut} earlier lines cut)\n") and f"\nline {4999 - len(text.splitlines()) + 2}\n" in text
    ok = uep.submit(SLEEP, "nap", 0)
    _, header, _ = uep.wait_for(lambda k, h: k == frames.RESULT and h["task_id"] == ok, 30)
    assert header["status"] == "success" and "traceback" not in header


TWO_BLOCKS = {**HTEX, "provider": {**HTEX["provider"], "init_blocks": 2, "max_blocks": 2}}


@pytest.mark.parametrize("uep", [TWO_BLOCKS], indirect=True)
def test_each_worker_pool_names_the_task_the_interchange_gave_it(uep: UepProcess, gate: Path) -> None:
    uep.status(lambda e: len(e.get("nodes", [])) == 2, timeout=60)
    ids = {uep.submit(HOLD, "hold", str(gate), 120), uep.submit(HOLD, "hold", str(gate), 120)}
    s = uep.status(lambda e: [n["busy"] for n in e["nodes"]] == [1, 1], timeout=30)
    assert sorted(n["block_id"] for n in s["nodes"]) == ["0", "1"]
    held = [[t["task_id"] for t in n["tasks"]] for n in s["nodes"]]
    assert sorted(map(len, held)) == [1, 1] and {t for h in held for t in h} == ids
    assert all(n["host"] == platform.node() for n in s["nodes"])
    assert sorted((b["block_id"], b["state"], b["workers"]) for b in s["block_list"]) == [("0", "running", 1),
                                                                                           ("1", "running", 1)]
