"""gce enable-on-boot under a real systemd (a booted Debian container): a system endpoint as
root and a personal endpoint in a lingering user's manager, through a kill -9, a reboot, a
broken configuration and disable-on-boot.

The tests of this module run in order on one container and two endpoints, as an admin
would meet them: each test leaves the state the next one starts from.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.endpoint import wait_until
from tests.systemd.conftest import USER

pytestmark = [pytest.mark.systemd, pytest.mark.broker, pytest.mark.slow]

GCE = str(Path(sys.executable).parent / "gce")  # the same path inside the container (bind mount)


def square(x):
    return x * x


def systemctl(ep) -> str:
    return "systemctl --user" if ep.user else "systemctl"


def runs_a_task(ep, x: int) -> None:
    with ep.executor() as ex:
        assert ex.submit(square, x).result(timeout=60) == x * x


def active(machine, ep) -> dict[str, str]:
    return machine.wait_active(ep.unit, user=ep.user)


def cgroup_pids(machine, ep) -> set[int]:
    """The processes of the unit (its cgroup), from /proc inside the container."""
    found = machine.run(f"grep -l {shlex.quote('/' + ep.unit + '$')} /proc/[0-9]*/cgroup", check=False).stdout
    return {int(line.split("/")[2]) for line in found.split()}


@pytest.fixture(scope="module")
def endpoints(inside_endpoint, linger_user):
    """A system endpoint and a lingering user's endpoint, configured (not yet enabled)."""
    return [inside_endpoint("ep-sys"), inside_endpoint("ep-user", user=linger_user)]


def test_enable_on_boot_starts_a_ready_notify_service_with_live_status(machine, endpoints):
    for ep in endpoints:
        started = time.monotonic()
        done = machine.run(f"{GCE} enable-on-boot {ep.name}", user=ep.user)
        assert done.stdout.startswith(f"endpoint {ep.name} runs as {ep.unit} and starts at boot\n"
                                      f"status: 0 tasks received, 0 completed"), done.stdout
        assert "loginctl enable-linger" not in done.stderr  # lingering is on for this user
        print(f"enable-on-boot {ep.name}: {time.monotonic() - started:.1f} s")
        state = active(machine, ep)
        assert state["NRestarts"] == "0" and "broker connected" in state["StatusText"]

    system, user = endpoints
    unit_file = "/etc/systemd/system/gce-endpoint@.service"
    assert machine.run(f"grep -x 'ExecStart={GCE} start %i' {unit_file}").returncode == 0
    wants = machine.run("readlink /etc/systemd/system/multi-user.target.wants/gce-endpoint@ep-sys.service")
    assert wants.stdout.strip() == unit_file
    # The unit as installed passes systemd's own checks, in the container's systemd too.
    verify = machine.run(f"systemd-analyze verify /etc/systemd/system/{system.unit}", check=False)
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    user_file = f"/home/{USER}/.config/systemd/user/gce-endpoint@.service"
    assert machine.run(f"test -f {user_file} && test -L /home/{USER}/.config/systemd/user/default.target.wants/"
                       f"{user.unit}").returncode == 0

    # The manager's WATCHDOG=1 pings reach systemd: the time of the last one moves on.
    def last_ping() -> int:
        return int(machine.show(system.unit, "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"])

    first = last_ping()
    wait_until(lambda: last_ping() > first, timeout=15)

    for ep in endpoints:
        runs_a_task(ep, 7)
        wait_until(lambda: "1 tasks received, 1 completed, 0 failed, 0 in flight" in
                   machine.show(ep.unit, "StatusText", user=ep.user)["StatusText"], timeout=10)
    # A system endpoint logs to the journal, with priorities, and not to a file.
    journal = machine.run(f"journalctl -u {system.unit} -p info..info -o cat --no-pager").stdout
    assert f"INFO gce.daemon: endpoint ep-sys ({system.endpoint_id}) is ready" in journal
    assert machine.run("test -e /var/log/gce/ep-sys.log", check=False).returncode == 1
    assert machine.run("stat -c %a /var/log/gce /run/gce").stdout.split() == ["750", "755"]


