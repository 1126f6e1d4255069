"""gce start / stop / restart without a broker: what they refuse, and stop of a stopped endpoint.

Starting for real needs a broker; tests/daemon covers that with the launcher itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from gce.daemon import pidfile
from tests.commands.conftest import GCE_BIN
from tests.commands.helpers import running
from tests.endpoint import processes_under, wait_until


def test_stop_when_not_running_is_fine(gce, configured):
    configured("demo")
    result = gce("stop", "demo")
    assert result.exit_code == 0
    assert result.stdout == "endpoint demo is not running\n"
    assert result.stderr == ""


def test_unknown_endpoint_cannot_be_started_stopped_or_restarted(gce, home):
    for args in (["start", "nope"], ["start", "nope", "--detach"], ["stop", "nope"], ["restart", "nope"]):
        result = gce(*args)
        assert result.exit_code == 78, args
        assert result.stderr == (
            f"error: no endpoint named 'nope': {home}/nope/config.yaml does not exist\n"
            "hint: gce list shows the configured endpoints; gce configure nope creates this one\n"
        )


def test_start_detach_refuses_an_invalid_config(gce, configured):
    paths = configured("demo")
    paths.config_file.write_text("broker: {url: amqp://h/v}\nengine: {type: ThreadPoolEngine, max_workers: 0}\n")
    result = gce("start", "demo", "--detach", "--timeout", "5")
    assert result.exit_code == 78
    assert result.stderr == (
        f"error: invalid configuration in {paths.config_file}: engine.max_workers: 0 is less than the minimum of 1\n"
        f"hint: fix {paths.config_file} and try again; 'gce configure --help' shows the defaults\n"
    )


def test_start_detach_refuses_a_running_endpoint(gce, configured):
    paths = configured("demo", "--engine", "thread")
    with running(paths):
        result = gce("start", "demo", "--detach")
    assert result.exit_code == 73
    assert result.stderr.startswith(f"error: endpoint 'demo' is already running: pid {os.getpid()}")


def test_restart_checks_the_config_before_stopping(gce, configured):
    paths = configured("demo")
    paths.config_file.write_text("engine: {type: ThreadPoolEngine}\n")
    with running(paths):
        result = gce("restart", "demo")
        assert result.exit_code == 78
        assert result.stderr.startswith(f"error: invalid configuration in {paths.config_file}: ")
        assert result.stdout == ""  # nothing was stopped


def test_bad_timeouts_are_usage_errors(gce, configured):
    configured("demo")
    assert gce("start", "demo", "--detach", "--timeout", "0").exit_code == 2
    assert gce("stop", "demo", "--timeout", "-1").exit_code == 2


@pytest.mark.broker
@pytest.mark.slow
def test_start_status_list_restart_stop_for_real(broker, gce, gce_bin, on_broker, home, tmp_path):
    """The whole life of an endpoint through the real entry point, against the session broker."""
    paths, url, _users = on_broker("life", "--engine", "thread", users=("alice",))
    endpoint_id = json.loads(paths.endpoint_json.read_text())["endpoint_id"]
    password = url.split(":")[2].split("@")[0]
    try:
        started = gce_bin("start", "life", "--detach", "--timeout", "60")
        assert started.returncode == 0, started.stderr
        pid = pidfile.read_state(paths)["pid"]
        assert started.stdout == (
            f"endpoint life started (pid {pid}, id {endpoint_id}); logs: {paths.log_file}\n"
            "see it with: gce status life; stop it with: gce stop life\n"
        )

        status = gce_bin("status", "life")
        assert status.returncode == 0, status.stderr
        assert status.stdout.startswith("endpoint life is running\n")
        assert f"  pid          {pid} on " in status.stdout
        assert "(connected)" in status.stdout
        assert password not in status.stdout
        data = json.loads(gce_bin("status", "life", "--json").stdout)
        assert (data["state"], data["endpoint_id"], data["pid"]) == ("running", endpoint_id, pid)

        row = json.loads(gce_bin("list", "--json").stdout)[0]
        assert (row["state"], row["pid"], row["engine_type"]) == ("running", pid, "ThreadPoolEngine")

        again = gce_bin("start", "life", "--detach")
        assert again.returncode == 73
        assert again.stderr.startswith("error: endpoint 'life' is already running")

        restarted = gce_bin("restart", "life", "--timeout", "60")
        assert restarted.returncode == 0, restarted.stderr
        assert restarted.stdout.startswith("endpoint life stopped\nendpoint life started (pid ")
        assert pidfile.read_state(paths)["pid"] != pid
    finally:
        stopped = gce_bin("stop", "life")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout == "endpoint life stopped\n"
    assert gce_bin("status", "life").returncode == 3
    wait_until(lambda: not processes_under(home), timeout=30)


@pytest.mark.broker
@pytest.mark.slow
def test_foreground_start_runs_until_interrupted(on_broker, gce_bin, home):
    paths, url, _users = on_broker("fg", "--engine", "thread")
    proc = subprocess.Popen([str(GCE_BIN), "start", "fg"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_until(lambda: gce_bin("status", "fg").returncode == 0 or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out == ""
    assert url.split(":")[2].split("@")[0] not in err  # the log on stderr shows no password
    assert gce_bin("status", "fg").returncode == 3
    wait_until(lambda: not processes_under(home), timeout=30)


def test_start_detach_refuses_an_option_parsl_does_not_take(gce, configured):
    """Checked against parsl's signatures before the manager forks, not as a TypeError in it."""
    paths = configured("demo", "--engine", "htex")
    paths.config_file.write_text(paths.config_file.read_text().replace("min_blocks:", "min_block:"))
    result = gce("start", "demo", "--detach", "--timeout", "5")
    assert result.exit_code == 78
    assert result.stderr.startswith(
        f"error: invalid configuration in {paths.config_file}: engine.provider.min_block: LocalProvider has no "
        "option 'min_block' (did you mean 'min_blocks'?)\n")


