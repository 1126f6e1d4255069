"""gce logs: every source of an endpoint, merged in time order; -f until interrupted."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from gce import logview
from gce.config.paths import endpoint_paths
from tests.commands.conftest import GCE_BIN
from tests.endpoint import processes_under, wait_until


def test_lines_of_every_format_merge_in_time_order_and_keep_the_previous_time(gce, configured):
    paths = configured("mix", "--engine", "thread")
    paths.log_file.write_text(
        "2026-12-06 10:00:00,100 INFO manager[1] gce: first\n"
        "2026-12-06 10:00:03,000 ERROR manager[1] gce: third\n"
        "Traceback (most recent call last):\n"
        "2026-12-06 10:00:05,000 INFO manager[1] gce: fifth\n")
    paths.uep_log_dir.mkdir(parents=True, exist_ok=True)
    (paths.uep_log_dir / "default.log").write_text(
        "2026-12-06 10:00:02,000 INFO uep[2] gce.uep: second\n"
        "2026-12-06 10:00:04.500 interchange-like parsl time: fourth\n")
    result = gce("logs", "mix")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "manager: 2026-12-06 10:00:00,100 INFO manager[1] gce: first\n"
        "uep default: 2026-12-06 10:00:02,000 INFO uep[2] gce.uep: second\n"
        "manager: 2026-12-06 10:00:03,000 ERROR manager[1] gce: third\n"
        "manager: Traceback (most recent call last):\n"
        "uep default: 2026-12-06 10:00:04.500 interchange-like parsl time: fourth\n"
        "manager: 2026-12-06 10:00:05,000 INFO manager[1] gce: fifth\n")
    assert gce("logs", "mix", "-n", "2").stdout.splitlines() == result.stdout.splitlines()[-2:]
    since = gce("logs", "mix", "--since", "2026-12-06T10:00:03.5")
    assert [ln.rsplit(" ", 1)[-1] for ln in since.stdout.splitlines()] == ["fourth", "fifth"]


def test_since_takes_ages_and_refuses_nonsense(gce, configured):
    assert logview.parse_since("10m", now=1000.0) == 400.0
    assert logview.parse_since("2h", now=10000.0) == 2800.0
    assert logview.parse_since("2026-12-06T10:00:00+00:00") == 1796551200.0
    assert logview.parse_time("2026-12-06T10:00:00+0000 host gce[1]: x") == 1796551200.0
    assert logview.parse_time("1796551200.25 2026-12-06 10:00:00 MainProcess-1 interchange INFO: x") == 1796551200.25
    configured("s", "--engine", "thread")
    bad = gce("logs", "s", "--since", "yesterday")
    assert bad.exit_code == 64
    assert bad.stderr.startswith("error: cannot use --since 'yesterday': it is neither an ISO time nor an age\n")


def test_user_is_for_root_only_and_unreadable_sources_are_named(gce, monkeypatch, tmp_path_factory):
    # a GCE_HOME that nobody may enter: pytest's own tmp tree is root's alone (0700)
    home = Path(tempfile.mkdtemp(prefix="gce-logs-"))
    try:
        home.chmod(0o755)
        monkeypatch.setenv("GCE_HOME", str(home))
        assert gce("configure", "priv", "--engine", "thread", "--max-workers", "1").exit_code == 0
        paths = endpoint_paths("priv")
        paths.log_file.write_text("2026-12-06 10:00:00,000 INFO manager[1] gce: hello\n")
        paths.log_file.chmod(0o600)
        paths.config_dir.chmod(0o755)
        paths.config_file.chmod(0o644)
        env = {**os.environ, "GCE_HOME": str(home)}
        nobody = ["runuser", "-u", "nobody", "--", str(GCE_BIN), "logs", "priv"]
        refused = subprocess.run([*nobody, "--user", "root"], capture_output=True, text=True, env=env, timeout=60)
        assert refused.returncode == 77
        assert refused.stderr.startswith("error: cannot show another user's endpoints: only root may give --user\n")
        plain = subprocess.run(nobody, capture_output=True, text=True, env=env, timeout=60)
        assert plain.returncode == 0, plain.stderr
        assert plain.stdout == ""
        assert plain.stderr == f"gce logs: cannot read manager ({paths.log_file}): Permission denied\n"
    finally:
        shutil.rmtree(home)


@pytest.mark.broker
@pytest.mark.slow
def test_a_real_htex_endpoint_shows_manager_uep_and_interchange_and_follows(on_broker, gce_bin, home):
    paths, _url, _users = on_broker("real", "--engine", "htex")
    follower = None
    try:
        started = gce_bin("start", "real", "--detach", "--timeout", "60")
        assert started.returncode == 0, started.stderr
        wait_until(lambda: list((paths.state_dir / "uep").glob("*/interchange.log")), timeout=60)
        shown = gce_bin("logs", "real", "-n", "0")
        assert shown.returncode == 0, shown.stderr
        labels = {ln.split(": ", 1)[0] for ln in shown.stdout.splitlines()}
        assert {"manager", "uep default", "interchange"} <= labels, shown.stdout
        times = [logview.parse_time(ln.split(": ", 1)[1]) for ln in shown.stdout.splitlines()]
        stamped = [t for t in times if t is not None]
        assert stamped == sorted(stamped)

        follower = subprocess.Popen([str(GCE_BIN), "logs", "real", "-f", "-n", "1"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        out_lines: list[str] = []

        def read_out() -> None:
            for line in follower.stdout:
                out_lines.append(line)

        reader = threading.Thread(target=read_out, daemon=True)
        reader.start()
        # Its one line of history is printed after every file was read to its end: a line
        # appended from now on can only be seen by the follow loop, which prints all it gains.
        wait_until(lambda: out_lines, timeout=60)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S,000")
        added = f"manager: {stamp} INFO manager[0] test: a line written while following\n"
        with open(paths.log_file, "a") as f:
            f.write(f"{stamp} INFO manager[0] test: a line written while following\n")
        # Printed by the follow loop, so Ctrl-C now finds it in that loop.
        wait_until(lambda: added in out_lines, timeout=60)
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=30)
        reader.join(timeout=30)
        err = follower.stderr.read()
        assert follower.returncode == 130, err
        assert added in out_lines
        assert "Traceback" not in err
    finally:
        if follower is not None and follower.poll() is None:
            follower.kill()
            follower.wait()
        stopped = gce_bin("stop", "real")
    assert stopped.returncode == 0, stopped.stderr
    wait_until(lambda: not processes_under(home), timeout=30)


@pytest.fixture
def log_user():
    """A local account of this test's own, with a home; removed afterwards."""
    import pwd

    name = "gcetest-logs"
    subprocess.run(["userdel", "--remove", name], capture_output=True)  # a leftover of a killed run
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True, capture_output=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", "--remove", name], capture_output=True)


