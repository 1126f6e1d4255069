"""gce enable-on-boot / disable-on-boot without a running systemd: the units, the files, the
commands printed. tests/systemd/test_boot.py runs the same commands under a real systemd."""

from __future__ import annotations

import inspect
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from gce.commands import enable_on_boot as eob
from gce.daemon import launcher
from gce.errors import EX_CONFIG, ConfigError, UsageError
from tests.commands.conftest import GCE_BIN

VERIFY = shutil.which("systemd-analyze")


def settings(text: str) -> dict[str, list[str]]:
    """KEY -> values of a unit file (keys may repeat)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def verify(unit_dir: Path, user: bool, instance: str = "gce-endpoint@my-ep.service") -> str:
    """systemd-analyze verify of an instance of the template in UNIT_DIR: its whole output."""
    if VERIFY is None:
        pytest.fail("systemd-analyze is missing: apt-get install -y systemd", pytrace=False)
    runtime = unit_dir / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)  # a user manager needs one, even offline
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_COLOR": "0"}
    proc = subprocess.run([VERIFY, *(["--user"] if user else []), "verify", str(unit_dir / instance)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return (proc.stdout + proc.stderr).strip()


@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
@pytest.mark.parametrize("gce_home", [None, "/srv/gce home/100%"], ids=["no-home", "odd-home"])
def test_every_unit_gce_writes_passes_systemd_analyze_verify_without_a_warning(tmp_path, user, gce_home):
    (tmp_path / eob.TEMPLATE).write_text(eob.render_unit(user, str(GCE_BIN), gce_home))
    assert verify(tmp_path, user) == ""


def test_the_system_unit_is_notify_restarts_on_failure_but_not_on_a_config_error():
    unit = settings(eob.render_unit(False, str(GCE_BIN), None))
    assert unit["ExecStart"] == [f"{GCE_BIN} start %i"] and "Environment" not in unit
    assert unit["Type"] == ["notify"] and unit["WatchdogSec"] == ["60"]
    assert unit["Restart"] == ["on-failure"] and unit["StartLimitBurst"] == ["5"]
    assert str(EX_CONFIG) in unit["RestartPreventExitStatus"][0].split() and ConfigError.exit_code == EX_CONFIG
    assert unit["KillMode"] == ["mixed"]
    graceful = inspect.signature(launcher.stop).parameters["timeout"].default  # what gce stop waits
    assert float(unit["TimeoutStopSec"][0]) > graceful
    assert unit["StateDirectory"] == unit["LogsDirectory"] == unit["RuntimeDirectory"] == ["gce"]
    # Root's endpoint starts users' endpoints, which may run setuid tools and need the real /tmp.
    for kept_out in ("NoNewPrivileges", "CapabilityBoundingSet", "PrivateTmp", "ProtectHome", "RestrictSUIDSGID"):
        assert kept_out not in unit
    assert unit["ProtectSystem"] == ["full"] and unit["WantedBy"] == ["multi-user.target"]


def test_the_user_unit_is_the_same_service_with_no_new_privileges():
    unit = settings(eob.render_unit(True, "/opt/my gce/bin/gce", "/home/a/gce"))
    assert unit["ExecStart"] == ['"/opt/my gce/bin/gce" start %i']
    assert unit["Environment"] == ["GCE_HOME=/home/a/gce"]
    assert unit["Type"] == ["notify"] and unit["NoNewPrivileges"] == ["yes"]
    assert unit["WantedBy"] == ["default.target"] and "ProtectSystem" not in unit


def test_a_config_error_at_start_exits_with_the_status_the_unit_does_not_restart_on(configured, gce_bin):
    paths = configured("broken")
    paths.config_file.write_text(paths.config_file.read_text() + "\nno_such_key: 1\n")
    proc = gce_bin("start", "broken")  # what ExecStart runs
    assert proc.returncode == EX_CONFIG, proc.stderr
    assert f"error: invalid configuration in {paths.config_file}" in proc.stderr


def test_unit_text_cannot_be_injected():
    with pytest.raises(UsageError):
        eob.render_unit(False, str(GCE_BIN), "/srv/x\nExecStartPre=/bin/evil")


class FakeSystemd:
    def __init__(self, state: str = "active") -> None:
        self.calls: list[tuple[str, ...]] = []
        self.state = state

    def reload(self) -> None:
        self.calls.append(("reload",))

    def enable_start(self, unit: str) -> None:
        self.calls.append(("enable_start", unit))

    def stop_disable(self, unit: str) -> None:
        self.calls.append(("stop_disable", unit))

    def show(self, unit: str) -> dict[str, str]:
        return {"ActiveState": self.state, "StatusText": "0 tasks received"}


def enable_link(target: eob.Target, name: str) -> Path:
    """What `systemctl enable` does for an instance of the template."""
    link = target.unit_dir / "multi-user.target.wants" / eob.unit_name(name)
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(f"../{eob.TEMPLATE}")
    return link


def test_install_without_systemd_writes_the_template_only(tmp_path):
    target = eob.Target(False, tmp_path / "system")
    assert eob.install("a", target, None, str(GCE_BIN), None) is None
    assert target.template.read_text() == eob.render_unit(False, str(GCE_BIN), None)
    assert target.template.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in target.unit_dir.iterdir()) == [eob.TEMPLATE]


def test_install_and_uninstall_drive_systemd(tmp_path):
    target, systemd = eob.Target(True, tmp_path / "user"), FakeSystemd()
    assert eob.install("a", target, systemd, str(GCE_BIN), None)["ActiveState"] == "active"
    assert systemd.calls == [("reload",), ("enable_start", "gce-endpoint@a.service")]
    link = enable_link(target, "a")
    systemd.calls.clear()
    assert eob.uninstall("a", target, systemd) == [link, target.template]
    assert systemd.calls == [("stop_disable", "gce-endpoint@a.service"), ("reload",)]
    assert list(target.unit_dir.rglob("*")) == [link.parent]  # an empty multi-user.target.wants/


def test_the_template_stays_while_another_endpoint_uses_it(tmp_path):
    target = eob.Target(False, tmp_path)
    eob.install("a", target, None, str(GCE_BIN), None)
    a, b = enable_link(target, "a"), enable_link(target, "b")
    assert eob.uninstall("a", target, None) == [a]
    assert target.template.exists() and list(target.enabled()) == ["b"]
    assert eob.uninstall("b", target, None) == [b, target.template]
    assert eob.uninstall("b", target, None) == []


def test_another_gce_home_is_refused_while_other_endpoints_use_the_template(tmp_path):
    target = eob.Target(False, tmp_path)
    eob.install("a", target, None, str(GCE_BIN), "/srv/one")
    enable_link(target, "a")
    eob.install("a", target, None, str(GCE_BIN), "/srv/two")  # a alone: its own choice
    with pytest.raises(UsageError) as info:
        eob.install("b", target, None, str(GCE_BIN), "/srv/one")
    assert "runs endpoint(s) a with Environment=GCE_HOME=/srv/two" in str(info.value)
    eob.install("b", target, None, str(GCE_BIN), "/srv/two")


def test_enable_refuses_an_endpoint_that_is_not_configured_or_invalid(gce, configured):
    result = gce("enable-on-boot", "nosuch")
    assert result.exit_code == EX_CONFIG and "error: no endpoint named 'nosuch'" in result.stderr
    paths = configured("bad")
    paths.config_file.write_text(paths.config_file.read_text() + "\nno_such_key: 1\n")
    result = gce("enable-on-boot", "bad")
    assert result.exit_code == EX_CONFIG
    assert f"error: invalid configuration in {paths.config_file}: (top level)" in result.stderr
    assert gce("enable-on-boot", "../x").exit_code == 64


def test_as_a_user_without_systemd_the_unit_is_written_and_the_commands_printed():
    """The real commands, as an ordinary user (nobody when the tests run as root)."""
    base = Path(tempfile.mkdtemp(prefix="gce-eob-"))
    try:
        as_user: dict = {}
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(base, nobody.pw_uid, nobody.pw_gid)
            as_user = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
        env = {"PATH": os.environ["PATH"], "GCE_HOME": str(base / "gce"), "XDG_CONFIG_HOME": str(base / "config"),
               "HOME": str(base), "NO_COLOR": "1", "COLUMNS": "200"}

        def gce(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([str(GCE_BIN), *args], capture_output=True, text=True, env=env, cwd=base,
                                  timeout=60, **as_user)

        assert gce("configure", "mine").returncode == 0
        user = pwd.getpwuid(as_user.get("user", os.geteuid())).pw_name
        done = gce("enable-on-boot", "mine")
        unit_dir = base / "config" / "systemd" / "user"
        assert done.returncode == 0, done.stderr
        assert done.stdout == ("systemctl --user daemon-reload\n"
                               "systemctl --user enable --now gce-endpoint@mine.service\n")
        # Exit 0, for an image being built where systemd does not run yet does just this; but nothing runs.
        assert done.stderr.startswith(
            f"warning: systemd does not run here: endpoint mine is not running and will not start at boot; "
            f"only {unit_dir / eob.TEMPLATE} was written. Where systemd runs, enable and start it with:\n")
        assert f"hint: without lingering your user manager, and this endpoint, start at your first login, not " \
               f"at boot: loginctl enable-linger {user}" in done.stderr.replace("\n", " ")
        text = (unit_dir / eob.TEMPLATE).read_text()
        assert text == eob.render_unit(True, str(GCE_BIN), str(base / "gce"))
        assert verify(unit_dir, user=True, instance="gce-endpoint@mine.service") == ""

        gone = gce("disable-on-boot", "mine")
        assert gone.returncode == 0, gone.stderr
        assert gone.stdout == ("endpoint mine no longer starts at boot\n"
                               f"removed {unit_dir / eob.TEMPLATE}\n")
        assert list(unit_dir.iterdir()) == [unit_dir / "runtime"]  # verify's; gce left nothing
        again = gce("disable-on-boot", "mine")
        assert (again.returncode, again.stdout) == (0, "endpoint mine was not enabled on boot\n")
    finally:
        shutil.rmtree(base)
