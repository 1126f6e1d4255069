"""gce restart leaves a healthy endpoint alone when the new configuration could not start:
a misspelt engine or provider option, a wrong broker password, the placeholder broker URL.
Against the session's real broker, with a real endpoint started by the real program."""

from __future__ import annotations

import contextlib
from typing import Iterator

import pytest

from gce.config.writer import yaml_str
from gce.daemon import pidfile
from tests.endpoint import processes_under, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.slow]


@contextlib.contextmanager
def started(on_broker, gce_bin, home, name: str) -> Iterator[tuple]:
    """A thread-engine endpoint NAME running for real: yields (paths, url, pid)."""
    paths, url, _ = on_broker(name, "--engine", "thread")
    try:
        result = gce_bin("start", name, "--detach", "--timeout", "60")
        assert result.returncode == 0, result.stderr
        yield paths, url, pidfile.read_state(paths)["pid"]
    finally:
        gce_bin("stop", name)
        wait_until(lambda: not processes_under(home), timeout=30)


def still_running(gce_bin, paths, pid: int) -> bool:
    return gce_bin("status", paths.name).returncode == 0 and pidfile.read_state(paths)["pid"] == pid


@pytest.mark.parametrize(("engine", "why"), [
    ("engine: {type: HighThroughputEngine, max_worker_per_node: 2}\n",
     "engine.max_worker_per_node: HighThroughputEngine has no option 'max_worker_per_node' "
     "(did you mean 'max_workers_per_node'?)"),
    ("engine: {type: HighThroughputEngine, provider: {type: LocalProvider, max_block: 2}}\n",
     "engine.provider.max_block: LocalProvider has no option 'max_block' (did you mean 'max_blocks'?)"),
])
def test_a_misspelt_engine_option_leaves_the_running_endpoint_alone(on_broker, gce_bin, home, engine, why):
    with started(on_broker, gce_bin, home, "opt") as (paths, url, pid):
        paths.config_file.write_text(f"broker: {{url: {yaml_str(url)}}}\n{engine}")
        result = gce_bin("restart", "opt", "--timeout", "60")
        assert result.returncode == 78, result.stderr
        assert result.stderr == (f"error: invalid configuration in {paths.config_file}: {why}\n"
                                 f"hint: fix {paths.config_file} and try again; 'gce configure --help' "
                                 "shows the defaults\n")
        assert result.stdout == ""  # nothing was stopped
        assert still_running(gce_bin, paths, pid)


def test_a_wrong_broker_password_leaves_the_running_endpoint_alone(broker, on_broker, gce_bin, home):
    with started(on_broker, gce_bin, home, "pw") as (paths, url, pid):
        password = url.split(":")[2].split("@")[0]
        paths.config_file.write_text(paths.config_file.read_text().replace(password, "Wr0ng-guess"))
        result = gce_bin("restart", "pw", "--timeout", "60")
        assert result.returncode == 78, result.stderr
        user = url.split("//")[1].split(":")[0]
        assert result.stderr.startswith(
            f"error: cannot restart endpoint 'pw': the broker at 127.0.0.1:{broker.port} (virtual host "), result.stderr
        assert f"refused the login of user {user!r}: wrong user name or password; nothing was stopped\n" \
            in result.stderr
        assert "hint: check the password in broker.url" in result.stderr
        assert "Wr0ng-guess" not in result.stderr and password not in result.stderr
        assert result.stdout == ""
        assert still_running(gce_bin, paths, pid)

        paths.config_file.write_text(paths.config_file.read_text().replace("Wr0ng-guess", password))
        result = gce_bin("restart", "pw", "--timeout", "60")  # the right one: it does restart
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("endpoint pw stopped\nendpoint pw started (pid ")
        assert pidfile.read_state(paths)["pid"] != pid
