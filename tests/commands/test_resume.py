"""gce resume: what it asks the manager, what it prints, and its errors (the manager's side:
tests/daemon/test_control_resume.py; a real endpoint: tests/daemon/test_breaker_endpoint.py)."""

from __future__ import annotations

import json

from tests.commands.helpers import answering, running

RESUMED = {"ok": True, "resumed": [{"uep": "default", "reason": "block 2 exited with code 1"}]}


def test_resume_prints_what_it_resumed(gce, configured):
    paths = configured("demo")
    with running(paths), answering(paths, {"resume": RESUMED}) as requests:
        result = gce("resume", "demo")
    assert requests == [{"command": "resume", "args": {}}]
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "resumed user endpoint default of demo (its blocks had failed: block 2 exited with code 1)\n"


def test_resume_of_one_user_as_json(gce, configured):
    paths = configured("demo")
    with running(paths), answering(paths, {"resume": RESUMED}) as requests:
        result = gce("resume", "demo", "--user", "alice", "--json")
    assert requests == [{"command": "resume", "args": {"user": "alice"}}]
    assert json.loads(result.stdout) == {"name": "demo", "resumed": RESUMED["resumed"]}


def test_nothing_to_resume_is_not_an_error(gce, configured):
    paths = configured("demo")
    with running(paths), answering(paths, {"resume": {"ok": True, "resumed": []}}):
        result = gce("resume", "demo", "--user", "alice")
    assert result.exit_code == 0
    assert result.stdout == "nothing to resume: no user endpoint of demo of alice has failing blocks\n"


def test_an_unknown_user_and_another_users_are_clear_errors(gce, configured):
    paths = configured("demo")
    with running(paths), answering(paths, {"resume": {"ok": False, "code": "NOT_FOUND",
                                                      "error": "no local user 'zed' on this host"}}):
        result = gce("resume", "demo", "--user", "zed")
    assert result.exit_code == 64
    assert result.stderr == ("error: cannot resume endpoint demo: no local user 'zed' on this host\n"
                             "hint: gce status demo names each user endpoint as USER/..., USER being the local user\n")
    with running(paths), answering(paths, {"resume": {"ok": False, "code": "PERMISSION_DENIED", "error":
                                                      "permission denied: the user endpoints of 'bob' are not yours"}}):
        result = gce("resume", "demo", "--user", "bob")
    assert result.exit_code == 77
    assert result.stderr == ("error: cannot resume endpoint demo: permission denied: the user endpoints of 'bob' are "
                             "not yours\nhint: gce resume demo resumes your own\n")


def test_resume_of_an_endpoint_that_does_not_run(gce, configured):
    configured("demo")
    result = gce("resume", "demo")
    assert result.exit_code == 3, result.stderr  # NotRunning, as from every command that asks a manager
    assert result.stderr.startswith("error: endpoint 'demo' is not running")
