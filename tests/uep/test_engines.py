"""Each engine end to end: SDK -> broker -> manager -> UEP -> engine workers -> back."""

from __future__ import annotations

import concurrent.futures as cf

import pytest

from gce.daemon import control

pytestmark = pytest.mark.broker


def square(x):
    return x * x


def fail(msg):
    raise RuntimeError(msg)


@pytest.mark.parametrize("engine", ["thread", "process", "htex"])
def test_engine_runs_tasks_and_reports_errors_with_remote_tracebacks(make_endpoint, engine):
    ep = make_endpoint(engine=engine)
    info = ep.start()
    assert info["endpoint_id"] == ep.endpoint_id
    with ep.executor() as ex:
        futs = {ex.submit(square, i): i for i in range(40)}
        for f in cf.as_completed(futs, timeout=120):
            assert f.result() == futs[f] ** 2
        assert list(ex.map(square, range(5))) == [0, 1, 4, 9, 16]
        with pytest.raises(RuntimeError, match="kaboom") as err:
            ex.submit(fail, "kaboom").result(timeout=60)
        assert "in fail" in getattr(err.value, "remote_traceback", "")
    status = control.request(ep.paths, "status")
    uep = status["user_endpoints"][0]
    assert uep["state"] == "running" and uep["engine"]["type"].startswith(
        {"thread": "Thread", "process": "Process", "htex": "HighThroughput"}[engine])
    assert status["tasks"]["completed"] >= 45 and status["tasks"]["failed"] >= 1


def test_a_python_version_mismatch_is_named_instead_of_an_opaque_failure(make_endpoint):
    import platform

    from tests.endpoint import RawClient

    ep = make_endpoint(engine="thread")
    ep.start()
    raw = RawClient(ep.user_url, ep.endpoint_id)
    tid, headers, body = raw.task(square, (3,), python_version="3.7.17")
    raw.publish(body, tid, headers)
    result = raw.results(1)[tid]
    raw.close()
    assert result.error_code == "VERSION_MISMATCH"
    assert "Python 3.7.17" in result.error_message and f"Python {platform.python_version()}" in result.error_message
