"""gce blocks: a running endpoint's blocks as a table and as JSON, per user, and its errors."""

from __future__ import annotations

import json
import time

import pytest

from gce import __version__
from gce.commands import blocks
from gce.daemon.client import EndpointStatus
from tests.commands.helpers import running
from tests.commands.helpers import answering

NOW = 1_800_000_000.0
HOSTILE = "[bold red]x[/] \x1b]0;pwned\x07\x1b[2J"


def block(block_id: str, **fields) -> dict:
    return {"block_id": block_id, "provider": "SlurmProvider", "workers": 0, **fields}


def status(now: float = NOW) -> dict:
    return {
        "ok": True, "name": "hpc", "state": "running", "gce_version": __version__,
        "user_endpoints": [
            {"key": "alice/3f2a", "state": "running", "engine": {
                "type": "HighThroughputEngine", "blocks": 2,
                "block_list": [
                    block("0", job_id="1234", state="running", raw_state="RUNNING", reason="", workers=4,
                          submitted_at=now - 125, walltime="00:10:00", walltime_left=475.0,
                          transitions=[{"at": now - 125, "state": "pending", "raw_state": "PENDING",
                                        "reason": "Priority"},
                                       {"at": now - 100, "state": "running", "raw_state": "RUNNING", "reason": ""}],
                          submit_script="/home/alice/.gce/runinfo/parsl.htex.block-0.submit"),
                    block("1", job_id="1235", state="pending", raw_state="PENDING", reason="Resources",
                          submitted_at=now - 30),
                ]}},
            {"key": "bob/77aa", "state": "running", "engine": {
                "type": "HighThroughputEngine", "block_states": {"0": "FAILED"},
                "error": "the interchange did not answer within 2 s"}},
        ],
    }


def ueps(data: dict):
    return list(EndpointStatus.from_dict(data).user_endpoints)


def test_block_rows_show_state_scheduler_word_age_and_walltime_left():
    assert blocks.block_rows(ueps(status()), NOW) == [
        ["alice/3f2a", "0", "1234", "SlurmProvider", "running", "2m 05s", "7m 55s", 4, ""],
        ["alice/3f2a", "1", "1235", "SlurmProvider", "pending", "30s", None, 0, "Resources"],
        ["bob/77aa", "0", None, None, "failed", None, None, None, None],  # an engine that reports states only
    ]


def test_a_block_whose_scheduler_word_differs_shows_both():
    data = status()
    data["user_endpoints"][0]["engine"]["block_list"][0].update(state="vanished", raw_state="COMPLETING")
    assert blocks.block_rows(ueps(data), NOW)[0][4] == "vanished (COMPLETING)"


def test_gce_blocks_prints_the_table(gce, configured):
    paths = configured("hpc")
    with running(paths), answering(paths, {"status": status(time.time())}) as requests:
        result = gce("blocks", "hpc")
    assert requests == [{"command": "status", "args": {}}]
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["USER", "ENDPOINT", "BLOCK", "JOB", "PROVIDER", "STATE", "AGE", "WALLTIME", "LEFT",
                                "WORKERS", "REASON"]
    assert lines[1].split()[:5] == ["alice/3f2a", "0", "1234", "SlurmProvider", "running"]
    assert lines[1].split()[-2:] == ["4", "-"]
    assert lines[2].split()[:5] == ["alice/3f2a", "1", "1235", "SlurmProvider", "pending"]
    assert lines[2].split()[-2:] == ["0", "Resources"]
    assert lines[3].split() == ["bob/77aa", "0", "-", "-", "failed", "-", "-", "-", "-"]
    assert len(lines) == 4
    assert result.stderr == ("warning: user endpoint bob/77aa: its engine did not say all about its blocks: "
                             "the interchange did not answer within 2 s\n")


def test_gce_blocks_json_has_every_transition_and_path(gce, configured):
    paths = configured("hpc")
    data = status()
    with running(paths), answering(paths, {"status": data}):
        result = gce("blocks", "hpc", "--json")
    assert result.exit_code == 0, result.stderr
    found = json.loads(result.stdout)
    assert [(b["user_endpoint"], b["block_id"], b["job_id"]) for b in found] == [("alice/3f2a", "0", "1234"),
                                                                                ("alice/3f2a", "1", "1235")]
    sent = data["user_endpoints"][0]["engine"]["block_list"][0]
    assert found[0]["transitions"] == sent["transitions"]
    assert found[0]["submit_script"] == sent["submit_script"]
    assert found[0]["walltime"] == "00:10:00"


