"""Per-user policy on a real multi-user endpoint: the admin's user config template sets
allowed_functions and allowed_serializers from a user's values, and those only narrow what
config.yaml allows: a hostile user_endpoint_config that lists a function or a serializer config.yaml
does not gets it refused all the same. The audit log says to whom each task was mapped, or why
it was not, and is root's alone. Run under flock /tmp/gce-mu.lock (it creates local accounts)."""

from __future__ import annotations

import os
import stat

import pytest

from gce import auditlog
from gce.sdk import serialize
from gce.sdk.errors import TaskFailed
from tests.daemon.multiuser import MultiUserEndpoint, local_accounts

pytestmark = [pytest.mark.broker, pytest.mark.skipif(os.geteuid() != 0, reason="creates local accounts")]

USERS = {"carol@uni.edu": "gcetest-pol-c"}
TEMPLATE = """engine:
  type: ThreadPoolEngine
  max_workers: 1
allowed_functions: {{ functions }}
allowed_serializers: {{ serializers }}
"""


def square(x):
    return x * x


def cube(x):
    return x * x * x


def evil(x):
    return "ran"


def fid(fn) -> str:
    return serialize.function_id_of(*serialize.serialize_function(fn))


ADD_SOURCE = "def add(a, b=1):\n    return a + b\n"


def schema() -> dict:
    # Function ids are taken when the test runs, as the Executor takes them: a function pickled while
    # its module is still being imported is pickled by value, and has another id.
    return {"type": "object", "additionalProperties": False, "properties": {
        "functions": {"type": "array", "items": {"type": "string"}, "default": [fid(square), fid(cube)]},
        "serializers": {"type": "array", "items": {"type": "string"}, "default": ["cloudpickle", "source"]}}}


def outcome(future):
    try:
        return future.result(timeout=90)
    except TaskFailed as e:
        return e.code


def test_a_template_narrows_the_endpoint_policy_per_user_and_never_widens_it(broker):
    with local_accounts(names=tuple(USERS.values()), users=USERS) as accounts:
        ep = MultiUserEndpoint(broker, mapping=USERS, template=TEMPLATE, schema=schema(),
                               identities=(*USERS, "dave@uni.edu"),  # dave maps to no account
                               extra={"allowed_functions": [fid(square), fid(cube)],
                                      "allowed_serializers": ["cloudpickle"]})
        try:
            # The template's defaults: config.yaml's functions, and a "source" config.yaml does not allow.
            with ep.executor("carol@uni.edu") as ex:
                assert [outcome(ex.submit(f, 2)) for f in (square, cube, evil)] == [4, 8, "FUNCTION_NOT_ALLOWED"]
                sid = ex.register_source_code(ADD_SOURCE, "add")
                assert outcome(ex.submit_to_registered_function(sid, args=(1,))) == "SERIALIZER_NOT_ALLOWED"
            # Hostile values: a function and a serializer config.yaml does not allow, beside one it does.
            hostile = {"functions": [fid(evil), fid(cube), serialize.function_id_of(b"source", b"add\n" +
                                                                                   ADD_SOURCE.encode())],
                       "serializers": ["source", "cloudpickle"]}
            with ep.executor("carol@uni.edu", user_endpoint_config=hostile) as ex:
                assert [outcome(ex.submit(f, 3)) for f in (square, cube, evil)] == \
                    ["FUNCTION_NOT_ALLOWED", 27, "FUNCTION_NOT_ALLOWED"]
                sid = ex.register_source_code(ADD_SOURCE, "add")
                assert outcome(ex.submit_to_registered_function(sid, args=(1,))) == "SERIALIZER_NOT_ALLOWED"
            # Narrower values are kept: no pickled function at all for this user config.
            with ep.executor("carol@uni.edu", user_endpoint_config={"serializers": []}) as ex:
                assert outcome(ex.submit(square, 2)) == "SERIALIZER_NOT_ALLOWED"

            with ep.executor("dave@uni.edu") as ex:
                unmapped = ex.submit(square, 2)
                assert outcome(unmapped) == "IDENTITY_NOT_MAPPED"

            path = auditlog.audit_path(ep.paths)
            dave = [r for r in auditlog.read(path) if r["task_id"] == unmapped.task_id]
            assert [(r["event"], r["submitter"], r.get("code")) for r in dave] == [
                ("received", "dave@uni.edu", None), ("refused", "dave@uni.edu", "IDENTITY_NOT_MAPPED")]
            assert "dave@uni.edu" in dave[1]["reason"] and "local_user" not in dave[1]
            st = path.stat()
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
            carol = accounts["carol@uni.edu"]
            mapped = [r for r in auditlog.read(path) if r["event"] == "mapped"]
            assert len(mapped) == 9 and {(r["submitter"], r["local_user"], r["uid"]) for r in mapped} == \
                {("carol@uni.edu", carol.pw_name, carol.pw_uid)}
            refused = [r["code"] for r in auditlog.read(path, local_user=carol.pw_name) if r["event"] == "refused"]
            assert sorted(refused) == ["FUNCTION_NOT_ALLOWED"] * 3 + ["SERIALIZER_NOT_ALLOWED"] * 3
        finally:
            ep.close()
