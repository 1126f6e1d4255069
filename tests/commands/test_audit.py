"""gce audit: an endpoint's audit log and its rotated files, oldest first; --user, --since, --json;
a user who may not read it is told why and what to run. (A real endpoint writing it, read back with
`gce audit`: tests/daemon/test_audit_endpoint.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from gce import auditlog
from gce.config.paths import endpoint_paths
from gce.daemon.audit import AuditLog
from tests.commands.conftest import GCE_BIN

T0 = 1796551200.0  # 2026-12-06T10:00:00Z


def write_log(paths, events, max_bytes: int = auditlog.MAX_BYTES) -> None:
    clock = iter(T0 + i for i in range(len(events)))
    log = AuditLog(auditlog.audit_path(paths), paths.name, "id-1", max_bytes=max_bytes, clock=lambda: next(clock))
    for event, task_id, fields in events:
        log.write(event, task_id, **fields)
    log.close()


EVENTS = [("received", "t1", {"submitter": "alice", "function_name": "f"}),
          ("mapped", "t1", {"submitter": "alice", "local_user": "alice", "uid": 1001}),
          ("received", "t2", {"submitter": "bob", "function_name": "g"}),
          ("mapped", "t2", {"submitter": "bob", "local_user": "bob", "uid": 1002}),
          ("finished", "t1", {"local_user": "alice", "status": "success"}),
          ("refused", "t2", {"local_user": "bob", "code": "FUNCTION_NOT_ALLOWED", "reason": "not allowed here"})]


def test_the_rotated_files_are_read_oldest_first_and_filtered_by_user_and_time(gce, configured):
    paths = configured("aud", "--engine", "thread")
    write_log(paths, EVENTS, max_bytes=300)
    assert len(auditlog.files(auditlog.audit_path(paths))) >= 3  # rotated twice at least
    every = gce("audit", "aud", "--json")
    assert every.exit_code == 0, every.stderr
    assert [(r["event"], r["task_id"]) for r in map(json.loads, every.stdout.splitlines())] == \
        [(e, t) for e, t, _ in EVENTS]
    bob = gce("audit", "aud", "--json", "--user", "bob")
    assert [(r["event"], r["task_id"]) for r in map(json.loads, bob.stdout.splitlines())] == \
        [("received", "t2"), ("mapped", "t2"), ("refused", "t2")]  # his task's received line names no account yet
    late = gce("audit", "aud", "--json", "--since", "2026-12-06T10:00:04+00:00")
    assert [r["event"] for r in map(json.loads, late.stdout.splitlines())] == ["finished", "refused"]
    text = gce("audit", "aud", "--user", "bob", "--since", "2026-12-06T10:00:05+00:00")
    assert text.exit_code == 0
    assert text.stdout.split(" ", 1)[1] == \
        'refused  t2 local_user=bob code=FUNCTION_NOT_ALLOWED reason="not allowed here"\n'


def test_an_endpoint_without_audit_log_yet_says_so(gce, configured):
    paths = configured("fresh", "--engine", "thread")
    result = gce("audit", "fresh")
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr == f"gce audit: endpoint fresh has no audit log yet ({auditlog.audit_path(paths)})\n"


def test_a_user_who_may_not_read_it_is_told_whose_it_is_and_what_to_run(gce, monkeypatch):
    home = Path(tempfile.mkdtemp(prefix="gce-audit-"))  # one nobody may enter (pytest's tmp tree is root's)
    try:
        home.chmod(0o755)
        monkeypatch.setenv("GCE_HOME", str(home))
        assert gce("configure", "priv", "--engine", "thread", "--max-workers", "1").exit_code == 0
        paths = endpoint_paths("priv")
        paths.config_dir.chmod(0o755)
        paths.config_file.chmod(0o644)
        write_log(paths, EVENTS[:1])
        env = {**os.environ, "GCE_HOME": str(home)}
        result = subprocess.run(["runuser", "-u", "nobody", "--", str(GCE_BIN), "audit", "priv"],
                                capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 77
        assert result.stderr == (f"error: cannot read the audit log {auditlog.audit_path(paths)}: it is readable by "
                                 "its owner only (you are nobody)\nhint: sudo gce audit priv\n")

        # A multi-user endpoint of root's that nobody submits to: its directory is closed, its socket answers.
        paths.config_dir.chmod(0o711)
        paths.control_socket.touch()
        shared = subprocess.run(["runuser", "-u", "nobody", "--", str(GCE_BIN), "audit", "priv"],
                                capture_output=True, text=True, env=env, timeout=60)
        assert shared.returncode == 77
        assert shared.stderr == ("error: cannot show the audit log of endpoint priv: a multi-user endpoint's audit "
                                 "log is for its administrator (root)\nhint: sudo gce audit priv --user nobody\n")
    finally:
        shutil.rmtree(home)
