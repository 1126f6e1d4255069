"""endpoint_setup / endpoint_teardown and the submitter's versions (gce.uep.setup_teardown): the
commands for real, the user endpoint's key, then a root multi-user endpoint whose worker_init picks an
interpreter by GCE_USER_PYTHON_VERSION, with sandboxed tasks from two submitter Pythons."""

from __future__ import annotations

import json
import logging
import os
import platform
import uuid

import psutil
import pytest

import gce
from gce.config.model import from_data
from gce.config.paths import EndpointPaths
from gce.daemon import privileges
from gce.daemon.routing import Router, runtime_used
from gce.transport.message import TaskHeaders
from gce.uep.setup_teardown import Commands, SetupFailed, run


def test_a_command_runs_with_its_output_in_the_log(caplog):
    caplog.set_level(logging.INFO, "gce.uep.setup")
    run("endpoint_setup", "echo one; echo two >&2", 10)
    assert [r.getMessage() for r in caplog.records] == [
        "endpoint_setup: running echo one; echo two >&2", "endpoint_setup: one", "endpoint_setup: two",
        "endpoint_setup: done"]


def test_a_failing_setup_names_its_command_status_and_the_end_of_its_output():
    with pytest.raises(SetupFailed) as err:
        Commands.of({"endpoint_setup": "echo preparing\necho module load failed >&2\nexit 3"}).run_setup()
    assert str(err.value) == ("endpoint_setup 'echo preparing echo module load failed >&2 exit 3' exited with "
                              "status 3; the end of its output:\npreparing\nmodule load failed")


def test_a_setup_past_its_time_limit_is_killed_with_its_children():
    marker = f"{uuid.uuid4().int % 1000}.{uuid.uuid4().int % 1000}"
    with pytest.raises(SetupFailed) as err:
        run("endpoint_setup", f"echo starting; sleep {marker} & sleep {marker}", 0.5)
    assert str(err.value) == (f"endpoint_setup 'echo starting; sleep {marker} & sleep {marker}' did not finish "
                              "within 0.5 s (endpoint_setup_timeout) and was killed; the end of its output:\nstarting")
    left = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", marker]]
    assert left == []


def test_a_failing_teardown_is_logged_and_does_not_raise(caplog):
    Commands.of({"endpoint_teardown": "exit 2"}).run_teardown()
    assert "endpoint_teardown 'exit 2' exited with status 2 (it printed nothing)" in caplog.text


# -- the user endpoint's key ----------------------------------------------------------------------


def test_what_of_the_submitters_runtime_a_template_uses():
    assert runtime_used("engine:\n  type: ThreadPoolEngine\n", "{}") == ()
    assert runtime_used("worker_init: 'use $GCE_USER_PYTHON_VERSION'", "{}") == ("python", "gce")
    assert runtime_used("plain", '{"engine": {"worker_init": "$GCE_USER_SDK_VERSION"}}') == ("python", "gce")
    assert runtime_used("x: {{ user_runtime.platform }}", "{}") == ("python", "gce", "platform")
    assert runtime_used("{% include 'engine.j2' %}", "{}") == ("python", "gce", "platform")
    assert runtime_used(None, "{}") == ("python", "gce", "platform")  # unreadable: the safe side


def _router(tmp_path, template: str) -> Router:
    (tmp_path / "user_config_template.yaml.j2").write_text(template)
    (tmp_path / "user_config_schema.json").write_text(json.dumps({"type": "object"}))
    config = from_data("rt", "0" * 32, {"broker": {"url": "amqp://ep:pw@b/gce"}, "multi_user": True}, tmp_path)
    return Router(EndpointPaths(name="rt", config_dir=tmp_path, state_dir=tmp_path / "state",
                                runtime_dir=tmp_path / "run", log_file=tmp_path / "endpoint.log"), config)


def _task(python: str) -> TaskHeaders:
    return TaskHeaders(str(uuid.uuid4()), "alice", "gce.results.alice.q", "a" * 64, python_version=python,
                       gce_version=gce.__version__, platform="Linux")


def test_two_submitter_pythons_share_a_user_endpoint_only_when_the_template_does_not_use_them(tmp_path):
    me = privileges.current_target()
    plain = _router(tmp_path, "engine:\n  type: ThreadPoolEngine\n")
    assert plain.runtime_key(_task("3.11.2")) == plain.runtime_key(_task("3.12.1")) == ""
    assert plain.templated_uep(me, "{}", _task("3.11.2")).name == plain.templated_uep(me, "{}", _task("3.12.1")).name
    used = _router(tmp_path, "engine:\n  type: ThreadPoolEngine\nendpoint_setup: echo $GCE_USER_PYTHON_VERSION\n")
    assert used.runtime_key(_task("3.11.2")) == f"\0python=3.11.2\0gce={gce.__version__}"
    first, second = used.templated_uep(me, "{}", _task("3.11.2")), used.templated_uep(me, "{}", _task("3.12.1"))
    assert first.name != second.name and first.conf.run_dir != second.conf.run_dir
    assert second.conf.template is not None and second.conf.template.user_runtime.python_version == "3.12.1"


