"""Each task in a directory of its own (gce.uep.sandbox), on a real spawned worker process."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import stat
import subprocess
import uuid
from pathlib import Path

import cloudpickle
import pytest

from gce.config.model import validate
from gce.errors import ConfigError
from gce.sdk import serialize
from gce.transport.payload import unpack_result
from gce.uep import sandbox


def where_am_i():
    import os
    import stat

    cwd = os.getcwd()
    return {"cwd": cwd, "task_id": os.environ.get("GCE_TASK_ID"), "sandbox": os.environ.get("GCE_TASK_SANDBOX_DIR"),
            "mode": stat.S_IMODE(os.stat(cwd).st_mode), "owner": os.stat(cwd).st_uid}


def _payload(fn, *args) -> bytes:
    kind, blob = serialize.serialize_function(fn)
    return serialize.pack_task(kind, blob, serialize.serialize_args(args, {}))


@pytest.fixture(scope="module")
def worker():
    """One real worker process, started as a process pool's are (spawn), for every test here."""
    with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def _run_on(worker, context) -> tuple[bool, object]:
    raw = worker.submit(sandbox.run_task, _payload(where_am_i), 1 << 20, 1 << 16, None, context).result(timeout=60)
    result = unpack_result(raw)
    return result.ok, cloudpickle.loads(result.value) if result.ok else f"{result.code}: {result.message}"


def test_a_sandboxed_task_runs_in_its_own_0700_directory_and_is_told_where(worker, tmp_path):
    dirs = sandbox.take({"run_in_sandbox": True}, str(tmp_path), "ProcessPoolEngine")
    task_id = str(uuid.uuid4())
    ok, seen = _run_on(worker, dirs.context(task_id))
    expected = tmp_path / "tasks_working_dir" / task_id  # Globus Compute's layout
    assert ok, seen
    assert seen == {"cwd": str(expected), "task_id": task_id, "sandbox": str(expected), "mode": 0o700,
                    "owner": os.getuid()}
    # The worker is put back: the next task, unsandboxed, sees neither its directory nor its variables.
    ok, after = _run_on(worker, sandbox.TaskDirs().context(str(uuid.uuid4())))
    assert ok and after["cwd"] != str(expected) and after["sandbox"] is None and after["task_id"] != task_id


def test_a_batch_on_one_worker_places_each_task_and_gives_each_its_own_variables(worker, tmp_path):
    """parsl runs small tasks in batches: each still gets its sandbox and only its own variables."""
    dirs = sandbox.take({"run_in_sandbox": True}, str(tmp_path), "ProcessPoolEngine")
    ids = [str(uuid.uuid4()) for _ in range(2)]
    contexts = [dirs.context(ids[0], {"GCE_USER_PYTHON_VERSION": "3.11.99"}), dirs.context(ids[1])]
    raw = worker.submit(sandbox.run_batch, [_payload(told_python)] * 2, 1 << 20, 1 << 16, contexts).result(timeout=60)
    assert [cloudpickle.loads(unpack_result(r).value) for r in raw] == [
        (str(tmp_path / "tasks_working_dir" / ids[0]), ids[0], "3.11.99"),
        (str(tmp_path / "tasks_working_dir" / ids[1]), ids[1], None)]


def told_python():
    import os

    return os.getcwd(), os.environ.get("GCE_TASK_ID"), os.environ.get("GCE_USER_PYTHON_VERSION")


def test_working_dir_alone_sets_where_tasks_run_and_an_absolute_one_is_kept(worker, tmp_path):
    dirs = sandbox.take({"working_dir": str(tmp_path / "scratch")}, "/nonexistent-run-dir", "ProcessPoolEngine")
    task_id = str(uuid.uuid4())
    ok, seen = _run_on(worker, dirs.context(task_id))
    assert ok and seen["cwd"] == str(tmp_path / "scratch") and seen["task_id"] == task_id and seen["sandbox"] is None


def test_a_task_id_that_is_not_a_uuid_never_becomes_a_path(worker, tmp_path):
    dirs = sandbox.take({"run_in_sandbox": True}, str(tmp_path), "ProcessPoolEngine")
    ok, seen = _run_on(worker, dirs.context("../../escaped"))
    assert not ok and seen == ("ENDPOINT_FAILED: the task id '../../escaped' is not a UUID: it cannot name a "
                               "sandbox directory")
    assert not (tmp_path / "escaped").exists() and not Path("/escaped").exists()


def test_a_sandbox_that_exists_as_a_symlink_is_refused(worker, tmp_path):
    dirs = sandbox.take({"run_in_sandbox": True}, str(tmp_path), "ProcessPoolEngine")
    task_id = str(uuid.uuid4())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "tasks_working_dir").mkdir()
    (tmp_path / "tasks_working_dir" / task_id).symlink_to(elsewhere)
    ok, seen = _run_on(worker, dirs.context(task_id))
    link = tmp_path / "tasks_working_dir" / task_id
    assert not ok and seen == (f"ENDPOINT_FAILED: the task's sandbox directory {link} is a symbolic link: refusing "
                               "to run the task there (a link could send its files anywhere)")


@pytest.fixture
def full_disk(tmp_path):
    """A tmpfs with room for no more directories (its inodes used up), mounted for one test."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=4,mode=0700", "tmpfs", str(disk)], check=True)
    try:
        os.mkdir(disk / "tasks_working_dir", 0o700)
        for n in range(16):
            try:
                (disk / f"f{n}").touch()
            except OSError:
                break
        yield disk
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs")
def test_a_full_disk_answers_the_task_with_a_sentence_and_the_worker_goes_on(worker, full_disk):
    dirs = sandbox.take({"run_in_sandbox": True}, str(full_disk), "ProcessPoolEngine")
    task_id = str(uuid.uuid4())
    ok, seen = _run_on(worker, dirs.context(task_id))
    assert not ok and seen == (f"ENDPOINT_FAILED: the task's sandbox directory {full_disk}/tasks_working_dir/"
                               f"{task_id} could not be created: No space left on device (the disk or your quota "
                               "is full: free some space there)")
    ok, _ = _run_on(worker, sandbox.TaskDirs().context(str(uuid.uuid4())))
    assert ok


def test_a_thread_pool_refuses_the_options_at_config_validation_and_at_start():
    config = {"broker": {"url": "amqp://ep:pw@localhost/gce"},
              "engine": {"type": "ThreadPoolEngine", "run_in_sandbox": True}}
    with pytest.raises(ConfigError) as err:
        validate(config, "config.yaml")
    assert str(err.value) == ("invalid configuration in config.yaml: engine.run_in_sandbox: this key is not "
                              "allowed for this engine type")
    with pytest.raises(ValueError, match="need a process per task"):
        sandbox.take({"working_dir": "x"}, "/tmp", "ThreadPoolEngine")
    validate({**config, "engine": {"type": "ProcessPoolEngine", "run_in_sandbox": True, "working_dir": "w"}}, "c")


def test_mode_of_the_working_dir_made_for_sandboxes(tmp_path):
    dirs = sandbox.take({"run_in_sandbox": True, "working_dir": "deep/er"}, str(tmp_path), "ProcessPoolEngine")
    placed = sandbox.Placed(dirs.context(str(uuid.uuid4())))
    try:
        assert stat.S_IMODE(os.stat(tmp_path / "deep" / "er").st_mode) == 0o700
    finally:
        placed.leave()


# End to end: a process pool of a personal endpoint and parsl's workers as a mapped user run sandboxed
# tasks in tests/uep/test_setup_teardown.py (one endpoint each, shared with endpoint_setup's tests).
