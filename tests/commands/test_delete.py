"""gce delete: asks on a terminal, refuses without one, never deletes a running endpoint."""

from __future__ import annotations

import json
import os

import pexpect

from tests.commands.conftest import GCE_BIN
from tests.commands.helpers import running


def _tty(home, *args: str) -> pexpect.spawn:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "GCE_DEBUG")}
    env.update(GCE_HOME=str(home), TERM="dumb", NO_COLOR="1")
    return pexpect.spawn(str(GCE_BIN), list(args), env=env, encoding="utf-8", timeout=30)


def test_yes_deletes_everything(gce, home, configured):
    paths = configured("demo")
    configured("other")
    result = gce("delete", "demo", "--yes")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"removed {home}/demo\nendpoint demo deleted\n"
    assert result.stderr == ""
    assert not paths.config_dir.exists()
    assert sorted(p.name for p in home.iterdir()) == ["other"]
    assert gce("list", "--json").stdout.count('"name"') == 1


def test_without_a_terminal_it_refuses(gce, home, configured):
    paths = configured("demo")
    result = gce("delete", "demo")
    assert result.exit_code == 64
    assert result.stdout == ""
    assert result.stderr == (
        "error: not deleting endpoint 'demo' without confirmation: gce cannot ask for it: standard input is not "
        "a terminal\nhint: gce delete demo --yes\n"
    )
    assert paths.config_file.exists()


def test_running_endpoint_is_not_deleted(gce, home, configured):
    paths = configured("demo")
    with running(paths):
        result = gce("delete", "demo", "--yes")
    assert result.exit_code == 73
    assert result.stderr == (
        f"error: cannot delete endpoint 'demo': it is running (pid {os.getpid()} on {os.uname().nodename})\n"
        "hint: gce stop demo, then gce delete demo\n"
    )
    assert paths.config_file.exists()


def test_endpoint_without_its_config_can_still_be_deleted(gce, home, configured):
    paths = configured("demo")
    paths.config_file.unlink()
    assert gce("configure", "demo").exit_code == 73
    result = gce("delete", "demo", "--yes")
    assert result.exit_code == 0, result.stderr
    assert not paths.state_dir.exists()
    assert gce("configure", "demo").exit_code == 0


def test_unknown_endpoint(gce, home):
    result = gce("delete", "nope", "--yes")
    assert result.exit_code == 78
    assert result.stderr.startswith("error: no endpoint named 'nope'")


def test_confirmed_on_a_terminal(home, configured):
    paths = configured("demo")
    endpoint_id = json.loads(paths.endpoint_json.read_text())["endpoint_id"]
    child = _tty(home, "delete", "demo")
    child.expect_exact(f"Delete endpoint demo ({endpoint_id}) and everything in {home}/demo? [y/N]: ")
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert child.before.replace("\r\n", "\n") == f"y\nremoved {home}/demo\nendpoint demo deleted\n"
    assert not paths.config_dir.exists()


def test_declined_on_a_terminal(home, configured):
    paths = configured("demo")
    child = _tty(home, "delete", "demo")
    child.expect_exact("[y/N]: ")
    child.sendline("")  # the default is no
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert child.before.replace("\r\n", "\n") == "\nendpoint demo was not deleted\n"
    assert paths.config_file.exists()


def test_says_the_broker_account_still_exists_and_how_to_revoke_it(gce, home, configured):
    from gce.commands.broker import set_yaml_key

    paths = configured("demo")
    set_yaml_key(paths.config_file, ("broker", "url"), "amqp://ep-demo:Pw-secret@broker.example.org:5672/science")
    result = gce("delete", "demo", "--yes")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        f"removed {home}/demo\nendpoint demo deleted\n"
        "its broker account ep-demo still exists at broker.example.org:5672, vhost science\n"
    )
    assert result.stderr == "hint: revoke it on the broker host: gce broker revoke --endpoint demo --vhost science\n"
    assert "Pw-secret" not in result.stdout + result.stderr


def test_a_shared_broker_account_is_named_with_care(gce, home, configured):
    from gce.commands.broker import set_yaml_key

    paths = configured("demo")
    set_yaml_key(paths.config_file, ("broker", "url"), "amqp://site%20ops:pw@127.0.0.1:5672/gce")
    result = gce("delete", "demo", "--yes")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.endswith("its broker account site ops still exists at 127.0.0.1:5672, vhost gce\n")
    assert result.stderr == "hint: if nothing else uses it, revoke it on the broker host: gce broker revoke --user 'site ops'\n"
