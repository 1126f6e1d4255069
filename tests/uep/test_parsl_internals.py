"""What the engine relies on in parsl beyond its documented interface (gce.uep.parsl_compat),
checked against the installed parsl's real objects: after a parsl upgrade this file fails first,
naming the parsl version and what changed, instead of an endpoint failing at its first task."""

from __future__ import annotations

import importlib.util
import os
import platform
import types
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import parsl
import pytest
from parsl.executors import HighThroughputExecutor
from parsl.jobs.job_status_poller import JobStatusPoller
from parsl.jobs.states import JobState, JobStatus
from parsl.providers import LocalProvider, SlurmProvider
from parsl.utils import Timer

from gce.uep import parsl_compat, worker_pool
from gce.uep.engines import HighThroughputEngine
from gce.uep.factory import make_engine
from gce.uep.parsl_compat import ParslChanged

VERSION = f"parsl {parsl.__version__}"


@pytest.fixture()
def poller() -> Iterator[JobStatusPoller]:
    """The engine's scaling strategy, for an executor that is never started."""
    htex = HighThroughputExecutor(label="htex", provider=LocalProvider(init_blocks=0))
    p = JobStatusPoller(strategy="simple", max_idletime=60.0, strategy_period=3600.0)
    p.add_executors([htex])
    yield p
    # Only its timer thread: JobStatusPoller.close() would also scale in the executor, which
    # needs a started one.
    Timer.close(p, timeout=5)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HighThroughputEngine]:
    """A real HighThroughputEngine as a user endpoint starts it: one block of one worker on this host."""
    run_dir = tmp_path_factory.mktemp("htex")
    path = os.environ["PATH"]
    os.environ["PATH"] = f"{Path(sys.executable).parent}:{path}"  # parsl starts the worker pool by name
    spec = {"type": "HighThroughputEngine", "max_workers_per_node": 1, "strategy_period": 0.5,
            "provider": {"type": "LocalProvider", "init_blocks": 1, "min_blocks": 0, "max_blocks": 1}}
    eng = make_engine(spec, str(run_dir), 1 << 20)
    assert isinstance(eng, HighThroughputEngine)
    try:
        eng.start()
        yield eng
    finally:
        eng.shutdown()
        os.environ["PATH"] = path


def test_the_strategy_is_told_the_first_blocks_are_started(poller: JobStatusPoller) -> None:
    parsl_compat.skip_first_scale_out(poller, "htex")
    # What parsl's strategy reads to decide it must still start init_blocks (Strategy._general_strategy).
    assert poller._strategy.executors["htex"]["first"] is False, VERSION


def test_a_strategy_without_the_first_flag_is_named_with_the_parsl_version(poller: JobStatusPoller) -> None:
    del poller._strategy.executors["htex"]["first"]
    with pytest.raises(ParslChanged) as err:
        parsl_compat.skip_first_scale_out(poller, "htex")
    assert str(err.value).startswith(f"gce cannot drive {VERSION}: JobStatusPoller._strategy.executors['htex']['first']")
    assert "pip install 'parsl==" in err.value.hint


