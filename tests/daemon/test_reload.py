"""SIGHUP to a manager without a terminal (detached, or under systemd: `systemctl reload`) reads its
configuration again: the next task obeys the new one, a broken one changes nothing. A manager in
the foreground of a terminal still stops on SIGHUP, its terminal's hang-up."""

from __future__ import annotations

import json
import os
import signal
import sys

import pexpect
import pytest
import yaml

from gce.daemon import pidfile
from gce.sdk import serialize
from gce.sdk.errors import TaskFailed
from tests.daemon.multiuser import MultiUserEndpoint, expression_mapping, local_accounts
from tests.endpoint import wait_until


def square(x):
    return x * x


def cube(x):
    return x * x * x


def function_id(fn) -> str:
    return serialize.function_id_of(*serialize.serialize_function(fn))


def reload_and_wait(ep, log_line: str) -> None:
    """SIGHUP the manager and wait until its log says LOG_LINE (the reload is done)."""
    seen = ep.log().count(log_line)
    os.kill(ep.manager_pid(), signal.SIGHUP)
    wait_until(lambda: ep.log().count(log_line) > seen, timeout=15)


def test_a_reload_applies_allowed_functions_to_the_next_task_and_names_what_needs_a_restart(make_endpoint):
    ep = make_endpoint()
    ep.start()
    pid = ep.manager_pid()
    with ep.executor() as ex:
        assert ex.submit(square, 3).result(timeout=30) == 9
        uep_before = ex.submit(os.getpid).result(timeout=30)
        data = yaml.safe_load(ep.paths.config_file.read_text())
        data["allowed_functions"] = [function_id(cube), function_id(os.getpid)]
        data["engine"]["max_workers"] = 3  # the engine of a running user endpoint: only on a restart
        data["broker"]["heartbeat"] = 11
        ep.paths.config_file.write_text(yaml.safe_dump(data))
        reload_and_wait(ep, "reload: allowed_functions changed: applied")
        with pytest.raises(TaskFailed) as e:
            ex.submit(square, 4).result(timeout=30)
        assert e.value.code == "FUNCTION_NOT_ALLOWED"
        assert ex.submit(cube, 2).result(timeout=30) == 8
        assert ex.submit(os.getpid).result(timeout=30) != uep_before  # a fresh user endpoint took the list
    assert ep.manager_pid() == pid and pidfile.read_state(ep.paths)["state"] == "running"
    log = ep.log()
    assert "reload: needs a restart: engine, broker.heartbeat (systemctl restart gce-endpoint@ep0, " \
           "or gce restart ep0)" in log
    assert "user endpoint default: restarting it once its tasks in flight are done: its allowed_functions " \
           "changed (reload)" in log


def test_a_broken_config_on_reload_leaves_the_old_one_in_force_and_says_why(make_endpoint):
    ep = make_endpoint(allowed_functions=[function_id(square)])
    ep.start()
    pid = ep.manager_pid()
    # This one would allow any function, but does not validate: nothing of it may take effect.
    ep.paths.config_file.write_text(ep.paths.config_file.read_text().replace("allowed_functions:", "no_such_key: 1\n"
                                                                             "allowed_functions_typo:"))
    reload_and_wait(ep, "reload failed, the configuration in force is unchanged")
    assert (f"reload failed, the configuration in force is unchanged: invalid configuration in "
            f"{ep.paths.config_file}: (top level)") in ep.log()
    with ep.executor() as ex:
        assert ex.submit(square, 5).result(timeout=30) == 25
        with pytest.raises(TaskFailed) as e:
            ex.submit(cube, 2).result(timeout=30)
        assert e.value.code == "FUNCTION_NOT_ALLOWED"
    assert ep.manager_pid() == pid and pidfile.read_state(ep.paths)["state"] == "running"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a user and drop privileges")
def test_a_reload_maps_identities_by_the_new_mapping_file(broker):
    account = "gcetest-reload-a"
    with local_accounts((account,), users={"alice@uni.edu": account}):
        ep = MultiUserEndpoint(broker, mapping={"bob@uni.edu": account}, identities=("alice@uni.edu",))
        try:
            with ep.executor("alice@uni.edu") as ex:
                with pytest.raises(TaskFailed) as e:
                    ex.submit(square, 2).result(timeout=30)
                assert e.value.code == "IDENTITY_NOT_MAPPED"
                new = ep.paths.config_dir / "identity_mapping_v2.json"
                new.write_text(json.dumps(expression_mapping({"alice@uni.edu": account})))
                data = yaml.safe_load(ep.paths.config_file.read_text())
                data["identity_mapping_config_path"] = "identity_mapping_v2.json"
                ep.paths.config_file.write_text(yaml.safe_dump(data))
                seen = ep.paths.log_file.read_text().count("reload: identity_mapping_config_path changed")
                os.kill(ep.pid, signal.SIGHUP)
                wait_until(lambda: ep.paths.log_file.read_text().count(
                    "reload: identity_mapping_config_path changed: applied") > seen, timeout=15)
                assert ex.submit(square, 6).result(timeout=60) == 36  # at once: the refusal kept is forgotten
                assert {u["key"].split("/")[0] for u in ep.user_endpoints()} == {account}
        finally:
            ep.close()


def test_a_foreground_manager_on_a_terminal_still_stops_on_sighup(make_endpoint):
    ep = make_endpoint()
    gce = os.path.join(os.path.dirname(sys.executable), "gce")
    child = pexpect.spawn(gce, ["start", ep.name], env=dict(os.environ), encoding="utf-8", timeout=60)
    try:
        child.expect("is ready")
        child.kill(signal.SIGHUP)
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0 and "stopping" in child.before
        assert "reload" not in ep.log()
    finally:
        if child.isalive():
            child.kill(signal.SIGKILL)


def test_every_setting_is_either_applied_by_a_reload_or_named_as_needing_a_restart():
    import dataclasses

    from gce.config.model import EndpointConfig
    from gce.daemon import reload

    compared = {f.name for f in dataclasses.fields(EndpointConfig) if f.compare} - {"name"}  # name: the paths
    assert compared == set(reload.APPLIED) | set(reload.NEEDS_RESTART)
    assert not set(reload.APPLIED) & set(reload.NEEDS_RESTART)
    old = EndpointConfig(name="ep", endpoint_id="id", broker_url="amqp://a:b@h/v", engine={"type": "ThreadPoolEngine"})
    new = dataclasses.replace(old, broker_url="amqp://a:c@h/v", min_uid=2000, debug=True, raw={"x": 1})
    assert reload.changes(old, new) == (["min_uid", "debug"], ["broker.url"])  # raw is no setting of its own
    assert reload.changes(old, old) == ([], [])
