"""A real endpoint's audit log: one line per task event, no secret in it (planted in the broker URL,
the user endpoint config, the arguments and a failure's sentence), read back by `gce audit`; and a
full audit disk that never stops a task, shown in the status and written once there is room."""

from __future__ import annotations

import json
import os
import pwd
import stat
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from gce import auditlog
from gce.cli import app
from gce.daemon.client import EndpointClient
from gce.sdk import serialize
from gce.sdk.errors import TaskFailed
from tests.daemon.tmpfs import fill, small_disk
from tests.endpoint import RawClient, wait_until

pytestmark = pytest.mark.broker
SECRET_ARG = "arg-secret-5b1f0c"
SECRET_CONFIG = "config-secret-9d2e7a"


def echo(value):
    return len(value)


def leak(value):
    raise ValueError(f"the secret is {value}")


def refused(value):
    return value


def function_id(fn) -> str:
    return serialize.function_id_of(*serialize.serialize_function(fn))


def events_of(path, task_id: str) -> list[tuple]:
    return [(r["event"], r.get("status"), r.get("code")) for r in auditlog.read(path) if r["task_id"] == task_id]


def test_each_task_event_is_one_line_with_no_payload_argument_or_password(make_endpoint):
    ep = make_endpoint(allowed_functions=[function_id(echo), function_id(leak)])
    ep.start()
    path = auditlog.audit_path(ep.paths)
    passwords = {urlsplit(u).password for u in (ep.endpoint_url, ep.user_url)}
    assert all(passwords)
    with ep.executor(user_endpoint_config={"token": SECRET_CONFIG}) as ex:
        ok = ex.submit(echo, SECRET_ARG)
        assert ok.result(timeout=60) == len(SECRET_ARG)
        with pytest.raises(ValueError):
            ex.submit(leak, SECRET_ARG).result(timeout=60)
        with pytest.raises(TaskFailed) as no:
            ex.submit(refused, SECRET_ARG).result(timeout=60)
        assert no.value.code == "FUNCTION_NOT_ALLOWED"
    raw = RawClient(ep.user_url, ep.endpoint_id)
    try:
        raw.publish(b"junk " + SECRET_ARG.encode(), "t-malformed", {"function-id": "x"})  # no protocol header
        assert raw.results(1)["t-malformed"].error_code == "BAD_MESSAGE"
    finally:
        raw.close()

    records = list(auditlog.read(path))
    by_task: dict[str, list[dict]] = {}
    for r in records:
        by_task.setdefault(r["task_id"], []).append(r)
    ok_id = ok.task_id
    assert [r["event"] for r in by_task[ok_id]] == ["received", "mapped", "sent", "started", "finished"]
    received, mapped, sent, started, finished = by_task[ok_id]
    assert (received["submitter"], received["function_id"], received["function_name"], received["endpoint"],
            received["endpoint_id"]) == ("alice", function_id(echo), "echo", ep.name, ep.endpoint_id)
    assert (mapped["local_user"], mapped["uid"]) == (pwd.getpwuid(os.geteuid()).pw_name, os.geteuid())
    assert sent["uep"] == "default" and finished["status"] == "success" and "code" not in finished
    assert received["ts"] <= mapped["ts"] <= sent["ts"] <= started["ts"] <= finished["ts"]
    failed = [t for t, rs in by_task.items() if rs[-1].get("code") == "TASK_EXCEPTION"]
    assert len(failed) == 1 and [r["event"] for r in by_task[failed[0]]][-1] == "finished"
    assert "reason" not in by_task[failed[0]][-1]  # the function's own sentence (it quotes its argument)
    no_id = [t for t, rs in by_task.items() if rs[-1].get("code") == "FUNCTION_NOT_ALLOWED"][0]
    assert [r["event"] for r in by_task[no_id]] == ["received", "mapped", "sent", "refused"]
    assert by_task[no_id][-1]["reason"] == f"function {function_id(refused)} is not in this endpoint's " \
                                           "allowed_functions"
    assert [(r["event"], r["code"]) for r in by_task["t-malformed"]] == [("refused", "BAD_MESSAGE")]
    assert by_task["t-malformed"][0]["submitter"] == "alice"

    text = b"".join(p.read_bytes() for p in auditlog.files(path))
    for secret in (SECRET_ARG, SECRET_CONFIG, "the secret is", *passwords):
        assert secret.encode() not in text, secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_uid == os.geteuid()
    assert path.parent == ep.paths.log_file.parent / "audit"

    runner = CliRunner()
    shown = runner.invoke(app, ["audit", ep.name, "--json"])
    assert shown.exit_code == 0, shown.stderr
    assert [json.loads(line) for line in shown.stdout.splitlines()] == records
    text_lines = runner.invoke(app, ["audit", ep.name]).stdout.splitlines()
    assert len(text_lines) == len(records)
    assert f"received {ok_id} submitter=alice function_name=echo function_id={function_id(echo)}" in text_lines[0]
    status = EndpointClient(ep.paths).status()
    assert (status.audit.path, status.audit.waiting, status.audit.lost, status.audit.error) == (str(path), 0, 0, "")


def test_a_full_audit_disk_never_stops_a_task_and_its_lines_are_written_once_there_is_room(make_endpoint):
    ep = make_endpoint()
    path = auditlog.audit_path(ep.paths)
    with small_disk(path.parent, "64k") as disk:
        filler = fill(disk)
        ep.start()
        client = EndpointClient(ep.paths)
        with ep.executor() as ex:
            assert [f.result(timeout=60) for f in [ex.submit(echo, "x" * i) for i in range(5)]] == list(range(5))
            status = client.status()
            assert status.audit.waiting >= 5 * 5 and status.audit.error == os.strerror(28)
            assert status.state == "running" and status.accepting_tasks
            runner = CliRunner()
            shown = runner.invoke(app, ["status", ep.name])
            assert f"audit {path} (cannot be written: No space left on device, " \
                   f"{status.audit.waiting} lines waiting)" in " ".join(shown.stdout.split()), shown.stdout
            filler.unlink()
            wait_until(lambda: client.status().audit.waiting == 0, timeout=15)
            assert client.status().audit == type(status.audit)(str(path), 0, 0, "")
            events = [r["event"] for r in auditlog.read(path)]
            assert events.count("finished") == 5 and events.count("received") == 5
            assert ex.submit(echo, "yy").result(timeout=60) == 2
        wait_until(lambda: [r["event"] for r in auditlog.read(path)].count("finished") == 6, timeout=15)
        ep.stop()