def test_a_started_engine_reads_its_blocks_and_worker_pools(engine: HighThroughputEngine) -> None:
    assert engine.poller._strategy.executors["htex"]["first"] is False, VERSION
    deadline = time.monotonic() + 60
    while not (managers := parsl_compat.connected_managers(engine.htex)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(managers) == 1, f"no worker pool connected within 60 s ({VERSION})"
    assert managers[0]["worker_count"] == 1 and managers[0]["tasks"] == 0 and managers[0]["active"] is True
    blocks = parsl_compat.block_states(engine.htex)
    # PENDING until the strategy's next poll, RUNNING after it.
    assert list(blocks) == ["0"] and blocks["0"].state in (JobState.PENDING, JobState.RUNNING), blocks
    assert blocks["0"].terminal is False
    status = engine.status()
    assert "error" not in status, status
    assert (status["blocks"], status["managers"], status["workers_total"], status["workers_idle"]) == (1, 1, 1, 1)
    # What the nodes and blocks of the status read: the pool's block and versions, each block's job.
    assert managers[0]["block_id"] == "0" and isinstance(managers[0]["manager"], str)
    assert (managers[0]["python_version"], managers[0]["parsl_version"]) == (sys.version.split()[0], parsl.__version__)
    jobs = parsl_compat.block_jobs(engine.htex)
    assert list(jobs) == ["0"] and jobs["0"] in engine.provider.resources, VERSION
    # gce's interchange answers what MANAGERS leaves out.
    detail = parsl_compat.manager_detail(engine.htex)
    assert list(detail) == [managers[0]["manager"]], f"gce's interchange did not answer the detail ({VERSION})"
    assert detail[managers[0]["manager"]]["hostname"] == platform.node()
    assert detail[managers[0]["manager"]]["tasks"] == []
    assert time.time() - 30 < detail[managers[0]["manager"]]["last_heartbeat"] <= time.time()
    script, out, err = parsl_compat.job_files(engine.provider, jobs["0"])
    assert script is not None and Path(script).is_file() and Path(script).name.startswith("parsl.htex.block-0.")
    assert (out, err) == (script + ".out", script + ".err")


def test_a_worker_pool_entry_without_what_status_reads_is_named() -> None:
    class Htex:  # only the reply is made up: the check of its shape is what is tested
        def connected_managers(self) -> list[dict[str, Any]]:
            return [{"manager": "m", "worker_count": 1, "active": True}]

    with pytest.raises(ParslChanged, match=rf"^gce cannot drive {VERSION}: an entry of Htex.connected_managers\(\) "
                                           r"lacks tasks, block_id, python_version, parsl_version; "
                                           r"it has keys \['active', 'manager', 'worker_count'\]$"):
        parsl_compat.connected_managers(Htex())


def test_an_executor_without_block_states_is_named() -> None:
    htex = HighThroughputExecutor(label="htex", provider=LocalProvider(init_blocks=0))
    assert parsl_compat.block_states(htex) == {}
    with pytest.raises(ParslChanged, match=f"^gce cannot drive {VERSION}: HighThroughputExecutor.status_facade"):
        parsl_compat.block_states(object.__new__(type("HighThroughputExecutor", (), {})))


def test_lost_workers_are_told_from_failed_tasks() -> None:
    from parsl.executors.high_throughput.errors import ManagerLost, WorkerLost

    assert parsl_compat.lost_worker_errors() == (WorkerLost, ManagerLost)


@pytest.mark.parametrize("kind", [LocalProvider, SlurmProvider])
def test_a_fresh_provider_is_told_the_jobs_of_its_predecessor(kind: type) -> None:
    provider = kind()
    parsl_compat.mark_jobs_known(provider, ["17", "18"])
    assert {j: provider.resources[j]["status"].state.name for j in provider.resources} == {"17": "UNKNOWN",
                                                                                           "18": "UNKNOWN"}
    # What parsl's own cancel() looks up; a job it does not find there it cannot cancel.
    assert provider.resources["17"]["job_id"] == "17"
    del provider.resources
    with pytest.raises(ParslChanged, match=f"^gce cannot drive {VERSION}: {type(provider).__name__}.resources"):
        parsl_compat.mark_jobs_known(provider, ["19"])


def test_the_worker_pool_and_interchange_gce_starts_are_parsls() -> None:
    # gce runs these two modules of parsl itself (gce.uep.worker_pool, gce.uep.interchange).
    for module in (parsl_compat.WORKER_POOL, parsl_compat.INTERCHANGE):
        assert importlib.util.find_spec(module) is not None, f"{module} is gone in {VERSION}"
    # gce.uep.worker_pool sets this name, which the pool module reads when it runs, so that the
    # pool forks its workers from a fork server.
    import parsl.multiprocessing

    assert hasattr(parsl.multiprocessing, "SpawnContext"), VERSION
    spec = importlib.util.find_spec(worker_pool.POOL)
    assert spec is not None and spec.origin is not None
    assert "SpawnContext" in Path(spec.origin).read_text(), f"{worker_pool.POOL} no longer uses it in {VERSION}"
    cmd = parsl_compat.launch_cmd_with_pool("gce-worker-pool")
    assert cmd.startswith("gce-worker-pool ") and "process_worker_pool.py" not in cmd


def test_an_executor_without_the_job_ids_of_its_blocks_is_named() -> None:
    assert parsl_compat.block_jobs(HighThroughputExecutor(label="htex", provider=LocalProvider(init_blocks=0))) == {}
    with pytest.raises(ParslChanged, match=f"^gce cannot drive {VERSION}: HighThroughputExecutor.blocks_to_job_id"):
        parsl_compat.block_jobs(object.__new__(type("HighThroughputExecutor", (), {})))


def test_a_batch_job_s_files_are_named_from_what_slurm_provider_keeps(tmp_path: Path) -> None:
    provider = SlurmProvider()
    script = str(tmp_path / "parsl.htex.block-0.17.5")
    # The record SlurmProvider.submit makes of a job it submitted (parsl/providers/slurm/slurm.py).
    provider.resources["42"] = {"job_id": "42", "status": None, "job_stdout_path": script + ".stdout",
                                "job_stderr_path": script + ".stderr"}
    assert parsl_compat.job_files(provider, "42") == (script, script + ".stdout", script + ".stderr")
    assert parsl_compat.job_files(provider, "43") == (None, None, None)
    source = Path(sys.modules[SlurmProvider.__module__].__file__ or "").read_text()
    assert "'job_stdout_path': job_stdout_path" in source and 'script_path + ".stdout"' in source, VERSION


def test_the_scheduler_s_own_words_come_from_the_provider_s_own_status_command() -> None:
    provider = SlurmProvider()
    provider._cmd = "squeue --noheader --format='%i %t' --job '{0}'"  # parsl's when sacct is off
    printed = "7 PD Resources\n8 R None\n"
    calls: list[tuple[str, float | None]] = []

    def run(cmd: str, timeout: float | None) -> tuple[int, str, str]:
        calls.append((cmd, timeout))
        return 0, printed, ""

    provider.cmd_timeout = 30
    words = parsl_compat.watch_scheduler(provider, run)
    assert provider._cmd == "squeue --noheader --format='%i %t %r' --job '{0}'"
    provider.resources = {j: {"job_id": j, "status": JobStatus(JobState.PENDING), "job_stdout_path": "o",
                              "job_stderr_path": "e"} for j in ("7", "8")}
    provider._status()  # parsl reads the first two words of each line, as before
    assert calls == [("squeue --noheader --format='%i %t %r' --job '7,8'", 30)]  # with the provider's timeout
    assert {j: r["status"].state for j, r in provider.resources.items()} == {"7": JobState.PENDING,
                                                                             "8": JobState.RUNNING}
    assert words == {"7": ("PD", "Resources"), "8": ("R", "None")}
    printed = "8 CG None\n"  # job 7 is no longer listed: parsl keeps its state for one poll more
    provider._status()
    assert words == {"7": ("PD", "Resources"), "8": ("CG", "None")}
    assert provider.resources["7"]["status"].state == JobState.PENDING
    assert parsl_compat.watch_scheduler(LocalProvider()) == {}


def test_an_interchange_module_unlike_parsl_s_is_run_as_it_is() -> None:
    import parsl.executors.high_throughput.interchange as module

    # What teach_manager_detail relies on is in the installed parsl's module...
    source = Path(module.__file__ or "").read_text()
    assert all(line in source for line in parsl_compat.INTERCHANGE_MAIN), VERSION
    # ...and a module without it is left alone (gce.uep.interchange then runs parsl's as it is).
    other = types.ModuleType("interchange")
    assert parsl_compat.teach_manager_detail(other) is False
    other.Interchange = type("Interchange", (), {"process_command": lambda self: None})  # type: ignore[attr-defined]
    assert parsl_compat.teach_manager_detail(other) is False


def test_an_interchange_without_the_detail_command_yields_no_detail() -> None:
    class Client:
        def run(self, message: object) -> None:  # parsl's answer to a command it does not know
            return None

    assert parsl_compat.manager_detail(types.SimpleNamespace(command_client=Client())) == {}


def test_a_gated_executor_starts_no_block_while_it_is_closed(tmp_path: Path) -> None:
    htex = HighThroughputExecutor(label="htex", provider=LocalProvider(init_blocks=0))
    started: list[int] = []
    htex.scale_out_facade = lambda n: started.append(n) or ["0"] * n  # type: ignore[method-assign]
    open_ = [False]
    parsl_compat.gate_scale_out(htex, lambda: open_[0])
    assert htex.scale_out_facade(2) == [] and started == []
    open_[0] = True
    assert htex.scale_out_facade(2) == ["0", "0"] and started == [2]
    # What the gate relies on: the strategy (and the engine) start blocks with scale_out_facade only.
    strategy = Path(sys.modules["parsl.jobs.strategy"].__file__ or "").read_text()
    assert "executor.scale_out_facade(" in strategy and ".scale_out(" not in strategy, VERSION


def test_a_provider_polled_more_often_keeps_its_name_and_everything_else() -> None:
    provider = SlurmProvider(partition="debug")
    assert provider.status_polling_interval == 60
    parsl_compat.poll_every(provider, 2)
    assert provider.status_polling_interval == 2 and isinstance(provider, SlurmProvider)
    assert type(provider).__name__ == "SlurmProvider" and provider.partition == "debug"
    htex = HighThroughputExecutor(label="htex", provider=provider)
    assert htex.status_polling_interval == 2  # what parsl's poller reads
    assert SlurmProvider().status_polling_interval == 60  # the class itself is untouched
