"""gce list: every endpoint with its state, and why a stopped one failed."""

from __future__ import annotations

import json
import os
import socket

from gce.daemon import pidfile
from tests.commands.helpers import running


def _ids(home) -> dict[str, str]:
    return {p.name: json.loads((p / "endpoint.json").read_text())["endpoint_id"] for p in home.iterdir()}


def test_nothing_configured(gce, home):
    result = gce("list")
    assert result.exit_code == 0
    assert result.stdout == f"no endpoints are configured in {home}\n"
    assert result.stderr == "hint: gce configure NAME creates one\n"
    assert gce("list", "--json").stdout == "[]\n"


def test_table_of_stopped_failed_and_invalid_endpoints(gce, home, configured):
    configured("alpha", "--engine", "htex")
    configured("beta", "--engine", "thread")
    broken = configured("gamma")
    broken.config_file.write_text("broker: {url: amqp://h/v}\nengine: {type: Warp}\n")
    failing = configured("delta", "--engine", "process")
    failing.state_file.write_text(json.dumps({"state": "failed", "reason": "broker refused the login",
                                              "pid": 99999, "host": socket.gethostname()}))
    ids = _ids(home)
    result = gce("list")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    host = socket.gethostname()
    hw = max(4, len(host))
    assert result.stdout == (
        f"NAME   ENDPOINT ID                           STATE           PID  {'HOST':{hw}}  ENGINE   UPTIME\n"
        f"alpha  {ids['alpha']}  stopped         -    {'-':{hw}}  htex     -\n"
        f"beta   {ids['beta']}  stopped         -    {'-':{hw}}  thread   -\n"
        f"delta  {ids['delta']}  failed          -    {host:{hw}}  process  -\n"
        f"gamma  {ids['gamma']}  invalid config  -    {'-':{hw}}  -        -\n"
        "\n"
        "delta: failed: broker refused the login\n"
        "gamma: config.yaml is invalid: engine.type: 'Warp' is not one of ['HighThroughputEngine', "
        "'ProcessPoolEngine', 'ThreadPoolEngine', 'MPIEngine', 'GlobusMPIEngine']\n"
    )


def test_json(gce, home, configured):
    configured("alpha", "--display-name", "Alpha lab")
    broken = configured("gamma")
    broken.config_file.write_text("engine: [\n")
    ids = _ids(home)
    rows = json.loads(gce("list", "--json").stdout)
    assert rows == [
        {"name": "alpha", "endpoint_id": ids["alpha"], "display_name": "Alpha lab", "state": "stopped",
         "reason": "", "pid": None, "host": None, "engine_type": "ProcessPoolEngine", "started_at": None,
         "uptime": None, "config_error": None},
        {"name": "gamma", "endpoint_id": ids["gamma"], "display_name": None, "state": "stopped",
         "reason": "", "pid": None, "host": None, "engine_type": None, "started_at": None,
         "uptime": None, "config_error": rows[1]["config_error"]},
    ]
    assert rows[1]["config_error"].startswith("YAML error at line 2, column 1:")


def test_running_endpoint_shows_pid_host_and_uptime(gce, home, configured):
    paths = configured("live", "--engine", "thread")
    with running(paths, started_ago=2 * 3600 + 3 * 60 + 5):
        result = gce("list")
        rows = json.loads(gce("list", "--json").stdout)
    assert result.exit_code == 0
    host = socket.gethostname()
    line = result.stdout.splitlines()[1].split()
    assert line == ["live", _ids(home)["live"], "running", str(os.getpid()), host, "thread", "2h", "03m"]
    assert rows[0]["state"] == "running"
    assert rows[0]["pid"] == os.getpid()
    assert 7385 <= rows[0]["uptime"] < 7400


def test_manager_that_died_without_stopping_is_failed(gce, home, configured):
    paths = configured("crashed")
    with running(paths):
        pass  # the lock is released, the state file still says "running": the manager died
    assert pidfile.probe(paths).state == "failed"
    result = gce("list")
    assert "failed: the manager (pid" in result.stdout
    assert "exited without shutting down" in result.stdout