def test_the_placeholder_broker_url_says_no_broker_is_configured(gce, gce_bin, home):
    """Not the broker's refusal of a 'guest' user nobody typed."""
    assert gce("configure", "demo", "--no-input", "--engine", "thread").exit_code == 0
    config = home / "demo" / "config.yaml"
    expected = (
        f"error: no broker is configured for endpoint 'demo': broker.url in {config} is still the placeholder "
        "gce configure wrote, which names no broker account\n"
        f"hint: write the endpoint's broker URL in broker.url of {config} (amqps://USER:PASSWORD@HOST:5671/VHOST; "
        "gce broker provision --help shows how to create its account), then try again\n"
    )
    for args in (["start", "demo", "--detach", "--timeout", "5"], ["restart", "demo", "--timeout", "5"]):
        result = gce(*args)
        assert (result.exit_code, result.stdout, result.stderr) == (78, "", expected), args
    foreground = gce_bin("start", "demo")
    assert (foreground.returncode, foreground.stderr) == (78, expected)


def test_a_broker_url_without_an_account_is_refused_too(gce, configured):
    paths = configured("demo", "--engine", "thread", "--broker-url", "amqp://broker.example.org/gce")
    result = gce("start", "demo", "--detach", "--timeout", "5")
    assert result.exit_code == 78
    assert result.stderr.startswith(
        f"error: no broker is configured for endpoint 'demo': broker.url in {paths.config_file} names no broker "
        "account (the broker would take it for its 'guest' user)\n")


def test_restart_with_no_broker_to_log_in_to_stops_nothing(gce, configured):
    import socket

    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    configured("demo", "--engine", "thread", "--broker-url", f"amqp://ep:pw@127.0.0.1:{port}/gce")
    result = gce("restart", "demo", "--timeout", "5")
    assert result.exit_code == 69
    assert result.stdout == ""
    assert result.stderr == (
        f"error: cannot restart endpoint 'demo': cannot connect to 127.0.0.1 port {port}: 127.0.0.1: Connection "
        "refused; nothing was stopped\n"
        f"hint: is RabbitMQ running and listening on port {port} of 127.0.0.1? is a firewall in the way? "
        "(AMQP uses 5672, AMQP over TLS 5671)\n")
