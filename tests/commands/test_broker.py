"""gce broker provision / definitions against the session broker."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import stat
import uuid
from pathlib import Path

import pika
import pytest
import yaml
from typer.testing import CliRunner

from gce.commands.broker import app
from gce.config.model import read_endpoint_id
from gce.errors import ConfigError, UsageError
from gce.transport import names
from gce.transport import provision as p
from gce.transport import rabbitmqctl as rmq

pytestmark = pytest.mark.broker


@pytest.fixture
def run(broker, home, monkeypatch):
    """Run `gce broker ...` in-process with rabbitmqctl pointed at the session broker."""
    for key, value in broker.env.items():
        if key.startswith(("RABBITMQ_", "ERL_")) or key == "PATH":
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("HOME", broker.env["HOME"])  # the Erlang cookie; GCE_HOME keeps gce's files in place
    vhost = f"cmd-{secrets.token_hex(3)}"
    runner = CliRunner()

    def invoke(*args: str):
        common = ["--vhost", vhost, "--rabbitmqctl", broker.rabbitmqctl]
        if args[0] != "revoke":  # which deletes accounts: it needs no address
            common += ["--port", str(broker.port)]
        return runner.invoke(app, [*args, *common])

    invoke.vhost = vhost
    before = set(p.existing_accounts(rmq.exported_definitions(broker.rabbitmqctl, broker.env)))
    yield invoke
    # Accounts are broker-wide: one test's ep-demo must not be another's existing account.
    for name in set(p.existing_accounts(rmq.exported_definitions(broker.rabbitmqctl, broker.env))) - before:
        broker.ctl("delete_user", name)


def _login(url: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(url))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_provision_writes_working_urls_and_prints_no_password(run, configured, home):
    paths = configured("demo")
    before = paths.config_file.read_text()
    result = run("provision", "--endpoint", "demo", "--user", "alice@uni.edu", "--sdk-config")
    assert result.exit_code == 0, (result.output, result.exception)

    config = yaml.safe_load(paths.config_file.read_text())
    ep_url = config["broker"]["url"]
    sdk = yaml.safe_load((home / "sdk.yaml").read_text())
    alice_url = sdk["broker_url"]
    assert _mode(paths.config_file) == 0o600 and _mode(home / "sdk.yaml") == 0o600
    for url in (ep_url, alice_url):
        assert pika.URLParameters(url).credentials.password not in result.output
    assert pika.URLParameters(ep_url).credentials.username == "ep-demo"
    assert pika.URLParameters(alice_url).credentials.username == "alice@uni.edu"
    assert pika.URLParameters(alice_url).virtual_host == run.vhost
    # Only the url line changed: the comments of `gce configure` survive.
    changed = [(a, b) for a, b in zip(before.splitlines(), paths.config_file.read_text().splitlines()) if a != b]
    assert len(changed) == 1 and changed[0][1].strip().startswith("url:")

    eid = read_endpoint_id(paths)
    ep, alice = _login(ep_url), _login(alice_url)
    try:
        ch = ep.channel()
        ch.queue_declare(names.endpoint_task_queue(eid), durable=True)
        ch.queue_bind(names.endpoint_task_queue(eid), names.TASKS_EXCHANGE, routing_key=eid)
        ach = alice.channel()
        ach.confirm_delivery()
        ach.basic_publish(names.TASKS_EXCHANGE, eid, b"t", pika.BasicProperties(user_id="alice@uni.edu"), mandatory=True)
    finally:
        ep.close()
        alice.close()


def test_provisioning_another_endpoint_adds_to_the_users_grants(run, configured, home):
    one, two = configured("one"), configured("two")
    assert run("provision", "--endpoint", "one", "--user", "bob", "--sdk-config").exit_code == 0
    first = yaml.safe_load((home / "sdk.yaml").read_text())
    one_url = yaml.safe_load(one.config_file.read_text())["broker"]["url"]
    result = run("provision", "--endpoint", "two", "--user", "bob", "--sdk-config")
    assert result.exit_code == 0, (result.output, result.exception)
    assert yaml.safe_load((home / "sdk.yaml").read_text()) == first  # the known password is kept
    assert "may submit to 2 endpoint(s)" in result.output
    bob = _login(first["broker_url"])
    try:
        for paths in (one, two):
            ch = bob.channel()
            ch.confirm_delivery()
            ch.basic_publish(names.TASKS_EXCHANGE, read_endpoint_id(paths), b"t", pika.BasicProperties(user_id="bob"))
    finally:
        bob.close()
    # Re-provisioning endpoint one keeps its password too, so a running endpoint keeps working.
    assert run("provision", "--endpoint", "one").exit_code == 0
    assert yaml.safe_load(one.config_file.read_text())["broker"]["url"] == one_url
    assert run("provision", "--endpoint", "one", "--rotate").exit_code == 0
    assert yaml.safe_load(one.config_file.read_text())["broker"]["url"] != one_url
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        _login(one_url)


def test_user_passwords_need_a_place_to_go(run, configured, tmp_path):
    configured("demo")
    result = run("provision", "--endpoint", "demo", "--user", "carol")
    assert isinstance(result.exception, UsageError) and "--credentials" in result.exception.hint
    creds = tmp_path / "creds.yaml"
    result = run("provision", "--endpoint", "demo", "--user", "carol", "--user", "dan", "--credentials", str(creds))
    assert result.exit_code == 0, (result.output, result.exception)
    urls = yaml.safe_load(creds.read_text())
    assert set(urls) == {"ep-demo", "carol", "dan"} and _mode(creds) == 0o600
    _login(urls["dan"]).close()


def test_provision_needs_a_configured_endpoint_and_sane_names(run, configured):
    result = run("provision", "--endpoint", "missing")
    assert isinstance(result.exception, ConfigError)
    configured("demo")
    result = run("provision", "--endpoint", "demo", "--user", "ep-demo", "--sdk-config")
    assert isinstance(result.exception, UsageError)
    result = run("provision", "--endpoint", "demo", "--user", "a b", "--sdk-config")
    assert isinstance(result.exception, UsageError)


def test_definitions_prints_hashes_and_writes_urls(run, tmp_path, broker):
    eid = str(uuid.uuid4())
    creds = tmp_path / "creds.yaml"
    result = CliRunner().invoke(app, ["definitions", "--endpoint-id", eid, "--endpoint-account", "ep-far",
                                      "--user", "erin", "--credentials", str(creds), "--host", "broker.example.org"])
    assert result.exit_code == 0, (result.output, result.exception)
    defs = json.loads(result.stdout)
    urls = yaml.safe_load(creds.read_text())
    assert _mode(creds) == 0o600
    for user in defs["users"]:
        password = pika.URLParameters(urls[user["name"]]).credentials.password
        assert password not in result.output
        raw = base64.b64decode(user["password_hash"])
        assert raw[4:] == hashlib.sha256(raw[:4] + password.encode()).digest()
    assert urls["erin"].startswith("amqp://erin:") and "@broker.example.org:5672/gce" in urls["erin"]


@pytest.mark.parametrize("name", ["*", "x.*", "a*b"])
def test_user_names_with_binding_wildcards_are_refused(run, configured, name):
    configured("demo")
    result = run("provision", "--endpoint", "demo", "--user", name, "--sdk-config")
    assert isinstance(result.exception, UsageError), (result.output, result.exception)
    assert "'*'" in result.exception.why


def test_reprovisioning_narrows_what_an_old_account_may_read(run, configured, broker, tmp_path):
    """Accounts made when every user could read every endpoint's status lose that on the next
    provision, and keep the status of each endpoint they were given."""
    one, two = configured("one"), configured("two")
    creds = tmp_path / "creds.yaml"
    assert run("provision", "--endpoint", "one", "--user", "dave", "--credentials", str(creds)).exit_code == 0
    dave_url = yaml.safe_load(creds.read_text())["dave"]
    stranger = str(uuid.uuid4())
    broker.ctl("set_permissions", "-p", run.vhost, "dave", r"^gce\.results\.dave\.[^.]+$",
               r"^(gce\.tasks|gce\.results\.dave\.[^.]+)$",
               r"^(gce\.results|gce\.results\.dave\.[^.]+|gce\.ep\.[^.]+\.status)$")  # as gce 0.x granted
    broker.ctl("set_permissions", "-p", run.vhost, broker.admin_user, ".*", ".*", ".*")
    status_queues = {key: names.endpoint_status_queue(eid) for key, eid in
                     (("one", read_endpoint_id(one)), ("two", read_endpoint_id(two)), ("stranger", stranger))}
    admin = _login(broker.admin_url_for(run.vhost))
    try:
        for queue in status_queues.values():
            admin.channel().queue_declare(queue, durable=True, arguments={"x-max-length": 1})

        def may_read(queue: str) -> bool:
            dave = _login(dave_url)
            try:
                dave.channel().basic_get(queue)
                return True
            except pika.exceptions.ChannelClosedByBroker as e:
                assert e.reply_code == 403
                return False
            finally:
                if dave.is_open:
                    dave.close()

        assert may_read(status_queues["stranger"])  # the old grant
        result = run("provision", "--endpoint", "two", "--user", "dave", "--credentials", str(creds))
        assert result.exit_code == 0, (result.output, result.exception)
        assert "dave" not in yaml.safe_load(creds.read_text())  # his password, and so his URL, are unchanged
        assert may_read(status_queues["one"]) and may_read(status_queues["two"])
        assert not may_read(status_queues["stranger"])
    finally:
        admin.close()


def test_an_existing_user_keeps_her_password_unless_rotated(run, configured, tmp_path):
    """Adding alice to a second endpoint from another machine (no sdk.yaml of hers here) gives
    her the new grant only: her sdk.yaml elsewhere keeps working."""
    configured("one"), configured("two")
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    assert run("provision", "--endpoint", "one", "--user", "alice@uni.edu", "--credentials", str(first)).exit_code == 0
    alice_url = yaml.safe_load(first.read_text())["alice@uni.edu"]
    result = run("provision", "--endpoint", "two", "--user", "alice@uni.edu", "--credentials", str(second))
    assert result.exit_code == 0, (result.output, result.exception)
    assert "alice@uni.edu exists: her password is unchanged; use --rotate to set a new one" in result.output
    assert "may submit to 2 endpoint(s)" in result.output
    assert "alice@uni.edu" not in yaml.safe_load(second.read_text())  # we do not know her password
    assert f"  wrote the broker URLs of ep-two to {second} (mode 0600)" in result.output
    _login(alice_url).close()
    # Without a file to write to, an existing user needs none.
    assert run("provision", "--endpoint", "two", "--user", "alice@uni.edu").exit_code == 0
    _login(alice_url).close()
    result = run("provision", "--endpoint", "two", "--user", "alice@uni.edu", "--credentials", str(second), "--rotate")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "alice@uni.edu: new password (--rotate)" in result.output
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        _login(alice_url)
    _login(yaml.safe_load(second.read_text())["alice@uni.edu"]).close()


def test_an_existing_endpoint_account_keeps_its_password_unless_rotated(run, configured, tmp_path):
    """An endpoint account whose password is not in config.yaml here (provisioned from another
    copy of the endpoint) is left alone, and config.yaml is not given a URL that cannot log in."""
    paths = configured("demo")
    creds = tmp_path / "creds.yaml"
    assert run("provision", "--endpoint", "demo", "--credentials", str(creds)).exit_code == 0
    ep_url = yaml.safe_load(paths.config_file.read_text())["broker"]["url"]
    placeholder = ep_url.replace(pika.URLParameters(ep_url).credentials.password, "not-it")
    from gce.commands.broker import set_yaml_key
    set_yaml_key(paths.config_file, ("broker", "url"), placeholder)
    result = run("provision", "--endpoint", "demo", "--credentials", str(creds))
    assert result.exit_code == 0, (result.output, result.exception)
    assert "ep-demo exists: its password is unchanged; use --rotate to set a new one" in result.output
    assert yaml.safe_load(paths.config_file.read_text())["broker"]["url"] == placeholder
    _login(ep_url).close()
    # The known, matching password is used again: re-running is harmless (make demo does).
    set_yaml_key(paths.config_file, ("broker", "url"), ep_url)
    result = run("provision", "--endpoint", "demo")
    assert result.exit_code == 0 and "restart" not in result.output, result.output
    assert yaml.safe_load(paths.config_file.read_text())["broker"]["url"] == ep_url


def _refused(code: int, action) -> None:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        action()
    assert info.value.reply_code == code, info.value.reply_text


def test_revoke_user_deletes_her_account_after_confirmation(run, configured, tmp_path):
    configured("demo")
    creds = tmp_path / "creds.yaml"
    assert run("provision", "--endpoint", "demo", "--user", "erin", "--credentials", str(creds)).exit_code == 0
    erin_url = yaml.safe_load(creds.read_text())["erin"]
    result = run("revoke", "--user", "erin")  # no terminal to ask on
    assert isinstance(result.exception, UsageError), (result.output, result.exception)
    assert result.exception.hint == f"gce broker revoke --user erin --vhost {run.vhost} --yes"
    _login(erin_url).close()
    result = run("revoke", "--user", "erin", "--yes")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "broker account erin deleted" in result.output
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        _login(erin_url)
    result = run("revoke", "--user", "erin", "--yes")
    assert isinstance(result.exception, ConfigError) and "no broker account 'erin'" in str(result.exception)


def test_revoke_endpoint_deletes_its_account_and_every_users_grant(run, configured, tmp_path, broker):
    one, two = configured("one"), configured("two")
    creds = tmp_path / "creds.yaml"
    assert run("provision", "--endpoint", "one", "--user", "fay", "--credentials", str(creds)).exit_code == 0
    fay_url = yaml.safe_load(creds.read_text())["fay"]
    assert run("provision", "--endpoint", "two", "--user", "fay").exit_code == 0
    one_url = yaml.safe_load(one.config_file.read_text())["broker"]["url"]
    one_id, two_id = read_endpoint_id(one), read_endpoint_id(two)
    result = run("revoke", "--endpoint", "one", "--yes")
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"broker account ep-one deleted" in result.output
    assert f"fay may no longer submit to endpoint {one_id}" in result.output
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        _login(one_url)
    assert rmq.current_task_endpoints(run.vhost, broker.rabbitmqctl, broker.env)["fay"] == [two_id]
    fay = _login(fay_url)  # her password is untouched
    try:
        ch = fay.channel()
        ch.confirm_delivery()
        ch.basic_publish(names.TASKS_EXCHANGE, two_id, b"t", pika.BasicProperties(user_id="fay"))
        refused = fay.channel()
        refused.confirm_delivery()
        _refused(403, lambda: refused.basic_publish(names.TASKS_EXCHANGE, one_id, b"t", pika.BasicProperties(user_id="fay")))
    finally:
        if fay.is_open:
            fay.close()


def test_revoke_needs_something_and_keeps_names_off_the_command_line(run):
    assert isinstance(run("revoke", "--yes").exception, UsageError)
    result = run("revoke", "--user", "x$(id)", "--yes")
    assert isinstance(result.exception, UsageError), (result.output, result.exception)
    assert "rabbitmqctl" in result.exception.why


def test_revoke_asks_on_a_terminal(broker, home):
    import os

    import pexpect

    from tests.commands.conftest import GCE_BIN

    gina = f"gina.{secrets.token_hex(3)}"
    eid = str(uuid.uuid4())
    url, users = broker.provision(eid, users=[gina])
    vhost = pika.URLParameters(url).virtual_host
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "GCE_DEBUG")}
    env.update({k: v for k, v in broker.env.items() if k.startswith(("RABBITMQ_", "ERL_")) or k in ("PATH", "HOME")})
    env.update(GCE_HOME=str(home), TERM="dumb", NO_COLOR="1")
    args = ["broker", "revoke", "--user", gina, "--vhost", vhost, "--rabbitmqctl", broker.rabbitmqctl]
    try:
        for answer, status in (("", 1), ("y", 0)):
            child = pexpect.spawn(str(GCE_BIN), args, env=env, encoding="utf-8", timeout=60)
            child.expect_exact(f"Delete broker account(s) {gina}? [y/N]: ")
            child.sendline(answer)
            child.expect(pexpect.EOF)
            child.close()
            assert child.exitstatus == status, child.before
            if status:
                assert "nothing was revoked" in child.before
                _login(users[gina]).close()
            else:
                assert f"broker account {gina} deleted" in child.before
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            _login(users[gina])
    finally:
        for name in (gina, f"ep-{eid}"):
            broker.ctl("delete_user", name, check=False)


def test_revoking_several_endpoints_leaves_each_user_what_none_of_them_took():
    from gce.commands.broker_revoke import _grants_without

    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    have = p.definitions("v", endpoints=[(p.Account("ep-a", "x"), a), (p.Account("ep-b", "x"), b)],
                         users=[(p.Account("hal", "x"), [a, b, c]), (p.Account("ida", "x"), [c]),
                                (p.Account("jo", "x"), [a])])
    keep, dropped = _grants_without(have, "v", ["a", "b"], ["ep-a", "ep-b", "jo"])
    assert keep == {"hal": [c]}
    assert sorted(dropped) == sorted([("hal", a), ("hal", b)])
    assert _grants_without(have, "other-vhost", ["a"], ["ep-a"]) == ({}, [])


def test_provision_writes_each_users_endpoints_where_she_alone_reads_them(run, configured, tmp_path, broker):
    from gce.sdk import Client

    one, two = configured("one"), configured("two")
    creds = tmp_path / "creds.yaml"
    assert run("provision", "--endpoint", "one", "--user", "dora", "--credentials", str(creds)).exit_code == 0
    dora_url = yaml.safe_load(creds.read_text())["dora"]
    # A writer that a provisioning killed before it deleted its own left behind: the next one deletes it.
    broker.ctl("add_user", "gce-directory-0123456789abcdef", "x")
    result = run("provision", "--endpoint", "two", "--user", "dora", "--user", "eve", "--credentials", str(creds))
    assert result.exit_code == 0, (result.output, result.exception)
    with Client(dora_url) as dora:
        listed = {e["endpoint_id"]: e["status"] for e in dora.get_endpoints()}
    assert listed == {read_endpoint_id(one): "unknown", read_endpoint_id(two): "unknown"}  # never started
    with Client(yaml.safe_load(creds.read_text())["eve"]) as eve:
        assert [e["endpoint_id"] for e in eve.get_endpoints()] == [read_endpoint_id(two)]
    # The account that wrote the lists is gone.
    left = p.existing_accounts(rmq.exported_definitions(broker.rabbitmqctl, broker.env))
    assert not [a for a in left if a.startswith("gce-directory-")]
    # An endpoint revoked since is no longer listed: the broker refuses her its status.
    assert run("revoke", "--endpoint", "one", "--yes").exit_code == 0
    with Client(dora_url) as dora:
        assert [e["endpoint_id"] for e in dora.get_endpoints()] == [read_endpoint_id(two)]


def test_revoke_user_deletes_her_queues_and_no_one_elses(run, configured, tmp_path, broker):
    # A broker user name given again to someone else later must not find the first one's results,
    # registered functions or endpoint list waiting: her queues go with her account. "erin.x"
    # shares her prefix and keeps his.
    configured("demo")
    creds = tmp_path / "creds.yaml"
    assert run("provision", "--endpoint", "demo", "--user", "erin", "--user", "erin.x",
               "--credentials", str(creds)).exit_code == 0
    urls = yaml.safe_load(creds.read_text())
    owned = {}
    for user in ("erin", "erin.x"):
        conn = _login(urls[user])
        try:
            ch = conn.channel()
            for queue in (names.client_result_queue(user), names.result_queue(user, uuid.uuid4().hex),
                          names.function_queue(user, hashlib.sha256(user.encode()).hexdigest())):
                ch.queue_declare(queue, durable=True)
        finally:
            conn.close()
        owned[user] = {q for q in rmq.queues(run.vhost, broker.rabbitmqctl, broker.env)
                       if q.startswith(("gce.results.", "gce.functions.", "gce.directory.")) and
                       p.owned_queues(user, [q])}
        assert len(owned[user]) == 4, owned  # three of hers, and her directory
    result = run("revoke", "--user", "erin", "--yes")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "broker account erin deleted" in result.output
    assert "4 queue(s) of erin deleted" in result.output
    left = set(rmq.queues(run.vhost, broker.rabbitmqctl, broker.env))
    assert not owned["erin"] & left and owned["erin.x"] <= left


def test_owned_queues_are_the_ones_her_permissions_let_her_declare():
    fid = "a" * 64
    named = ["gce.results.erin.client", "gce.results.erin.x.client", "gce.results.erin.0123abcd",
             f"gce.functions.erin.{fid}", f"gce.functions.erin.x.{fid}", "gce.directory.erin",
             "gce.directory.erin.x", "gce.ep.erin.tasks", "gce.results.erin.", "gce.results.erinx.client"]
    assert p.owned_queues("erin", named) == ["gce.results.erin.client", "gce.results.erin.0123abcd",
                                             f"gce.functions.erin.{fid}", "gce.directory.erin"]
    assert p.owned_queues("erin.x", named) == ["gce.results.erin.x.client", f"gce.functions.erin.x.{fid}",
                                               "gce.directory.erin.x"]