def test_gce_diagnostic_under_systemd_checks_the_unit_and_reads_its_journal(machine, endpoints):
    """gce diagnostic in the container, endpoints active: the unit check names the unit, the log
    check shows the unit's journal (the manager logs nowhere else), the bundle holds it too."""
    system, user = endpoints
    done = machine.run(f"cd /tmp && {GCE} diagnostic --endpoint {system.name} --json --bundle", check=False)
    assert done.returncode == 0, done.stdout + done.stderr  # warnings alone exit 0
    rows = {r["check"]: r for r in json.loads(done.stdout) if r["endpoint"] == system.name}
    assert (rows["systemd unit"]["status"], rows["systemd unit"]["reason"]) == (
        "PASS", "gce-endpoint@ep-sys is enabled and active")
    assert rows["systemd unit"]["details"]["unit"] == "gce-endpoint@ep-sys"
    log = rows["log"]
    assert log["status"] == "PASS", log
    assert log["reason"].startswith(f"the journal of {system.unit}: no errors in the last ")
    assert log["details"]["source"] == "journal"
    ready = f"INFO gce.daemon: endpoint ep-sys ({system.endpoint_id}) is ready"
    assert any(ready in line for line in log["details"]["tail"]), log["details"]["tail"]
    for check in ("process", "control socket", "broker login", "broker queue", "broker publish"):
        assert rows[check]["status"] == "PASS", rows[check]
    archive = done.stderr.strip().removeprefix("bundle written: ")
    listing = machine.run(f"tar -xzOf {archive} --wildcards '*/logs/journal-{system.unit}.log'").stdout
    assert ready in listing
    machine.run(f"rm {archive}")

    # A user's endpoint: a unit of the user's own manager, its journal read with --user.
    mine = machine.run(f"cd /tmp && {GCE} diagnostic --endpoint {user.name} --json", user=user.user, check=False)
    assert mine.returncode == 0, mine.stdout + mine.stderr
    rows = {r["check"]: r for r in json.loads(mine.stdout) if r["endpoint"] == user.name}
    assert (rows["systemd unit"]["status"], rows["systemd unit"]["reason"]) == (
        "PASS", "gce-endpoint@ep-user is enabled and active")
    assert rows["log"]["details"]["unit"] == user.unit  # the journal, not a log file
    print(f"log check of {user.name}: {rows['log']['status']}: {rows['log']['reason']}")