def test_the_template_sees_the_submitters_python_by_globus_computes_names_too(tmp_path):
    from gce.uep.startup import render_engine

    template = ("engine:\n  type: ThreadPoolEngine\n  label: {{ user_runtime.python_version ~ '|' ~ "
                "user_runtime.python.version ~ '|' ~ user_runtime.python.version_tuple[:2] | join('.') ~ '|' ~ "
                "user_runtime.globus_compute_sdk_version }}\n")
    router = _router(tmp_path, template)
    spec = router.templated_uep(privileges.current_target(), "{}", _task("3.12.1"))
    assert render_engine(spec.conf.template)["label"] == f"3.12.1|3.12.1|3.12|{gce.__version__}"


# -- end to end ------------------------------------------------------------------------------------


def told():
    import os

    cwd = os.getcwd()
    return (os.environ.get("GCE_USER_PYTHON_VERSION"), os.environ.get("GCE_USER_SDK_VERSION"),
            os.environ["GCE_TASK_ID"], os.environ.get("GCE_TASK_SANDBOX_DIR"), cwd, oct(os.stat(cwd).st_mode & 0o777))


@pytest.mark.broker
def test_a_personal_endpoint_sets_up_runs_sandboxed_tasks_tears_down_and_a_failing_setup_fails_its_start(
        make_endpoint):
    from gce.errors import GceError
    from tests.endpoint import ENGINES

    ep = make_endpoint(engine="process")
    ep.set(endpoint_setup="echo no scratch here; exit 4")
    with pytest.raises(GceError) as err:
        ep.start()
    assert ("endpoint_setup 'echo no scratch here; exit 4' exited with status 4; the end of its output:\n"
            "no scratch here") in str(err.value)
    ep.set(endpoint_setup="echo setting up", endpoint_teardown="echo tearing down",
           engine={**ENGINES["process"], "run_in_sandbox": True})
    ep.start()
    with ep.executor() as ex:  # no submitter is known when it starts: each task is told its own's
        futures = [ex.submit(told) for _ in range(4)]
        seen = {f.task_id: f.result(timeout=60) for f in futures}
    base = ep.paths.state_dir / "uep" / "tasks_working_dir"  # Globus Compute's layout
    for task_id, values in seen.items():
        sandbox_dir = str(base / task_id)
        assert values == (platform.python_version(), gce.__version__, task_id, sandbox_dir, sandbox_dir, "0o700")
    assert sorted(p.name for p in base.iterdir()) == sorted(seen)
    ep.stop()
    log = (ep.paths.uep_log_dir / "default.log").read_text()
    assert log.index("endpoint_setup: setting up") < log.index("user endpoint ready") < log.index(
        "endpoint_teardown: tearing down")


# -- end to end: a root multi-user endpoint, a real mapped account, real parsl workers ---------------

ACCOUNT = "gcetest-st-a"
TEMPLATE = """\
{% if broken %}
endpoint_setup: "echo preparing the site; echo module load failed >&2; exit 3"
{% else %}
endpoint_setup: "echo setup as $(id -un) for Python $GCE_USER_PYTHON_VERSION"
{% endif %}
endpoint_teardown: "echo teardown as $(id -un)"
engine:
  type: HighThroughputEngine
  max_workers_per_node: 1
  strategy_period: 0.5
  run_in_sandbox: true
  provider:
    type: LocalProvider
    init_blocks: 1
    min_blocks: 0
    max_blocks: 1
    worker_init: >-
      case "${GCE_USER_PYTHON_VERSION%.*}" in 3.11) py=/usr/bin/python3.11 ;; 3.12) py=/usr/bin/python3.12 ;;
      *) py=none ;; esac; export SITE_PYTHON="$py for $GCE_USER_PYTHON_VERSION"
"""
SCHEMA = {"type": "object", "properties": {"broken": {"type": "boolean", "default": False}},
          "additionalProperties": False}


