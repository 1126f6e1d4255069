"""A real user endpoint process driven over its channel, the way its manager drives it.

``python -m gce.uep`` is started as gce/daemon/spawn.py starts it (config on stdin, the channel on an
inherited fd); the test sends TASK, STOP and CANCEL_BLOCK frames and reads what comes back.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import cloudpickle

from gce.config.uep import UepConfig
from gce.daemon.spawn import python_command, uep_environment
from gce.transport import frames
from gce.transport.message import TaskHeaders
from gce.transport.payload import KIND_SOURCE, function_id_of, pack_task

VENV_BIN = str(Path(sys.executable).parent)


def first_frame(conf: object, prefix: tuple = (), **popen: Any) -> tuple[bytes, dict, int, str]:
    """(kind, header) of the first frame a UEP given CONF (on its stdin) sends, its exit status and
    stderr. PREFIX goes before its command (e.g. setpriv), POPEN to subprocess.Popen."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    proc = subprocess.Popen([*prefix, *python_command("gce.uep", "--fd", str(theirs.fileno()))],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            pass_fds=(theirs.fileno(),), cwd="/", env=uep_environment(),
                            **{"umask": 0o077, "start_new_session": True, **popen})
    theirs.close()
    try:
        proc.stdin.write(json.dumps(conf).encode())
        proc.stdin.close()
        mine.settimeout(60)
        decoder, frame = frames.Decoder(), None
        while frame is None:
            data = mine.recv(1 << 16)
            assert data, "the user endpoint closed its channel without a word"
            frame = next(iter(decoder.feed(data)), None)
    finally:
        mine.close()  # a UEP that came up sees its manager go, and exits
        rc = proc.wait(timeout=60)
    return frame[0], frame[1], rc, proc.stderr.read().decode(errors="replace")


class UepProcess:
    def __init__(self, engine: dict[str, Any], run_dir: Path, env: dict[str, str] | None = None) -> None:
        conf = UepConfig(endpoint_id="0" * 32, engine=engine, run_dir=str(run_dir), max_result_bytes=1 << 20,
                         log_file=str(run_dir / "uep.log"))
        self.log = run_dir / "uep.log"
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        environ = {**uep_environment(), **(env or {})}
        environ["PATH"] = f"{VENV_BIN}:{environ.get('PATH', '/usr/bin:/bin')}"  # parsl finds its programs
        self.proc = subprocess.Popen(python_command("gce.uep", "--fd", str(theirs.fileno())), stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     pass_fds=(theirs.fileno(),), cwd=str(run_dir), env=environ,
                                     start_new_session=True)
        theirs.close()
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(conf.to_dict()).encode())
        self.proc.stdin.close()
        self.decoder = frames.Decoder()
        self.pending: list[tuple[bytes, dict, bytes]] = []
        self.ready = self.wait_for(lambda k, h: k in (frames.READY, frames.FATAL), 60)
        assert self.ready[0] == frames.READY, self.ready

    def frame(self, timeout: float) -> tuple[bytes, dict, bytes] | None:
        if not self.pending:
            self.sock.settimeout(timeout)
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                return None
            assert data, f"the user endpoint closed its channel; its log:\n{self.tail()}"
            self.pending.extend(self.decoder.feed(data))
        return self.pending.pop(0) if self.pending else None

    def wait_for(self, match: Callable[[bytes, dict], bool], timeout: float) -> tuple[bytes, dict, bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.frame(max(0.05, deadline - time.monotonic()))
            if got is not None and match(got[0], got[1]):
                return got
        raise AssertionError(f"no such frame within {timeout} s; the user endpoint's log:\n{self.tail()}")

    def status(self, match: Callable[[dict], bool], timeout: float = 30) -> dict:
        """The engine status of the first STATUS frame from now that MATCH accepts."""
        return self.wait_for(lambda k, h: k == frames.STATUS and match(h["engine"]), timeout)[1]["engine"]

    def submit(self, source: str, name: str, *args: Any, resource_specification: dict | None = None) -> str:
        blob = f"{name}\n{source}".encode()
        task_id = str(uuid.uuid4())
        th = TaskHeaders(task_id=task_id, user_id="alice", reply_to="r", function_id=function_id_of(KIND_SOURCE, blob),
                         serializer="source", resource_specification=resource_specification or {})
        self.send(frames.TASK, {"task": th.to_dict()}, pack_task(KIND_SOURCE, blob, cloudpickle.dumps((args, {}))))
        return task_id

    def send(self, kind: bytes, header: dict, body: bytes = b"") -> None:
        self.sock.sendall(frames.encode(kind, header, body))

    def tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return "(no log)"

    def close(self) -> None:
        try:
            self.send(frames.STOP, {})
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        self.sock.close()