def test_gce_logs_under_systemd_reads_a_system_endpoints_journal(machine, endpoints):
    """A system endpoint under systemd logs to its unit's journal only: gce logs shows it from there,
    as manager lines in time order."""
    system, _user = endpoints
    done = machine.run(f"cd /tmp && {GCE} logs {system.name} -n 0", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert machine.run(f"test -e /var/log/gce/{system.name}.log", check=False).returncode == 1  # no file read
    ready = f"INFO gce.daemon: endpoint ep-sys ({system.endpoint_id}) is ready"
    lines = done.stdout.splitlines()
    assert any(line.startswith("manager: ") and ready in line for line in lines), done.stdout[-2000:]


def shadow_via_setgid_tool():
    """Run chage, setgid shadow, on one's own account: it reads /etc/shadow only if setgid works."""
    import os
    import pwd
    import subprocess

    me = pwd.getpwuid(os.getuid()).pw_name
    proc = subprocess.run(["/usr/bin/chage", "-l", me], capture_output=True, text=True)
    return os.getuid(), proc.returncode, proc.stdout + proc.stderr


def test_the_hardening_lets_multi_user_endpoints_drop_privileges_and_users_run_setgid_tools(
        machine, endpoints, inside_endpoint, linger_user):
    """The system unit keeps setuid/setgid working for the users' tasks (site tools need it) and
    the privilege drop working for the manager; the user unit forbids new privileges."""
    mu = inside_endpoint("ep-multi", multi_user=True)
    d = mu.config_file.parent
    # What the admin edits after gce configure --multi-user: who maps to whom, and (to keep the
    # test short) a thread-pool engine in the template instead of parsl's.
    (d / "identity_mapping.json").write_text(json.dumps({"DATA_TYPE": "expression_identity_mapping#1.0.0",
        "mappings": [{"source": "{username}", "match": "alice", "output": linger_user}]}))
    (d / "user_config_template.yaml.j2").write_text("engine:\n  type: ThreadPoolEngine\n  max_workers: 1\n")
    machine.run(f"{GCE} enable-on-boot {mu.name}")
    try:
        uid = int(machine.run(f"id -u {linger_user}").stdout)
        with mu.executor() as ex:
            assert ex.submit(shadow_via_setgid_tool).result(timeout=60)[:2] == (uid, 0)
        with endpoints[1].executor() as ex:
            got_uid, rc, out = ex.submit(shadow_via_setgid_tool).result(timeout=60)
        assert (got_uid, rc, out) == (uid, 1, "chage: cannot open /etc/shadow\n")  # NoNewPrivileges=yes
    finally:
        machine.run(f"{GCE} disable-on-boot {mu.name}")


def test_kill_9_of_a_manager_is_restarted_by_systemd_and_tasks_flow_again(machine, endpoints):
    before = {}
    for ep in endpoints:
        state = active(machine, ep)
        before[ep.name] = (state["MainPID"], cgroup_pids(machine, ep))
        assert len(before[ep.name][1]) >= 2  # the manager and its user endpoint
        machine.run(f"kill -9 {state['MainPID']}")
    for ep in endpoints:  # both restart in parallel: RestartSec=5
        wait_until(lambda: machine.show(ep.unit, "NRestarts", user=ep.user)["NRestarts"] == "1", timeout=30)
        state = active(machine, ep)
        main_pid, old = before[ep.name]
        assert state["MainPID"] != main_pid
        assert not old & cgroup_pids(machine, ep)  # KillMode=mixed: the old user endpoint went too
        runs_a_task(ep, 8)


def test_after_a_reboot_both_endpoints_are_active_again(machine, endpoints):
    started = time.monotonic()
    machine.reboot()
    print(f"reboot: {time.monotonic() - started:.1f} s")
    for ep in endpoints:
        state = active(machine, ep)
        assert state["NRestarts"] == "0"
        runs_a_task(ep, 9)


def test_a_broken_config_fails_the_unit_with_the_reason_and_no_restart_loop(machine, endpoints):
    for ep in endpoints:
        active(machine, ep)
        good = ep.config_file.read_text()
        ep.config_file.write_text(good + "no_such_key: 1\n")
        restart = machine.run(f"{systemctl(ep)} restart {ep.unit}", user=ep.user, check=False)
        assert restart.returncode != 0
        state = machine.show(ep.unit, "ActiveState", "SubState", "Result", "ExecMainStatus", "NRestarts",
                             user=ep.user)
        # "failed", not "activating (auto-restart)": RestartPreventExitStatus=78 stopped the loop.
        assert state == {"ActiveState": "failed", "SubState": "failed", "Result": "exit-code",
                         "ExecMainStatus": "78", "NRestarts": "0"}
        status = machine.run(f"{systemctl(ep)} status --no-pager -n 20 {ep.unit}", user=ep.user, check=False)
        config = "/etc/gce/ep-sys" if ep.user is None else f"/home/{USER}/.gce/ep-user"
        assert f"error: invalid configuration in {config}/config.yaml: (top level)" in status.stdout, status.stdout
        assert "status=78/CONFIG" in status.stdout
        ep.config_file.write_text(good)


def test_enable_on_boot_refuses_an_endpoint_running_outside_systemd(machine, endpoints):
    system = endpoints[0]
    machine.run(f"{GCE} start --detach {system.name}")
    try:
        refused = machine.run(f"{GCE} enable-on-boot {system.name}", check=False)
        assert refused.returncode == 73
        assert f"error: endpoint '{system.name}' is running outside systemd" in refused.stderr
        assert f"hint: gce stop {system.name}, then gce enable-on-boot {system.name}" in refused.stderr
    finally:
        machine.run(f"{GCE} stop {system.name}")


def test_disable_on_boot_stops_and_leaves_nothing_behind(machine, endpoints, inside_endpoint):
    other = inside_endpoint("ep-other")  # a second instance of the system template
    machine.run(f"{GCE} enable-on-boot {other.name}")
    for ep in [*endpoints, other]:
        done = machine.run(f"{GCE} disable-on-boot {ep.name}", user=ep.user)
        assert done.stdout.startswith(f"endpoint {ep.name} is stopped and no longer starts at boot\n")
        if ep is endpoints[0]:
            assert done.stdout.endswith("kept /etc/systemd/system/gce-endpoint@.service: endpoint(s) ep-other "
                                        "still use it\n"), done.stdout
        state = machine.show(ep.unit, "ActiveState", "LoadState", user=ep.user)
        template_kept = ep is endpoints[0]
        assert state == {"ActiveState": "inactive", "LoadState": "loaded" if template_kept else "not-found"}
    leftovers = machine.run(f"find /etc/systemd /home/{USER}/.config/systemd -name '*gce*'").stdout
    assert leftovers == ""
    assert machine.run("systemctl list-units --all --no-legend 'gce-endpoint@*'").stdout == ""
    assert machine.run("pgrep -f '[g]ce[.]uep'", check=False).returncode == 1  # no process left


def test_without_a_running_systemd_root_gets_the_unit_and_the_commands(rootfs_tarball, tmp_path):
    """Where systemd does not run (an image being built: a chroot), the unit is written and the
    commands are printed, on stdout alone so they can be piped to sh."""
    from tests.systemd.container import Machine

    image = Machine(tmp_path / "image")
    try:
        image.unpack(rootfs_tarball)
        root = image.root
        (root / "etc/gce/offline").mkdir(parents=True)
        (root / "etc/gce/offline/config.yaml").write_text(
            "broker:\n  url: amqp://ep:pw@127.0.0.1:1/gce\nengine:\n  type: ThreadPoolEngine\n")
        (root / "var/lib/gce/offline").mkdir(parents=True)
        (root / "var/lib/gce/offline/endpoint.json").write_text(json.dumps({"endpoint_id": str(uuid.uuid4())}))
        project = Path(__file__).resolve().parents[2]
        (root / project.relative_to("/")).mkdir(parents=True)
        script = f'mount --bind -o ro {project} {root}{project} && exec chroot {root} "$@"'
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                               "env", "-i", "PATH=/usr/bin:/bin", "HOME=/root", "NO_COLOR=1", "COLUMNS=200",
                               GCE, "enable-on-boot", "offline"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "systemctl daemon-reload\nsystemctl enable --now gce-endpoint@offline.service\n"
        assert done.stderr == ("warning: systemd does not run here: endpoint offline is not running and will not "
                               "start at boot; only /etc/systemd/system/gce-endpoint@.service was written. Where "
                               "systemd runs, enable and start it with:\n")
        from gce.commands.enable_on_boot import render_unit

        assert (root / "etc/systemd/system/gce-endpoint@.service").read_text() == render_unit(False, GCE, None)
    finally:
        image.destroy()
