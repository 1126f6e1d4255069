"""Worker pools in containers (gce/uep/containers.py).

The command shapes of every container type, as parsl formats them, and the settings refused
before anything starts; then for real with podman: a user endpoint whose HighThroughputEngine
runs its worker pool in an image built offline (tests/uep/podman_image.py) runs a task inside
it, a missing image is named to the task with the command that failed, and no container is
left behind. Apptainer and Singularity are not packaged for Debian 12 (nor on PyPI): only their
command shape is tested here.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from gce.config import engine_options
from gce.errors import ConfigError
from gce.transport import frames
from gce.transport.payload import unpack_result
from gce.uep.containers import Container, problem, take_options
from tests.uep.uep_process import UepProcess

POOL = "pool {debug} --port={worker_port} --block_id={{block_id}}"  # a parsl launch command template
PROJECT = Path(__file__).resolve().parents[2]


def worker_mounts() -> str:
    """Read-only mounts of what the worker pool runs: this project, the venv and the gce the venv
    imports from / as the worker does (the three differ in a git worktree), each at its own path."""
    import sys

    imported = subprocess.run([sys.executable, "-c", "import gce; print(gce.__file__)"], cwd="/", text=True,
                              capture_output=True, check=True).stdout.strip()
    paths: list[Path] = []
    for path in sorted({PROJECT, Path(sys.prefix).resolve(), Path(imported).resolve().parents[1]}):
        if not any(path.is_relative_to(p) for p in paths):
            paths.append(path)
    return " ".join(f"-v {p}:{p}:ro" for p in paths)


def as_parsl_runs(command: str) -> str:
    """COMMAND after parsl's two str.format passes (HighThroughputExecutor.initialize_scaling,
    then each block's id)."""
    class Blank(dict):
        def __missing__(self, key: str) -> str:
            return {"worker_port": "54321"}.get(key, "")

    return command.format_map(Blank()).format(block_id=7)


def launched(c: Container) -> str:
    """The command a block runs, without the failure note after it."""
    return as_parsl_runs(c.wrap(POOL, "/runs/uep")).split(" || (", 1)[0]


@pytest.mark.parametrize("kind", ["podman", "docker", "podman-hpc"])
def test_docker_like_engines_run_the_pool_in_the_image_with_the_run_dir_mounted(kind: str) -> None:
    c = Container(kind, "registry.example/worker:1", "--network host --label x={y}")
    assert launched(c) == (f"{kind} run --rm --init --network host --label x={{y}} -v /runs/uep:/runs/uep -t "
                           "registry.example/worker:1 pool  --port=54321 --block_id=7")


@pytest.mark.parametrize("kind", ["apptainer", "singularity"])
def test_apptainer_like_engines_run_the_image_with_the_pool_as_its_arguments(kind: str) -> None:
    assert launched(Container(kind, "/images/worker.sif", "")) == (
        f"{kind} run /images/worker.sif pool  --port=54321 --block_id=7")
    assert launched(Container(kind, "/images/worker.sif", "--bind /data")) == (
        f"{kind} run --bind /data /images/worker.sif pool  --port=54321 --block_id=7")


def test_custom_fills_in_the_run_dir_and_the_launch_command() -> None:
    c = Container("custom", "", "shifter --image=x:{tag} -V {EXECUTOR_RUNDIR}:/r -- {EXECUTOR_LAUNCH_CMD}")
    assert launched(c) == "shifter --image=x:{tag} -V /runs/uep:/r -- pool  --port=54321 --block_id=7"


def test_a_failed_container_names_its_image_and_command_on_stderr(tmp_path: Path) -> None:
    fake = tmp_path / "podman"  # stands for a podman that cannot find the image
    fake.write_text("#!/bin/sh\necho 'Error: img:none: image not known' >&2\nexit 125\n")
    fake.chmod(0o755)
    command = as_parsl_runs(Container("podman", "img:none", "--pull never").wrap(POOL, "/runs/uep"))
    proc = subprocess.run(["bash", "-c", command], env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, capture_output=True,
                          text=True)
    assert proc.returncode == 125
    assert proc.stderr.splitlines() == [
        "Error: img:none: image not known",
        "gce: the worker pool's podman container (image img:none) failed; its command was:",
        "podman run --rm --init --pull never -v /runs/uep:/runs/uep -t img:none pool  --port=54321 --block_id=7"]