def test_root_reads_each_users_endpoints_and_user_limits_to_one(gce, configured, log_user, tmp_path):
    paths = configured("multi", "--multi-user")
    paths.log_file.write_text("2026-12-06 10:00:00,000 INFO manager[1] gce.daemon: started\n")
    home = Path(log_user.pw_dir)
    logs = home / ".gce" / "uep-logs" / "multi"
    run = home / ".gce" / "uep" / "multi" / "0123456789abcdef" / "htex"
    logs.mkdir(parents=True)
    run.mkdir(parents=True)
    (logs / "0123456789abcdef.log").write_text("2026-12-06 10:00:01,000 INFO uep[2] gce.uep: engine up\n")
    (run / "interchange.log").write_text("1796551202.0 2026-12-06 10:00:02 MainProcess-3 ic INFO: up\n")
    secret = tmp_path / "root-only"
    secret.write_text("2026-12-06 10:00:03,000 root's own line\n")
    (logs / "linked.log").symlink_to(secret)  # a user's link must not bring root's file in
    (logs / "planted.log").write_text("2026-12-06 10:00:04,000 a file the user does not own\n")
    for p in [home / ".gce", *(home / ".gce").rglob("*")]:
        if p.name != "planted.log":
            os.lchown(p, log_user.pw_uid, log_user.pw_gid)

    everything = gce("logs", "multi")
    assert everything.exit_code == 0, everything.stderr
    assert everything.stdout == (
        "manager: 2026-12-06 10:00:00,000 INFO manager[1] gce.daemon: started\n"
        "uep gcetest-logs/0123456789abcdef: 2026-12-06 10:00:01,000 INFO uep[2] gce.uep: engine up\n"
        "interchange gcetest-logs/0123456789abcdef: 1796551202.0 2026-12-06 10:00:02 MainProcess-3 ic INFO: up\n")
    assert everything.stderr == (f"gce logs: cannot read uep gcetest-logs/planted ({logs / 'planted.log'}): "
                                 f"not owned by uid {log_user.pw_uid}\n")
    one = gce("logs", "multi", "--user", "gcetest-logs")
    assert one.exit_code == 0, one.stderr
    assert [ln.split(": ", 1)[0] for ln in one.stdout.splitlines()] == [
        "uep gcetest-logs/0123456789abcdef", "interchange gcetest-logs/0123456789abcdef"]
    nobody = gce("logs", "multi", "--user", "gcetest-nosuch")
    assert nobody.exit_code == 64
    assert nobody.stderr.startswith("error: cannot show the logs of user 'gcetest-nosuch': there is no such local user\n")