def where_and_which():
    import os
    import stat

    cwd = os.getcwd()
    return (os.environ.get("SITE_PYTHON"), os.environ.get("GCE_USER_PYTHON_VERSION"),
            os.environ.get("GCE_USER_SDK_VERSION"), cwd, os.environ.get("GCE_TASK_SANDBOX_DIR"),
            stat.S_IMODE(os.stat(cwd).st_mode), os.stat(cwd).st_uid)


def _publish(ep, identity: str, fn, python: str, user_config: dict | None = None):
    """A task as a submitter on Python PYTHON sends it (the SDK always says its own version)."""
    from tests.endpoint import RawClient
    from gce.sdk import serialize

    raw = RawClient(ep.urls[identity], ep.endpoint_id, user=identity)
    kind, blob = serialize.serialize_function(fn)
    th = TaskHeaders(str(uuid.uuid4()), identity, raw.queue, serialize.function_id_of(kind, blob),
                     python_version=python, gce_version=gce.__version__, user_endpoint_config=user_config or {})
    raw.publish(serialize.pack_task(kind, blob, serialize.serialize_args((), {})), th.task_id, th.amqp_headers())
    return raw, th.task_id


def _outcome(raw, task_id: str, timeout: float = 120):
    import cloudpickle

    from gce.transport.message import ResultHeaders
    from gce.transport.payload import unpack_result

    for method, props, body in raw.ch.consume(raw.queue, inactivity_timeout=timeout):
        assert method is not None, "no result"
        raw.ch.basic_ack(method.delivery_tag)
        rh = ResultHeaders.from_amqp(props.correlation_id, props.headers)
        if rh.task_id == task_id:
            raw.ch.cancel()
            raw.close()
            return cloudpickle.loads(unpack_result(body).value) if rh.status == "success" else rh.error_message
    raise AssertionError("no result")


@pytest.mark.broker
@pytest.mark.skipif(os.geteuid() != 0, reason="a multi-user endpoint maps to a real account")
def test_setup_worker_init_and_sandboxed_tasks_see_the_submitters_python_and_a_failing_setup_is_named(broker):
    from tests.daemon.multiuser import MultiUserEndpoint, local_accounts

    users = {"alice@uni.edu": ACCOUNT}
    with local_accounts(names=(ACCOUNT,), users=users) as accounts:
        ep = MultiUserEndpoint(broker, mapping=users, template=TEMPLATE, schema=SCHEMA, environment="",
                               identities=tuple(users))
        try:
            mine = platform.python_version()
            other = f"{mine.rsplit('.', 1)[0]}.99"  # another patch release: its pickles still load here
            # All at once: the three user endpoints start side by side.
            sent = [_publish(ep, "alice@uni.edu", where_and_which, python) for python in (mine, other)]
            failures = [_publish(ep, "alice@uni.edu", where_and_which, mine, {"broken": True}) for _ in range(2)]
            for python, (raw, task_id) in zip((mine, other), sent):
                picked, told, sdk, cwd, sandbox_dir, mode, owner = _outcome(raw, task_id)
                assert (picked, told, sdk) == (f"/usr/bin/python3.11 for {python}", python, gce.__version__)
                # Sandboxed by the mapped user, under the user endpoint's directory in the user's home.
                assert cwd == sandbox_dir and cwd.endswith(f"/tasks_working_dir/{task_id}")
                assert cwd.startswith(f"{accounts['alice@uni.edu'].pw_dir}/.gce/uep/mu/")
                assert (mode, owner) == (0o700, accounts["alice@uni.edu"].pw_uid)
            for raw, task_id in failures:
                assert _outcome(raw, task_id) == (
                    "the user endpoint could not start: endpoint_setup 'echo preparing the site; echo module load "
                    "failed >&2; exit 3' exited with status 3; the end of its output:\npreparing the site\n"
                    "module load failed")
            keys = sorted(u["key"] for u in ep.user_endpoints())
            assert len(keys) == 3 and all(k.startswith(f"{ACCOUNT}/") for k in keys)  # two Pythons, one broken
        finally:
            ep.close()
        home = accounts["alice@uni.edu"].pw_dir
        logs = [open(os.path.join(home, ".gce", "uep-logs", "mu", f)).read()
                for f in os.listdir(os.path.join(home, ".gce", "uep-logs", "mu"))]
        ran = sorted(line.split(": ", 2)[-1] for text in logs for line in text.splitlines()
                     if "endpoint_setup: setup as" in line or "endpoint_teardown: teardown as" in line)
        assert ran == sorted([f"setup as {ACCOUNT} for Python {mine}", f"setup as {ACCOUNT} for Python {other}",
                              *[f"teardown as {ACCOUNT}"] * 2])  # none where the setup failed