@pytest.mark.parametrize("engine, why", [
    ({"type": "HighThroughputEngine", "container_type": "podman"}, "container_uri: container_type podman needs"),
    ({"type": "HighThroughputEngine", "container_type": "custom", "container_cmd_options": "run it"},
     "container_cmd_options: container_type custom needs a command template holding {EXECUTOR_LAUNCH_CMD}"),
    ({"type": "HighThroughputEngine", "container_uri": "img"}, "container_uri has no effect without container_type"),
    ({"type": "HighThroughputEngine", "container_type": "lxc", "container_uri": "img"}, "is not one of apptainer"),
    ({"type": "ProcessPoolEngine", "container_type": "podman", "container_uri": "img"},
     "container_type: a ProcessPoolEngine's workers are the user endpoint's own processes"),
    ({"type": "ThreadPoolEngine", "container_type": "docker", "container_uri": "img"},
     "use a HighThroughputEngine"),
])
def test_settings_that_cannot_work_are_refused_before_anything_starts(engine: dict, why: str) -> None:
    assert why in (problem(engine) or "")
    with pytest.raises(ConfigError) as err:
        engine_options.check(engine, "config.yaml")
    assert why in str(err.value) and "engine." in str(err.value)
    options = {k: v for k, v in engine.items() if k != "type"}
    with pytest.raises(ValueError, match="engine.container"):
        take_options(options, engine["type"])


def test_a_container_engine_passes_config_checks_and_leaves_parsl_none_of_its_keys() -> None:
    engine = {"type": "HighThroughputEngine", "container_type": "apptainer", "container_uri": "w.sif",
              "container_cmd_options": "--cleanenv", "max_workers_per_node": 2}
    engine_options.check(engine, "config.yaml")
    options = {k: v for k, v in engine.items() if k != "type"}
    assert take_options(options) == Container("apptainer", "w.sif", "--cleanenv")
    assert options == {"max_workers_per_node": 2}
    assert take_options({"max_workers_per_node": 2}) is None


# -- for real, with podman -------------------------------------------------------------------

WHERE = ("def where():\n"
         "    import os\n"
         "    return os.path.exists('/run/.containerenv'), open('/proc/self/cgroup').read()\n")


@pytest.fixture(scope="module")
def podman_store():
    from tests.uep.podman_image import worker_image

    return worker_image()


def podman_engine(image: str, **extra: Any) -> dict[str, Any]:
    return {"type": "HighThroughputEngine", "max_workers_per_node": 1, "strategy_period": 0.3,
            "container_type": "podman", "container_uri": image,
            # The interchange listens on 127.0.0.1; the worker needs the project and its venv.
            "container_cmd_options": f"--network host --pull never {worker_mounts()}",
            "provider": {"type": "LocalProvider", "init_blocks": 1, "min_blocks": 0, "max_blocks": 1}, **extra}


def result_of(uep: UepProcess, task_id: str, timeout: float) -> tuple[dict, bytes]:
    _, header, body = uep.wait_for(lambda k, h: k == frames.RESULT and h["task_id"] == task_id, timeout)
    return header, body


def no_containers_left(store: Any, timeout: float = 5) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := store.containers()) and time.monotonic() < deadline:
        time.sleep(0.3)
    return left


@pytest.mark.slow
def test_a_task_runs_in_the_podman_container_and_no_container_outlives_the_endpoint(podman_store, tmp_path):
    uep = UepProcess(podman_engine(podman_store.image), tmp_path, env=podman_store.env)
    try:
        header, body = result_of(uep, uep.submit(WHERE, "where"), timeout=90)
        assert header["status"] == "success", header
        inside, cgroup = cloudpickle.loads(unpack_result(body).value)
        assert inside, "the task did not run in a container (no /run/.containerenv)"
        assert "libpod" in cgroup, cgroup
        assert len(podman_store.containers()) == 1
    finally:
        uep.close()
    try:
        assert no_containers_left(podman_store) == []
    finally:
        podman_store.remove_all()


@pytest.mark.slow
def test_a_missing_image_is_named_to_the_task_with_the_command(podman_store, tmp_path):
    missing = podman_store.image + "-missing"
    uep = UepProcess(podman_engine(missing, block_failure_limit=1), tmp_path, env=podman_store.env)
    try:
        header, _ = result_of(uep, uep.submit(WHERE, "where"), timeout=60)
        assert (header["status"], header["error_code"]) == ("failed", "BLOCKS_FAILING"), header
        message = header["error_message"]
        assert f"Error: {missing}: image not known" in message, message
        assert f"the worker pool's podman container (image {missing}) failed; its command was:" in message
        assert f"podman run --rm --init --network host --pull never {worker_mounts()} -v {tmp_path}:{tmp_path} " \
               f"-t {missing} " in message, message
    finally:
        uep.close()
    try:
        assert no_containers_left(podman_store) == []
    finally:
        podman_store.remove_all()
