"""The block book's rules, over plain data: one transition per change, a final state is final,
bounded lists, walltime left."""

from __future__ import annotations

import logging
import time

import pytest

from gce.uep.accounting import KEEP_BLOCKS, KEEP_TRANSITIONS, BlockBook, walltime_seconds


@pytest.mark.parametrize("text, seconds", [("00:10:00", 600.0), ("1:30", 90.0), ("45", 45.0),
                                           ("2-01:00:00", 176400.0), ("soon", None), (None, None)])
def test_walltimes_read_as_slurm_writes_them(text: object, seconds: float | None) -> None:
    assert walltime_seconds(text) == seconds


def test_each_change_is_one_transition_logged_once_and_a_final_state_stays(caplog: pytest.LogCaptureFixture) -> None:
    book = BlockBook("SlurmProvider", "00:10:00")
    caplog.set_level(logging.INFO, "gce.uep.blocks")
    book.observe("0", 17, "PENDING", now=1.0)
    book.observe("0", 17, "PENDING", now=2.0)
    book.observe("0", 17, "PENDING", raw_state="PD", reason="Priority", now=3.0)
    book.observe("0", 17, "RUNNING", raw_state="R", reason="None", files=("s", "s.stdout", "s.stderr"), now=4.0)
    book.observe("0", 17, "TIMEOUT", now=5.0)
    book.observe("0", 17, "COMPLETED", now=6.0)  # parsl's guess for a job squeue no longer lists
    assert not book.cancelled("1", "no such block")
    [block] = book.to_list({"0": 2}, now=7.0)
    assert [(t["at"], t["state"], t["raw_state"], t["reason"]) for t in block["transitions"]] == [
        (1.0, "pending", None, ""), (3.0, "pending", "PD", "Priority"), (4.0, "running", "R", "None"),
        (5.0, "failed", None, "the job reached its walltime")]
    assert (block["job_id"], block["state"], block["updated_at"], block["workers"]) == ("17", "failed", 5.0, 2)
    assert (block["submit_script"], block["stdout"], block["stderr"]) == ("s", "s.stdout", "s.stderr")
    assert block["walltime_left"] is None  # over
    assert [r.getMessage() for r in caplog.records] == [
        "block 0 (job 17, SlurmProvider): pending", "block 0 (job 17, SlurmProvider): pending [PD]: Priority",
        "block 0 (job 17, SlurmProvider): running [R]: None",
        "block 0 (job 17, SlurmProvider): failed: the job reached its walltime"]


def test_walltime_left_counts_from_when_the_block_started_running() -> None:
    book = BlockBook("SlurmProvider", "00:10:00")
    book.observe("0", "5", "PENDING", now=100.0)
    book.observe("0", "5", "RUNNING", now=200.0)
    assert book.to_list({}, now=260.0)[0]["walltime_left"] == 540.0
    assert book.to_list({}, now=2000.0)[0]["walltime_left"] == 0.0
    assert book.cancelled("0", "cancelled on request", now=300.0)
    assert book.to_list({}, now=300.0)[0]["state"] == "cancelled"


def test_only_the_last_transitions_and_the_last_finished_blocks_are_kept() -> None:
    book = BlockBook("LocalProvider")
    for i in range(KEEP_TRANSITIONS + 5):
        book.observe("0", "1", "PENDING", raw_state=f"PD{i}", now=float(i))
    [block] = book.to_list({})
    assert len(block["transitions"]) == KEEP_TRANSITIONS
    assert block["transitions"][-1]["raw_state"] == f"PD{KEEP_TRANSITIONS + 4}"
    for i in range(1, KEEP_BLOCKS + 10):
        book.observe(str(i), str(i), "COMPLETED")
    ids = [b["block_id"] for b in book.to_list({})]
    # The running-or-waiting block 0 is never dropped; the oldest finished ones are.
    assert len(ids) == KEEP_BLOCKS and ids[0] == "0" and ids[-1] == str(KEEP_BLOCKS + 9)


class Squeue:
    """The scheduler's commands as a SchedulerWatch runs them: canned answers, or no answer."""

    def __init__(self) -> None:
        self.listed = ""
        self.scontrol: dict[str, str] = {}
        self.hang = False
        self.calls: list[str] = []

    def __call__(self, command: str, timeout: float | None) -> tuple[int, str, str]:
        import subprocess

        self.calls.append(command)
        if self.hang:
            raise subprocess.TimeoutExpired(command, timeout or 0)
        if command.startswith("scontrol"):
            job = command.split()[-1]
            if job not in self.scontrol:
                return 1, "", "slurm_load_jobs error: Invalid job id specified"
            return 0, f"JobId={job} JobName=x JobState={self.scontrol[job]} Reason=NonZeroExitCode ExitCode=1:0\n", ""
        return 0, self.listed, ""


ASK = "squeue --noheader --format='%i %t %r' --job '{}'"


def test_a_job_squeue_stops_listing_is_kept_one_poll_then_ended_as_scontrol_says_or_vanished() -> None:
    from gce.uep.accounting import VANISHED, SchedulerWatch

    squeue = Squeue()
    watch = SchedulerWatch("squeue", squeue)
    squeue.listed = "7 R None\n8 R None\n"
    assert watch.status_command(ASK.format("7,8"), 30)[1] == "7 R None\n8 R None\n"
    squeue.listed = ""
    squeue.scontrol = {"7": "FAILED"}
    assert watch.status_command(ASK.format("7,8"), 30)[1] == "7 R\n8 R\n"  # one poll: as they were
    assert [c.split()[0] for c in squeue.calls] == ["squeue", "squeue"]
    out = watch.status_command(ASK.format("7,8"), 30)[1]
    assert out == "7 F\n"  # 8 is in neither: parsl's guess (COMPLETED) is left to it
    assert watch["7"] == ("FAILED", "NonZeroExitCode")
    assert watch["8"][0] == VANISHED and "2 polls" in watch["8"][1]


def test_a_hanging_status_command_is_reported_and_parsl_keeps_what_it_had() -> None:
    from gce.uep.accounting import SchedulerWatch

    squeue = Squeue()
    watch = SchedulerWatch("squeue", squeue)
    squeue.listed = "7 R None\n"
    watch.status_command(ASK.format("7"), 30)
    assert watch.silent_since is None and watch.note() is None
    squeue.hang = True
    before = time.time()
    retcode, out, why = watch.status_command(ASK.format("7"), 30)
    assert (retcode, out) == (1, "") and why == "squeue did not answer within 30 s"
    since = watch.silent_since
    assert since is not None and since >= before
    assert watch.note() == f"scheduler not answering since {time.strftime('%H:%M:%S', time.localtime(since))} " \
                           "(squeue did not answer within 30 s)"
    watch.status_command(ASK.format("7"), 30)
    assert watch.silent_since == since  # since the first time
    squeue.hang = False
    watch.status_command(ASK.format("7"), 30)
    assert watch.silent_since is None and watch["7"] == ("R", "None")


def test_a_command_past_its_timeout_is_killed_with_its_children(tmp_path) -> None:
    import subprocess

    from gce.uep.accounting import run_command

    pidfile = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_command(f"sh -c 'echo $$ > {pidfile}; sleep 30'", 0.5)
    assert time.monotonic() - started < 5
    import psutil

    pid = int(pidfile.read_text())
    time.sleep(0.2)
    try:  # gone, or a zombie its new parent has not reaped yet
        assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        pass
    assert run_command("echo hi; echo err >&2; exit 3", 5) == (3, "hi\n", "err\n")
