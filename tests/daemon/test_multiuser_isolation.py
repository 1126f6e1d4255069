"""A multi-user endpoint run by root keeps its users apart, for real: each UEP holds exactly its
user's credentials and supplementary groups in a session of its own, carries none of root's
secrets, renders the admin's template as its user and users' values as data only, runs only the
functions the admin allows, is reused for the same user and config, and takes down what its tasks
left behind when it stops.

One endpoint serves every case here but the last. Its manager was started with secrets in its
environment, and its ``allowed_functions`` lists the functions of ALLOWED only.
"""

from __future__ import annotations

import grp
import os
import secrets
import shutil
import tempfile
import time
import urllib.parse
from pathlib import Path

import psutil
import pytest

from gce.sdk import serialize
from gce.sdk.errors import TaskFailed
from tests.daemon.multiuser import MultiUserEndpoint, local_accounts, processes_of
from tests.endpoint import RawClient, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create users and drop privileges")

ALICE, BOB, CAROL = "gcetest-ms-a", "gcetest-ms-b", "gcetest-ms-c"
USERS = {"alice@uni.edu": ALICE, "bob@uni.edu": BOB, "carol@uni.edu": CAROL}
GROUPS = {ALICE: ["gcetest-ms-lab", "gcetest-ms-all"], BOB: ["gcetest-ms-all"]}
TOKEN = secrets.token_hex(8)
# What a site's init system may hand root; a UEP must see none of it.
PLANTED = {
    "FOO_PASSWORD": f"pw-{TOKEN}", "SOME_TOKEN": f"tok-{TOKEN}", "AWS_SECRET_ACCESS_KEY": f"aws-{TOKEN}",
    "GCE_ENDPOINT_BROKER_URL": f"amqp://svc:url-{TOKEN}@127.0.0.1:5672/gce",
    "BACKUP_TARGET": f"amqps://backup:bk-{TOKEN}@backup.example.org/",  # a secret under a harmless name
}
# Each branch puts a user's value somewhere an injection would change the engine; the include
# reads a file only root may read, so it renders only where rendering runs as root.
TEMPLATE = """engine:
  type: {{ engine }}
  max_workers: {{ workers }}
  label: {{ label }}
  tags: {{ tags }}
{% if probe is defined %}
  probe: {{ label | attr(probe) }}
{% endif %}
{% if site == "private" %}
{% include "site_private.yaml.j2" %}
{% endif %}
"""
SCHEMA = {"type": "object", "additionalProperties": False, "properties": {
    "engine": {"enum": ["ThreadPoolEngine", "ProcessPoolEngine"], "default": "ThreadPoolEngine"},
    "workers": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
    "label": {"type": "string", "maxLength": 200, "default": ""},
    "tags": {"type": "object", "additionalProperties": {"type": "string"}, "default": {}},
    "site": {"enum": ["public", "private"], "default": "public"},
    "probe": {"type": "string"},
}}
DEFAULTS = {"engine": "ThreadPoolEngine", "workers": 1, "label": "", "tags": {}, "site": "public"}


def probe():
    import os

    try:
        with open("/proc/self/environ", "rb") as f:
            proc_environ = f.read()
    except PermissionError:  # in a user endpoint, which is not dumpable: root reads it instead
        proc_environ = None
    return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "egid": os.getegid(),
            "groups": sorted(os.getgroups()), "pid": os.getpid(), "sid": os.getsid(0), "pgid": os.getpgid(0),
            "env": dict(os.environ), "proc_environ": proc_environ}


def pid_of():
    import os

    return os.getpid()


def engine_view():
    """The engine the task runs on, seen from inside its UEP (a ThreadPoolEngine runs tasks there)."""
    import gc
    import os
    import threading

    engines = [o for o in gc.get_objects() if type(o).__name__.endswith("PoolEngine") and hasattr(o, "options")]
    return {"pid": os.getpid(), "thread": threading.current_thread().name,
            "engines": [(type(e).__name__, dict(e.options)) for e in engines]}


def not_listed(path):
    with open(path, "w") as f:
        f.write("ran")
    return "ran"


ALLOWED = (probe, pid_of, engine_view)


def function_id(fn) -> str:
    return serialize.function_id_of(*serialize.serialize_function(fn))


