"""What goes wrong on a multi-user endpoint, for real as root: each fault is answered to its
submitter as an error result that says why, is logged for the admin, and costs nobody else.

One endpoint serves every case here: its identity mapping runs the admin's external program
first (which hangs for one identity and prints garbage for another), then expression rules;
only @uni.edu identities are allowed; its template fails to render for one user config.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import re
import sys
import time

import psutil
import pytest

from gce.daemon import control
from gce.sdk.errors import TaskFailed
from tests.daemon.multiuser import USERS, MultiUserEndpoint, expression_mapping, local_accounts, processes_of
from tests.endpoint import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create users and drop privileges")

MAPPER = """\
import json, sys, time
who = json.load(sys.stdin)["identities"][0]["username"]
if who == "hang@uni.edu":
    time.sleep(600)
elif who == "garbage@uni.edu":
    print("<html>502 Bad Gateway</html>")
    print("directory server unreachable", file=sys.stderr)
# anyone else: an empty answer, so the expression rules decide
"""
TEMPLATE = """engine:
  type: ThreadPoolEngine
  max_workers: {{ workers }}
{% if workers == 3 %}
  queue: {{ queue_name }}
{% endif %}
"""
# Long enough for alice's mapping and task on a loaded machine: the hung mapping must still be
# running when her result comes.
MAPPING_TIMEOUT = 15.0
IDENTITIES = (*USERS, "hang@uni.edu", "garbage@uni.edu", "ghost@uni.edu", "eve@elsewhere.org")


def whoami():
    import os

    return os.getuid()


@pytest.fixture(scope="module")
def users():
    with local_accounts() as accounts:
        yield accounts


@pytest.fixture(scope="module")
def endpoint(broker, users, tmp_path_factory):
    mapper = tmp_path_factory.mktemp("mapper") / "mapper.py"
    mapper.write_text(MAPPER)
    mapping = [
        {"DATA_TYPE": "external_identity_mapping#1.0.0", "command": [sys.executable, str(mapper)]},
        expression_mapping({**USERS, "ghost@uni.edu": "gcetest-nosuchuser", "eve@elsewhere.org": "gcetest-mu-a"}),
    ]
    ep = MultiUserEndpoint(broker, mapping=mapping, template=TEMPLATE, identities=IDENTITIES,
                           extra={"allowed_domains": ["uni.edu"], "identity_mapping_timeout": MAPPING_TIMEOUT})
    yield ep
    ep.close()
    wait_until(lambda: not processes_of(["gcetest-mu-a", "gcetest-mu-b"]), timeout=20)


def failure_of(ep: MultiUserEndpoint, identity: str, **kw) -> TaskFailed:
    with ep.executor(identity, **kw) as ex:
        with pytest.raises(TaskFailed) as e:
            ex.submit(whoami).result(timeout=60)
    return e.value


def admin_log(ep: MultiUserEndpoint) -> str:
    return ep.paths.log_file.read_text(errors="replace")


def test_a_hanging_mapper_holds_up_only_its_identity(endpoint, users):
    # Her user endpoint is started first: what is timed below is her mapping and her task, not a cold start.
    with endpoint.executor("alice@uni.edu") as alice:
        assert alice.submit(whoami).result(timeout=60) == users["alice@uni.edu"].pw_uid
    # A changed mapping file makes the endpoint forget who it mapped: alice is mapped afresh below,
    # her mapping program running while the hung one does.
    mapping_file = endpoint.paths.config_dir / "identity_mapping.json"
    os.utime(mapping_file, ns=(time.time_ns(), time.time_ns()))
    with endpoint.executor("hang@uni.edu") as hung, endpoint.executor("alice@uni.edu") as alice:
        stuck = hung.submit(whoami)
        wait_until(lambda: [p for p in processes_of(["root"]) if "mapper.py" in p], timeout=60)  # it hangs now
        t = time.monotonic()
        assert alice.submit(whoami).result(timeout=60) == users["alice@uni.edu"].pw_uid
        served_in = time.monotonic() - t
        assert not stuck.done(), "alice was only served after the hanging mapping gave up"
        with pytest.raises(TaskFailed) as e:
            stuck.result(timeout=60)
    assert served_in < MAPPING_TIMEOUT
    assert e.value.code == "IDENTITY_NOT_MAPPED"
    assert "'hang@uni.edu'" in str(e.value) and "'mu'" in str(e.value)
    assert f"did not answer within {MAPPING_TIMEOUT:g} s" in str(e.value)
    assert not [p for p in processes_of(["root"]) if "mapper.py" in p], "the hung program was not killed"
    # A burst from the same identity runs the program once, and everyone else still gets through.
    with endpoint.executor("hang@uni.edu") as hung, endpoint.executor("bob@uni.edu") as bob:
        futures = [hung.submit(whoami) for _ in range(5)]
        assert bob.submit(whoami).result(timeout=60) == users["bob@uni.edu"].pw_uid
        done, _ = cf.wait(futures, timeout=60)
    assert len(done) == 5 and all(isinstance(f.exception(), TaskFailed) for f in futures)
    assert admin_log(endpoint).count("did not answer within") <= 3


def test_a_mapper_printing_garbage_is_a_clear_refusal(endpoint, users):
    e = failure_of(endpoint, "garbage@uni.edu")
    assert e.code == "IDENTITY_NOT_MAPPED"
    assert "'garbage@uni.edu'" in str(e) and "printed something that is not JSON" in str(e)
    assert "directory server unreachable" not in str(e)  # the program's stderr is for the admin only
    log = admin_log(endpoint)
    assert "external mapping" in log and "directory server unreachable" in log
    with endpoint.executor("alice@uni.edu") as ex:
        assert ex.submit(whoami).result(timeout=60) == users["alice@uni.edu"].pw_uid


def test_an_unknown_local_user_is_refused(endpoint, users):
    e = failure_of(endpoint, "ghost@uni.edu")
    assert e.code == "IDENTITY_NOT_MAPPED"
    assert "'ghost@uni.edu'" in str(e) and "'gcetest-nosuchuser'" in str(e) and "not a local user" in str(e)
    assert re.search(r"refused a task of 'ghost@uni.edu' \(rule: local user exists\)", admin_log(endpoint))


def test_an_identity_outside_the_allowed_domains_is_refused(endpoint, users):
    e = failure_of(endpoint, "eve@elsewhere.org")  # the mapping would give her alice's account
    assert e.code == "IDENTITY_REFUSED"
    assert "'eve@elsewhere.org' is not allowed on endpoint 'mu'" in str(e) and "uni.edu" in str(e)
    assert re.search(r"refused a task of 'eve@elsewhere.org' \(rule: allowed_domains\)", admin_log(endpoint))


def test_a_template_that_fails_to_render_reaches_the_submitter(endpoint, users):
    e = failure_of(endpoint, "bob@uni.edu", user_endpoint_config={"workers": 3})
    assert e.code == "USER_CONFIG_TEMPLATE_ERROR"  # the admin's to fix, and the submitter is told so
    assert "queue_name" in str(e) and "undefined" in str(e)
    # The same user with another config, and the other user, are served meanwhile.
    with endpoint.executor("bob@uni.edu", user_endpoint_config={"workers": 2}) as b, \
            endpoint.executor("alice@uni.edu", user_endpoint_config={"workers": 3}) as a:
        assert b.submit(whoami).result(timeout=60) == users["bob@uni.edu"].pw_uid
        with pytest.raises(TaskFailed):
            a.submit(whoami).result(timeout=60)


CRASHING_ENVIRONMENT = "PYTHONHOME: /nonexistent/python\n"  # the admin's typo: no Python can start


def test_a_user_endpoint_that_keeps_crashing_goes_fatal_with_its_last_log_lines(broker, users):
    ep = MultiUserEndpoint(broker, mapping={"alice@uni.edu": "gcetest-mu-a"}, environment=CRASHING_ENVIRONMENT,
                           identities=("alice@uni.edu",))
    try:
        t = time.monotonic()
        with ep.executor("alice@uni.edu") as ex:
            with pytest.raises(TaskFailed) as e:
                ex.submit(whoami).result(timeout=120)
        took = time.monotonic() - t
        # Three quick failures, then fatal: the reason is what the process said, not an exit code.
        assert e.value.code == "ENDPOINT_FAILED"
        assert "exited with status 1 before it was ready" in str(e.value)
        assert "No module named 'encodings'" in str(e.value) or "Fatal Python error" in str(e.value)
        assert took < 60
        starts = admin_log(ep).count("started user endpoint gcetest-mu-a/")
        assert starts == 3
        # No restart loop: nothing starts again by itself, and the manager still answers.
        time.sleep(5)
        assert admin_log(ep).count("started user endpoint gcetest-mu-a/") == starts
        [uep] = control.request(ep.paths, "status", timeout=5.0)["user_endpoints"]
        assert uep["state"] == "fatal" and uep["pid"] is not None
        assert "before it was ready" in uep["reason"]
        assert not [p for p in psutil.Process(ep.pid).children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]
    finally:
        ep.close()


def test_a_missing_home_directory_is_reported_as_such(endpoint, users):
    home = users["bob@uni.edu"].pw_dir
    os.rename(home, home + ".away")
    try:
        e = failure_of(endpoint, "bob@uni.edu", user_endpoint_config={"workers": 1})
    finally:
        os.rename(home + ".away", home)
    assert e.code == "ENDPOINT_FAILED"
    assert f"the home directory {home} of user gcetest-mu-b does not exist" in str(e)
    assert f"home directory {home} of user gcetest-mu-b does not exist" in admin_log(endpoint)
