"""Before the first task to an endpoint the SDK compares its Python, gce and cloudpickle with the
endpoint's, as the endpoint's status on the broker tells them, and refuses or warns by one rule."""

from __future__ import annotations

import platform
import time
import warnings

import pytest

from gce import __version__
from gce.sdk import Client, Executor, serialize, versions
from gce.sdk.versions import Runtime, VersionMismatch, VersionWarning, verdict

HERE = Runtime(python="3.11.2", gce="1.4.0", cloudpickle="3.0.0")


def double(x):
    return 2 * x


# -- the rule (pure) ----------------------------------------------------------------------------

def test_a_python_minor_mismatch_refuses_pickled_functions_and_warns_for_source():
    there = Runtime(python="3.9.18", gce="1.4.0", cloudpickle="3.0.0")
    refusal, warned = verdict(HERE, there, serialize.KIND_PICKLE)
    assert refusal is not None and "3.9.18" in refusal and "3.11.2" in refusal and warned == []
    refusal, warned = verdict(HERE, there, serialize.KIND_SOURCE)
    assert refusal is None and len(warned) == 1 and "3.9.18" in warned[0] and "3.11.2" in warned[0]


def test_patch_levels_pass_and_gce_minor_or_cloudpickle_major_warn():
    assert verdict(HERE, Runtime("3.11.9", "1.4.7", "3.1.0"), serialize.KIND_PICKLE) == (None, [])
    refusal, warned = verdict(HERE, Runtime("3.11.2", "1.5.0", "2.2.1"), serialize.KIND_PICKLE)
    assert refusal is None and len(warned) == 2
    assert "gce 1.5.0" in warned[0] and "gce 1.4.0" in warned[0]
    assert "cloudpickle 2.2.1" in warned[1] and "cloudpickle 3.0.0" in warned[1]
    # A source-code function is not pickled: cloudpickle does not matter for it.
    assert len(verdict(HERE, Runtime("3.11.2", "1.4.0", "2.2.1"), serialize.KIND_SOURCE)[1]) == 0


def test_an_endpoint_that_does_not_say_its_versions_is_not_checked():
    assert versions.remote({"status": "unknown"}) is None
    assert versions.remote({"status": "online", "details": {"gce_version": "1.0.0"}}) is None  # an older endpoint
    assert verdict(HERE, Runtime("", "", ""), serialize.KIND_PICKLE) == (None, [])


# -- against the real endpoint and its status queue ---------------------------------------------

def _versions_reported(client: Client, endpoint_id: str) -> dict:
    deadline = time.monotonic() + 20
    while True:
        details = client.get_endpoint_status(endpoint_id).get("details") or {}
        if "python_version" in details or time.monotonic() > deadline:
            return details
        time.sleep(0.5)


@pytest.mark.broker
def test_the_endpoint_status_carries_its_versions(sdk_broker):
    with Client(sdk_broker.user_url) as c:
        details = _versions_reported(c, sdk_broker.endpoint_id)
    import cloudpickle

    assert details["python_version"] == platform.python_version()
    assert details["gce_version"] == __version__
    assert details["cloudpickle_version"] == cloudpickle.__version__


@pytest.mark.broker
def test_matching_versions_submit_without_a_word(sdk_broker):
    with warnings.catch_warnings():
        warnings.simplefilter("error", VersionWarning)
        with Executor(sdk_broker.endpoint_id, broker_url=sdk_broker.user_url) as ex:
            assert ex.submit(double, 4).result(timeout=30) == 8


@pytest.mark.broker
def test_a_python_mismatch_refuses_pickled_tasks_and_warns_once_for_source(sdk_broker, monkeypatch):
    with Client(sdk_broker.user_url) as c:
        theirs = _versions_reported(c, sdk_broker.endpoint_id)["python_version"]
    monkeypatch.setattr(versions, "local", lambda: Runtime("2.7.18", __version__, versions.local_cloudpickle()))
    with Executor(sdk_broker.endpoint_id, broker_url=sdk_broker.user_url) as ex:
        with pytest.raises(VersionMismatch) as info:
            ex.submit(double, 4)
        assert "2.7.18" in str(info.value) and theirs in str(info.value)
        assert "register_source_code" in str(info.value)
        fid = ex.register_source_code("def triple(x):\n    return 3 * x\n", "triple")
        with pytest.warns(VersionWarning, match="2.7.18") as seen:
            first = ex.submit_to_registered_function(fid, (5,))
            second = ex.submit_to_registered_function(fid, (6,))  # once per endpoint
        assert len([w for w in seen if issubclass(w.category, VersionWarning)]) == 1
        assert (first.result(timeout=30), second.result(timeout=30)) == (15, 18)
    with Client(sdk_broker.user_url) as c:
        with pytest.raises(VersionMismatch):
            c.run(1, endpoint_id=sdk_broker.endpoint_id, function_id=c.register_function(double))


@pytest.mark.broker
def test_a_gce_minor_mismatch_warns_with_both_versions(sdk_broker, monkeypatch):
    with Client(sdk_broker.user_url) as c:
        _versions_reported(c, sdk_broker.endpoint_id)
    major, minor = __version__.split(".")[:2]
    mine = f"{major}.{int(minor) + 1}.0"
    monkeypatch.setattr(versions, "local", lambda: Runtime(platform.python_version(), mine,
                                                           versions.local_cloudpickle()))
    with pytest.warns(VersionWarning, match=f"gce {mine}.*gce {__version__}|gce {__version__}.*gce {mine}"):
        with Executor(sdk_broker.endpoint_id, broker_url=sdk_broker.user_url) as ex:
            assert ex.submit(double, 1).result(timeout=30) == 2