@pytest.fixture(scope="module")
def users():
    with local_accounts((ALICE, BOB, CAROL), users=USERS, groups=GROUPS) as accounts:
        yield accounts


@pytest.fixture(scope="module")
def endpoint(broker, users):
    served = ("alice@uni.edu", "bob@uni.edu")
    ep = MultiUserEndpoint(broker, mapping={i: USERS[i] for i in served}, template=TEMPLATE, schema=SCHEMA,
                           identities=served, environ=PLANTED,
                           extra={"allowed_functions": [function_id(f) for f in ALLOWED]})
    private = ep.paths.config_dir / "site_private.yaml.j2"
    private.write_text("  site_note: private\n")
    private.chmod(0o600)
    yield ep
    ep.close()
    wait_until(lambda: not processes_of([ALICE, BOB]), timeout=20)


@pytest.fixture
def marker_dir():
    d = Path(tempfile.mkdtemp(prefix="gce-ms-marker-"))
    d.chmod(0o777)  # the mapped users may write here, should a refused function run after all
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_each_uep_holds_its_users_groups_in_a_session_of_its_own(endpoint, users):
    with endpoint.executor("alice@uni.edu") as ea, endpoint.executor("bob@uni.edu") as eb:
        fa, fb = ea.submit(probe), eb.submit(probe)
        seen = {"alice@uni.edu": fa.result(timeout=60), "bob@uni.edu": fb.result(timeout=60)}
    uep_pids = {u["pid"] for u in endpoint.user_endpoints()}
    for identity, got in seen.items():
        user = users[identity]
        want = sorted(os.getgrouplist(user.pw_name, user.pw_gid))
        extra = {grp.getgrnam(g).gr_gid for g in GROUPS[user.pw_name]}
        assert extra and extra <= set(want)  # the accounts were set up with supplementary groups
        assert got["groups"] == want
        assert 0 not in got["groups"] and (got["gid"], got["egid"]) == (user.pw_gid, user.pw_gid)
        assert (got["uid"], got["euid"]) == (user.pw_uid, user.pw_uid)
        # A ThreadPoolEngine runs the task in the UEP process, which leads its own session.
        assert got["pid"] in uep_pids
        assert got["sid"] == got["pgid"] == got["pid"]
        # Not dumpable: no process of the user's own (a worker, a login shell) can ptrace it or
        # copy its channel to the manager; its /proc files are root's.
        assert got["proc_environ"] is None and os.stat(f"/proc/{got['pid']}/fd").st_uid == 0
        assert os.getsid(got["pid"]) == got["pid"] != os.getsid(endpoint.pid)
    assert grp.getgrnam("gcetest-ms-lab").gr_gid not in seen["bob@uni.edu"]["groups"]


def test_no_secret_of_roots_reaches_a_user_endpoint(endpoint, users):
    manager_environ = Path(f"/proc/{endpoint.pid}/environ").read_bytes()
    assert all(v.encode() in manager_environ for v in PLANTED.values())  # there was something to leak
    password = urllib.parse.urlsplit(endpoint.endpoint_url).password
    assert password and password.encode() not in manager_environ
    leaks = {**PLANTED, "the endpoint's broker password": password}
    # A process pool, so the workers' environments are checked as well as the UEP's.
    with endpoint.executor("alice@uni.edu", user_endpoint_config={"engine": "ProcessPoolEngine"}) as ex:
        got = ex.submit(probe).result(timeout=120)
    assert got["pid"] not in {u["pid"] for u in endpoint.user_endpoints()}  # it ran on a worker
    assert not sorted(set(PLANTED) & set(got["env"])), "root's variables reached the function"
    for what, value in leaks.items():
        assert not [k for k, v in got["env"].items() if value in v], f"{what} is in the function's environment"
        assert value.encode() not in got["proc_environ"], f"{what} is in the worker's /proc/self/environ"
    procs = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and
             p.info["uids"].real in (users["alice@uni.edu"].pw_uid, users["bob@uni.edu"].pw_uid)]
    assert got["pid"] in {p.pid for p in procs} and len(procs) >= 2  # UEPs and the pool's workers
    for p in procs:
        for part in ("environ", "cmdline"):
            try:
                data = Path(f"/proc/{p.pid}/{part}").read_bytes()
            except FileNotFoundError:
                continue
            for what, value in leaks.items():
                assert value.encode() not in data, f"{what} is in /proc/{p.pid}/{part}: {p.cmdline()}"
    logs = [*Path(users["alice@uni.edu"].pw_dir, ".gce", "uep-logs").rglob("*"),
            *endpoint.paths.uep_log_dir.rglob("*"), endpoint.paths.log_file]
    for log in (f for f in logs if f.is_file()):
        text = log.read_bytes()
        for what, value in leaks.items():
            assert value.encode() not in text, f"{what} is in {log}"


