"""What gce status, gce list and the OpenMetrics output say of a user endpoint whose blocks kept
failing, from a manager's status reply (a real endpoint in that state: tests/daemon/test_breaker_endpoint.py)."""

from __future__ import annotations

import json

from tests.commands.helpers import answering, running

REASON = ("3 blocks in a row ended before a worker connected; the last, block 2 (job 41), exited with "
          "code 1\nstdout:\nsetting up\nstderr:\nworker_init: exit 1")
BREAKER = {"state": "blocks failing", "since": 1700000000.5, "reason": REASON, "failures": 3, "limit": 3,
           "block_id": "2", "job_id": "41", "exit_code": 1, "raw_state": "FAILED",
           "scheduler_reason": "NonZeroExitCode", "stdout_tail": "setting up", "stderr_tail": "worker_init: exit 1"}
SHORT = REASON.splitlines()[0]


def _status(name: str, ueps: list, state: str = "running", reason: str = "", blocks_failing: int = 1) -> dict:
    return {"ok": True, "name": name, "endpoint_id": "6f1c1f0e-0000-4000-8000-000000000001", "state": state,
            "reason": reason, "pid": 4242, "host": "login1", "uptime": 60.0, "gce_version": "0.1.0",
            "engine_type": "HighThroughputEngine", "broker": {"url": "amqp://x@b/gce", "connected": True},
            "tasks": {"received": 2, "completed": 0, "failed": 2, "in_flight": 0},
            "user_endpoints": ueps, "blocks_failing": blocks_failing}


def _uep(key: str, breaker: object = BREAKER) -> dict:
    return {"key": key, "pid": 4250, "state": "running", "reason": "", "python": "3.11.2", "in_flight": 0,
            "engine": {"type": "HighThroughputEngine", "blocks": 0, "managers": 0, "workers_total": 0,
                       "workers_idle": 0, "outstanding": 0, "running": 0, "done": 0, "failed": 2,
                       "breaker": breaker}}


PERSONAL = _status("demo", [_uep("default")], "degraded", f"blocks failing: {SHORT}")


def test_status_of_a_personal_endpoint_whose_blocks_fail_is_degraded_with_the_last_block(gce, configured):
    paths = configured("demo")
    with running(paths), answering(paths, {"status": PERSONAL}):
        result = gce("status", "demo")
    assert result.exit_code == 150
    lines = result.stdout.splitlines()
    assert lines[0] == f"endpoint demo is degraded: blocks failing: {SHORT}"
    assert "default        4250  blocks failing  0       0         0        0     0            0        0     2" \
        in lines
    assert lines[lines.index("USER ENDPOINT  PID   STATE           BLOCKS  MANAGERS  WORKERS  IDLE  OUTSTANDING  "
                             "RUNNING  DONE  FAILED") + 2:] == [
        f"user endpoint default: blocks failing: {SHORT}",
        "  last block 2 (job 41): exit code 1, scheduler state FAILED (NonZeroExitCode), 3 failed in a row (limit 3)",
        "  its stdout ended with:",
        "    setting up",
        "  its stderr ended with:",
        "    worker_init: exit 1",
    ]
    assert result.stderr == ("hint: fix the engine's worker_init or provider (the block's output above says why), "
                             "then: gce resume demo\n")


def test_status_json_carries_the_whole_breaker(gce, configured):
    paths = configured("demo")
    with running(paths), answering(paths, {"status": PERSONAL}):
        result = gce("status", "demo", "--json")
    assert result.exit_code == 150
    data = json.loads(result.stdout)
    assert data["user_endpoints"][0]["engine"]["breaker"] == BREAKER
    assert data["blocks_failing"] == 1


def test_openmetrics_has_a_blocks_failing_gauge_per_user_endpoint(gce, configured):
    paths = configured("demo")
    reply = _status("demo", [_uep("alice/1"), _uep("bob/2", None)])
    with running(paths), answering(paths, {"status": reply}):
        result = gce("status", "demo", "--format", "openmetrics")
    assert result.exit_code == 0
    assert ('# TYPE gce_user_endpoint_blocks_failing gauge\n'
            '# HELP gce_user_endpoint_blocks_failing 1 while the user endpoint\'s engine submits no blocks because '
            'its last ones failed one after the other (gce resume NAME after fixing its config).\n'
            'gce_user_endpoint_blocks_failing{endpoint="demo",uep="alice/1"} 1\n'
            'gce_user_endpoint_blocks_failing{endpoint="demo",uep="bob/2"} 0\n') in result.stdout


def test_status_of_a_multi_user_endpoint_names_the_users_failing_one_and_counts_the_others(gce, configured):
    paths = configured("demo")
    reply = _status("demo", [_uep("alice/1")], blocks_failing=3)  # as peer_view gives alice her own
    with running(paths), answering(paths, {"status": reply}):
        result = gce("status", "demo")
    assert result.exit_code == 0
    assert f"user endpoint alice/1: blocks failing: {SHORT}" in result.stdout.splitlines()
    assert result.stdout.splitlines()[-1] == "2 user endpoint(s) of other users have failing blocks too"


def test_list_shows_a_personal_endpoint_degraded_once_and_says_what_to_do(gce, configured):
    paths = configured("demo")
    with running(paths), answering(paths, {"status": PERSONAL}):
        result = gce("list")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[1].split()[2] == "degraded"
    assert result.stdout.splitlines()[-1] == f"demo: degraded: blocks failing: {SHORT}"
    assert result.stdout.count("blocks failing") == 1
    assert result.stderr == ("hint: fix the engine's worker_init or provider (gce status demo shows the last "
                             "block's output), then: gce resume demo\n")
    with running(paths), answering(paths, {"status": PERSONAL}):
        row = json.loads(gce("list", "--json").stdout)[0]
    assert (row["state"], row["blocks_failing"]) == ("degraded", [{"uep": "default", "reason": SHORT}])


def test_list_names_each_failing_user_endpoint_of_a_multi_user_endpoint(gce, configured):
    paths = configured("demo")
    reply = _status("demo", [_uep("alice/1"), _uep("alice/2", None)], blocks_failing=2)
    with running(paths), answering(paths, {"status": reply}):
        result = gce("list")
    assert result.stdout.splitlines()[1].split()[2] == "running"
    assert result.stdout.splitlines()[-2:] == [f"demo: user endpoint alice/1: blocks failing: {SHORT}",
                                               "demo: 1 user endpoint(s) of other users: blocks failing"]
