"""The task policy's pure parts: a template narrows config.yaml's lists and never widens them, and a
payload's serializer is read from its bytes without unpickling them. (With real tasks:
tests/daemon/test_task_policy.py and tests/daemon/test_multiuser_policy.py.)"""

from __future__ import annotations

import pytest

from gce.config.uep import UepConfig
from gce.sdk import serialize
from gce.uep.policy import TaskPolicy, kind_of, narrowed, site_locked

A, B, C = "a" * 64, "b" * 64, "c" * 64


@pytest.mark.parametrize("site, template, expected", [
    (None, None, None),  # neither lists: any
    ([A, B], None, (A, B)),  # the template says nothing: config.yaml's
    (None, [B, C], (B, C)),  # config.yaml allows any: the template's
    ([A, B], [B, C], (B,)),  # both: only what both allow; C is never let in
    ([A], [C], ()),  # nothing in common: nothing runs
    ([A, B], [], ()),
    ([], [A], ()),
])
def test_a_template_only_narrows_what_config_yaml_allows(site, template, expected):
    assert narrowed(site, template) == expected


def test_site_locked_applies_the_rendered_lists_within_the_endpoint_config():
    conf = UepConfig(endpoint_id="e", engine={}, run_dir="/r", max_result_bytes=1, allowed_functions=(A, B),
                     allowed_serializers=("source",))
    assert site_locked(conf, None) == conf
    hostile = site_locked(conf, {"engine": {}, "allowed_functions": [C, B], "allowed_serializers": ["cloudpickle"]})
    assert (hostile.allowed_functions, hostile.allowed_serializers) == ((B,), ())
    assert UepConfig.from_dict(hostile.to_dict()) == hostile  # as the manager writes it and the UEP reads it


def test_a_payload_is_judged_by_its_bytes():
    kind, blob = serialize.serialize_function(len)
    payload = serialize.pack_task(kind, blob, serialize.serialize_args((), {}))
    assert kind_of(payload) == b"cloudpickle"
    fid = serialize.function_id_of(kind, blob)
    only_source = TaskPolicy(serializers=frozenset({"source"}))
    refused = only_source.refused(payload, fid)
    assert refused is not None and refused.code == "SERIALIZER_NOT_ALLOWED"
    assert TaskPolicy().refused(payload, fid) is None
    not_listed = TaskPolicy(functions=frozenset({A}))
    assert not_listed.refused(payload, fid).sentence == f"function {fid} is not in this endpoint's allowed_functions"
    nothing = TaskPolicy(serializers=frozenset())
    assert nothing.refused(payload, fid).sentence == ("this endpoint does not run functions serialized as "
                                                      "'cloudpickle': its allowed_serializers are none")