def refused_while_bob_is_served(endpoint, users, alices_config: dict) -> pytest.ExceptionInfo:
    """Alice's task with ALICES_CONFIG fails (its TaskFailed is returned) while bob's, submitted
    at the same time, runs as bob: one user's refusal never holds up another."""
    with endpoint.executor("alice@uni.edu", user_endpoint_config=alices_config) as ea, \
            endpoint.executor("bob@uni.edu") as eb:
        refused, served = ea.submit(pid_of), eb.submit(pid_of)
        assert psutil.Process(served.result(timeout=60)).uids().real == users["bob@uni.edu"].pw_uid
        with pytest.raises(TaskFailed) as e:
            refused.result(timeout=60)
    return e


def test_the_template_is_rendered_as_the_mapped_user(endpoint, users):
    from gce.config import templating

    template = endpoint.paths.config_dir / "user_config_template.yaml.j2"
    private = endpoint.paths.config_dir / "site_private.yaml.j2"
    st = private.stat()
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o600
    # As root the private branch renders fine: only rendering with the user's rights can fail it.
    assert "site_note: private" in templating.render_text(template, {**DEFAULTS, "site": "private"})
    e = refused_while_bob_is_served(endpoint, users, {"site": "private"})
    assert e.value.code == "USER_CONFIG_TEMPLATE_ERROR"
    assert f"Permission denied: '{private}'" in e.value.message
    assert f"cannot render the user config template {template}" in e.value.message


def test_only_the_allowed_functions_run(endpoint, users, marker_dir):
    path = str(marker_dir / "ran")
    fid = function_id(not_listed)
    with endpoint.executor("alice@uni.edu") as ex:
        with pytest.raises(TaskFailed) as e:
            ex.submit(not_listed, path).result(timeout=60)
        assert e.value.code == "FUNCTION_NOT_ALLOWED"
        assert e.value.message == f"function {fid} is not in this endpoint's allowed_functions"
        assert ex.submit(pid_of).result(timeout=60) in {u["pid"] for u in endpoint.user_endpoints()}
    assert not os.path.exists(path)


def test_a_forged_function_id_is_refused(endpoint, users, marker_dir):
    path = str(marker_dir / "ran")
    raw = RawClient(endpoint.urls["alice@uni.edu"], endpoint.endpoint_id, user="alice@uni.edu")
    try:
        # not_listed's bytes under the id of a function the admin allows
        tid, headers, body = raw.task(not_listed, (path,))
        headers["function-id"] = function_id(pid_of)
        raw.publish(body, tid, headers)
        got = raw.results(1, timeout=60)
    finally:
        raw.close()
    assert got[tid].status == "failed" and got[tid].error_code == "BAD_MESSAGE"
    assert got[tid].error_message == "the function-id header does not match the function bytes in the payload"
    assert not os.path.exists(path)
    with endpoint.executor("alice@uni.edu") as ex:  # the manager and alice's UEP serve on
        assert ex.submit(pid_of).result(timeout=60) in {u["pid"] for u in endpoint.user_endpoints()}


def _engines_of(endpoint, users, config: dict) -> dict:
    """engine_view() in alice's UEP for CONFIG, while bob is served."""
    with endpoint.executor("alice@uni.edu", user_endpoint_config=config) as ea, \
            endpoint.executor("bob@uni.edu") as eb:
        fa, fb = ea.submit(engine_view), eb.submit(pid_of)
        assert psutil.Process(fb.result(timeout=60)).uids().real == users["bob@uni.edu"].pw_uid
        return fa.result(timeout=60)


