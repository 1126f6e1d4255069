"""max_retries_on_system_failure as the SDK sends it: checked when set, and carried in each task's
headers, where the endpoint reads it (tests/uep/test_retries.py runs it on a real endpoint)."""

from __future__ import annotations

import pytest

from gce.sdk import Executor
from gce.transport.message import PROTOCOL_VERSION, BadMessage, parse_task

pytestmark = pytest.mark.broker


def _spied(sdk_broker, **kw) -> Executor:
    return Executor(endpoint_id=sdk_broker.spy_endpoint_id, broker_url=sdk_broker.user_url, **kw)


def test_the_executors_value_travels_in_each_tasks_headers_and_none_sends_nothing(sdk_broker, spy, gce_home):
    ex = _spied(sdk_broker, max_retries_on_system_failure=2)
    try:
        ex.submit(pow, 2, 3)
        ex.max_retries_on_system_failure = None
        ex.submit(pow, 2, 3)
        got = spy.take(2)
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
    parsed = [parse_task(p.message_id, p.user_id, p.reply_to, p.headers) for p, _ in got]
    assert [t.max_retries_on_system_failure for t in parsed] == [2, None]
    assert "max-retries-on-system-failure" not in got[1][0].headers


@pytest.mark.parametrize("value, error, said", [(True, TypeError, "not bool True"), (1.5, TypeError, "not float"),
                                                (-1, ValueError, "from 0 to 999, not -1"),
                                                (1000, ValueError, "not 1000")])
def test_a_bad_value_is_refused_when_set(sdk_broker, gce_home, value, error, said):
    with pytest.raises(error, match="max_retries_on_system_failure must be") as info:
        _spied(sdk_broker, max_retries_on_system_failure=value)
    assert said in str(info.value)


@pytest.mark.parametrize("header", ["-1", "two", "1000", "²"])
def test_the_endpoint_refuses_a_header_that_is_no_whole_number(header):
    headers = {"gce-protocol": PROTOCOL_VERSION, "function-id": "0" * 64, "max-retries-on-system-failure": header}
    with pytest.raises(BadMessage, match="max-retries-on-system-failure"):
        parse_task("00000000-0000-0000-0000-000000000000", "alice", "gce.results.alice.x", headers)
