"""A task's time limit as the SDK sends it: Executor(task_timeout=...) or a walltime in its
resource_specification, checked before anything reaches the broker (tests/sdk/conftest.py)."""

from __future__ import annotations

import json
import math
import time

import pytest

from gce.sdk import Client, Executor
from gce.sdk.errors import TaskFailed

pytestmark = pytest.mark.broker

BAD = [(True, TypeError, "not bool True"), ("60", TypeError, "not str '60'"), (None, TypeError, "not NoneType"),
       (math.nan, ValueError, "not nan"), (math.inf, ValueError, "not inf"), (0, ValueError, "not 0"),
       (-1.5, ValueError, "not -1.5")]


def _spied(sdk_broker, **kw) -> Executor:
    return Executor(endpoint_id=sdk_broker.spy_endpoint_id, broker_url=sdk_broker.user_url, **kw)


@pytest.mark.parametrize("value, error, given", [b for b in BAD if b[0] is not None])
def test_a_bad_task_timeout_is_refused_at_construction_naming_what_was_given(sdk_broker, gce_home, value, error,
                                                                             given):
    with pytest.raises(error) as info:
        _spied(sdk_broker, task_timeout=value)
    assert str(info.value).startswith("task_timeout must be a ") and given in str(info.value)
    assert "seconds" in str(info.value)


@pytest.mark.parametrize("value, error, given", BAD)
def test_a_bad_walltime_is_refused_before_anything_reaches_the_broker(sdk_broker, spy, gce_home, value, error,
                                                                      given):
    with pytest.raises(error, match=r"resource_specification\['walltime'\] must be .*" + given):
        _spied(sdk_broker, resource_specification={"walltime": value})
    ex = _spied(sdk_broker)
    try:
        with pytest.raises(error, match=given):
            ex.resource_specification = {"walltime": value}
        ex.resource_specification["walltime"] = value  # changed in place: caught at submit
        with pytest.raises(error, match=r"resource_specification\['walltime'\] must be .*" + given):
            ex.submit(time.sleep, 0)
        with pytest.raises(error, match=given):
            with Client(sdk_broker.user_url) as client:
                fid = client.register_function(time.sleep)
                client.run(0, endpoint_id=sdk_broker.spy_endpoint_id, function_id=fid,
                           resource_specification={"walltime": value})
        assert ex._link.wait_published(10)
        assert spy.waiting() == 0
    finally:
        ex.shutdown(wait=False, cancel_futures=True)


def test_task_timeout_travels_as_each_task_s_walltime_and_a_walltime_of_its_own_wins(sdk_broker, spy, gce_home):
    ex = _spied(sdk_broker, task_timeout=60, resource_specification={"num_nodes": 1})
    try:
        ex.submit(time.sleep, 0)
        ex.resource_specification = {"walltime": 2.5}
        ex.submit(time.sleep, 0)
        got = spy.take(2)
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
    specs = [json.loads(props.headers["resource-specification"]) for props, _ in got]
    assert specs == [{"num_nodes": 1, "walltime": 60}, {"walltime": 2.5}]
    assert ex.resource_specification == {"walltime": 2.5}  # task_timeout is not written into it


def test_a_task_past_its_timeout_fails_with_timeout_naming_the_limit(sdk_broker, gce_home):
    with Executor(endpoint_id=sdk_broker.endpoint_id, broker_url=sdk_broker.user_url, task_timeout=1) as ex:
        began = time.monotonic()
        slow, quick = ex.submit(time.sleep, 30), ex.submit(pow, 2, 10)
        with pytest.raises(TaskFailed) as info:
            slow.result(timeout=30)
        assert time.monotonic() - began < 10
        assert quick.result(timeout=30) == 1024
    assert info.value.code == "TIMEOUT" and "time limit of 1 s" in str(info.value)
