"""allowed_serializers on a real endpoint: a kind of function body config.yaml does not list is
refused SERIALIZER_NOT_ALLOWED before anything is unpickled, whatever the task's headers claim; the
kinds it lists run. (The template's own allowed_functions and allowed_serializers, which only
narrow config.yaml's: tests/daemon/test_multiuser_policy.py.)"""

from __future__ import annotations

import pickle
import uuid

import pytest

from gce import auditlog
from gce.sdk import serialize
from gce.sdk.errors import TaskFailed
from gce.transport.message import TaskHeaders
from tests.endpoint import RawClient

pytestmark = pytest.mark.broker


def square(x):
    return x * x


class Planted:
    """Unpickling it creates MARKER: what a worker that unpickled a refused payload would leave."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_only_the_allowed_serializers_run_and_a_refused_one_is_never_unpickled(make_endpoint, tmp_path):
    ep = make_endpoint(allowed_serializers=["source"])
    ep.start()
    with ep.executor() as ex:
        with pytest.raises(TaskFailed) as e:
            ex.submit(square, 3).result(timeout=60)
        assert e.value.code == "SERIALIZER_NOT_ALLOWED"
        assert e.value.message == ("this endpoint does not run functions serialized as 'cloudpickle': its "
                                   "allowed_serializers are source (submit it with register_source_code)")
        sid = ex.register_source_code("def add(a, b=1):\n    return a + b\n", "add")
        assert ex.submit_to_registered_function(sid, args=(1,), kwargs={"b": 5}).result(timeout=60) == 6

    marker = tmp_path / "unpickled"
    blob = pickle.dumps(Planted(str(marker)))
    raw = RawClient(ep.user_url, ep.endpoint_id)
    try:
        tid = str(uuid.uuid4())
        th = TaskHeaders(task_id=tid, user_id="alice", reply_to=raw.queue, serializer="source",  # a lie
                         function_id=serialize.function_id_of(serialize.KIND_PICKLE, blob))
        raw.publish(serialize.pack_task(serialize.KIND_PICKLE, blob, serialize.serialize_args((), {})), tid,
                    th.amqp_headers())
        assert raw.results(1)[tid].error_code == "SERIALIZER_NOT_ALLOWED"
    finally:
        raw.close()
    assert not marker.exists()
    refused = [r for r in auditlog.read(auditlog.audit_path(ep.paths)) if r["event"] == "refused"]
    assert [(r["task_id"], r["code"]) for r in refused][-1] == (tid, "SERIALIZER_NOT_ALLOWED")