def test_gce_blocks_user_keeps_that_users_blocks(gce, configured):
    paths = configured("hpc")
    with running(paths), answering(paths, {"status": status()}):
        bob = gce("blocks", "hpc", "--user", "bob")
        carol = gce("blocks", "hpc", "--user", "carol")
        alice = json.loads(gce("blocks", "hpc", "--user", "alice", "--json").stdout)
    assert [ln.split()[0] for ln in bob.stdout.splitlines()[1:]] == ["bob/77aa"]
    assert carol.exit_code == 0
    assert carol.stdout == "endpoint hpc has no blocks of user carol (none of its user endpoints is carol's)\n"
    assert {b["user_endpoint"] for b in alice} == {"alice/3f2a"}


def test_a_personal_endpoints_user_endpoint_is_its_owners(gce, configured):
    import getpass

    paths = configured("mine")
    data = {"ok": True, "name": "mine", "state": "running", "gce_version": __version__,
            "user_endpoints": [{"key": "default", "state": "running",
                                "engine": {"block_list": [block("0", state="running")]}}]}
    with running(paths), answering(paths, {"status": data}):
        own = gce("blocks", "mine", "--user", getpass.getuser())
        other = gce("blocks", "mine", "--user", "nobody-else")
    assert own.stdout.splitlines()[1].split()[:2] == ["default", "0"]
    assert other.stdout.startswith("endpoint mine has no blocks of user nobody-else")


def test_no_blocks_is_said(gce, configured):
    paths = configured("demo")
    data = {"ok": True, "name": "demo", "state": "running", "gce_version": __version__, "user_endpoints": []}
    with running(paths), answering(paths, {"status": data}):
        result = gce("blocks", "demo")
        as_json = gce("blocks", "demo", "--json")
    assert (result.exit_code, result.stdout) == (0, "endpoint demo has no blocks\n")
    assert json.loads(as_json.stdout) == []


def test_user_text_is_shown_literally(gce, configured):
    paths = configured("hpc")
    data = status()
    data["user_endpoints"][0]["engine"]["block_list"][1]["reason"] = HOSTILE
    with running(paths), answering(paths, {"status": data}):
        result = gce("blocks", "hpc")
    assert result.exit_code == 0
    # the markup is text; the escape sequences (a new terminal title, a cleared screen) are gone whole
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout and "pwned" not in result.stdout
    assert result.stdout.splitlines()[2].endswith("  0        [bold red]x[/]")


def test_a_stopped_endpoint_is_exit_3_and_an_unknown_one_78(gce, configured, home):
    configured("demo")
    stopped = gce("blocks", "demo")
    assert (stopped.exit_code, stopped.stdout) == (3, "")
    assert stopped.stderr == "error: endpoint 'demo' is not running: it is stopped\nhint: gce start demo --detach\n"
    unknown = gce("blocks", "nope")
    assert (unknown.exit_code, unknown.stdout) == (78, "")
    assert unknown.stderr.startswith("error: no endpoint named 'nope': ")


@pytest.mark.broker
def test_gce_blocks_of_a_real_htex_endpoint(broker, home, gce_bin):
    from tests.endpoint import Endpoint, wait_until

    endpoint = Endpoint(broker, home, name="blk", engine="htex")
    endpoint.start()
    try:
        with endpoint.executor() as ex:
            assert ex.submit(pow, 2, 5).result(timeout=120) == 32

        def a_running_block() -> list[str] | None:
            result = gce_bin("blocks", "blk")
            assert result.returncode == 0, result.stderr
            rows = [ln.split() for ln in result.stdout.splitlines()[1:]]
            return rows if any(r[:2] == ["default", "0"] and r[4] == "running" for r in rows) else None

        rows = wait_until(a_running_block, timeout=30, interval=0.5)
        as_json = gce_bin("blocks", "blk", "--json")
    finally:
        endpoint.stop()
    assert rows[0][:2] == ["default", "0"]
    assert as_json.returncode == 0 and isinstance(json.loads(as_json.stdout), list)