def test_a_users_values_cannot_inject_yaml(endpoint, users):
    label = "lab\n  type: ProcessPoolEngine\n  max_workers: 4\n  site_note: injected"
    key = 'k": 1}\n  type: ProcessPoolEngine\n  max_workers: 4\n  x: {"y'
    got = _engines_of(endpoint, users, {"label": label, "tags": {key: "v"}})
    # Both arrive as the literal strings they are; the engine is the one the template chose.
    assert got["engines"] == [("ThreadPoolEngine", {"max_workers": 1, "label": label, "tags": {key: "v"}})]
    assert got["thread"].startswith("gce-worker")
    [uep] = [u for u in endpoint.user_endpoints() if u["pid"] == got["pid"]]
    assert uep["engine"]["type"] == "ThreadPoolEngine" and uep["engine"]["workers_total"] == 1
    # A top-level key is a template variable: one the schema does not name never reaches the template.
    with endpoint.executor("alice@uni.edu", user_endpoint_config={"workers: 4\nengine": "x"}) as ex:
        with pytest.raises(TaskFailed) as e:
            ex.submit(pid_of).result(timeout=60)
    assert e.value.code == "USER_CONFIG_INVALID"
    assert "'workers: 4\\nengine' was unexpected" in e.value.message and "allowed keys: engine," in e.value.message


def test_the_template_sandbox_holds(endpoint, users):
    code = "{{ ''.__class__.__mro__[1].__subclasses__() }}{% include '/etc/shadow' %}"
    got = _engines_of(endpoint, users, {"label": code})
    assert got["engines"] == [("ThreadPoolEngine", {"max_workers": 1, "label": code, "tags": {}})]  # data, not code
    e = refused_while_bob_is_served(endpoint, users, {"probe": "__class__"})
    assert e.value.code == "USER_CONFIG_TEMPLATE_ERROR"
    assert "refused by the sandbox: access to attribute '__class__' of 'str' object is unsafe" in e.value.message


def test_one_uep_per_user_and_config(endpoint, users):
    with endpoint.executor("alice@uni.edu", user_endpoint_config={"workers": 3}) as a1, \
            endpoint.executor("alice@uni.edu", user_endpoint_config={"workers": 3}) as a2, \
            endpoint.executor("alice@uni.edu", user_endpoint_config={"workers": 4}) as a3, \
            endpoint.executor("bob@uni.edu", user_endpoint_config={"workers": 3}) as b:
        first = a1.submit(pid_of).result(timeout=60)
        same = [a2.submit(pid_of).result(timeout=60), a1.submit(pid_of).result(timeout=60)]
        other = a3.submit(pid_of).result(timeout=60)
        bobs = b.submit(pid_of).result(timeout=60)
    assert same == [first, first]
    assert len({first, other, bobs}) == 3
    ueps = {u["pid"]: u for u in endpoint.user_endpoints()}
    assert ueps[first]["engine"]["workers_total"] == 3 and ueps[other]["engine"]["workers_total"] == 4
    assert [psutil.Process(p).uids().real for p in (first, other, bobs)] == \
        [users["alice@uni.edu"].pw_uid] * 2 + [users["bob@uni.edu"].pw_uid]


def leave_a_daemon():
    """Start a process that leaves the UEP's tree (its parent exits) but stays in its group."""
    import os
    import subprocess

    out = subprocess.run(["/bin/sh", "-c", "sleep 600 </dev/null >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout), os.getpid()


def test_stopping_the_manager_takes_down_what_a_task_daemonized(broker, users):
    ep = MultiUserEndpoint(broker, mapping={"carol@uni.edu": CAROL}, identities=("carol@uni.edu",))
    try:
        with ep.executor("carol@uni.edu") as ex:
            daemon, uep = ex.submit(leave_a_daemon).result(timeout=60)
        assert psutil.Process(daemon).uids().real == users["carol@uni.edu"].pw_uid
        assert os.getpgid(daemon) == uep and os.getsid(daemon) == uep
        assert daemon not in {p.pid for p in psutil.Process(uep).children(recursive=True)}
    finally:
        ep.close()
    deadline = time.monotonic() + 5
    while processes_of([CAROL]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not processes_of([CAROL])
