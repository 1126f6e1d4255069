"""Every command that takes an endpoint's NAME also takes its id (the UUID in endpoint.json)."""

from __future__ import annotations

import json
import uuid
from typing import Callable

import pytest
from typer.testing import Result

from gce.config.paths import EndpointPaths

# The commands answer the same whether the endpoint is named or given by its id. None of them
# needs a broker or a running manager: a stopped endpoint answers each one quickly.
SAME_ANSWER = [
    ("status", "{}"),
    ("status", "{}", "--json"),
    ("stop", "{}"),
    ("start", "{}"),
    ("restart", "{}"),
    ("render-user-config", "{}"),
    ("idmap", "test", "{}", "alice@example.org"),
    ("enable-on-boot", "{}"),
]


def _endpoint_id(paths: EndpointPaths) -> str:
    return json.loads(paths.endpoint_json.read_text())["endpoint_id"]


def _answer(result: Result) -> tuple[int, str, str]:
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("args", SAME_ANSWER, ids=lambda a: " ".join(a[:2]))
def test_the_id_names_the_endpoint(args: tuple[str, ...], gce: Callable[..., Result],
                                   configured: Callable[..., EndpointPaths]) -> None:
    paths = configured("demo")
    by_name = gce(*(a.format("demo") for a in args))
    by_id = gce(*(a.format(_endpoint_id(paths)) for a in args))
    assert "no such endpoint" not in by_id.stderr and "no endpoint named" not in by_id.stderr
    assert _answer(by_id) == _answer(by_name)


def test_the_id_in_capitals_names_the_endpoint_too(gce: Callable[..., Result],
                                                   configured: Callable[..., EndpointPaths]) -> None:
    paths = configured("demo")
    assert _answer(gce("status", _endpoint_id(paths).upper())) == _answer(gce("status", "demo"))


def test_diagnostic_of_one_endpoint_by_id(gce: Callable[..., Result], configured: Callable[..., EndpointPaths]) -> None:
    paths = configured("demo")
    configured("other")
    result = gce("diagnostic", "--endpoint", _endpoint_id(paths), "--json")
    assert {r["endpoint"] for r in json.loads(result.stdout)} == {None, "demo"}  # this host's checks, then demo's


def test_delete_by_id(gce: Callable[..., Result], configured: Callable[..., EndpointPaths]) -> None:
    paths = configured("demo")
    kept = configured("other")
    result = gce("delete", _endpoint_id(paths), "--yes")
    assert result.exit_code == 0, result.stderr
    assert "endpoint demo deleted" in result.stdout
    assert not paths.config_dir.exists()
    assert kept.config_file.is_file()


@pytest.mark.parametrize("command", ["status", "stop", "start", "delete", "restart"])
def test_an_id_no_endpoint_has(command: str, gce: Callable[..., Result],
                               configured: Callable[..., EndpointPaths]) -> None:
    configured("demo")
    missing = str(uuid.uuid4())
    result = gce(command, missing)
    assert result.exit_code != 0
    assert f"error: no such endpoint {missing!r}: no endpoint is named so or has this id" in result.stderr
    assert "hint: gce list" in result.stderr


def test_two_endpoints_sharing_an_id_are_refused(gce: Callable[..., Result],
                                                 configured: Callable[..., EndpointPaths]) -> None:
    first = configured("first")
    second = configured("second")
    record = json.loads(second.endpoint_json.read_text())
    second.endpoint_json.write_text(json.dumps({**record, "endpoint_id": _endpoint_id(first)}))
    result = gce("status", _endpoint_id(first))
    assert result.exit_code == 78
    assert (f"error: endpoint id {_endpoint_id(first)!r} is ambiguous: endpoints 'first' and 'second' "
            "both have it") in result.stderr
    assert "hint: gce list" in result.stderr
    assert gce("status", "first").exit_code == 3  # the names still work


def test_a_name_that_looks_like_an_id_wins(gce: Callable[..., Result],
                                           configured: Callable[..., EndpointPaths]) -> None:
    other = configured("other")
    odd = configured(_endpoint_id(other))  # an endpoint *named* like other's id
    result = gce("status", _endpoint_id(other), "--json")
    assert json.loads(result.stdout)["name"] == odd.name
