"""Stand-ins for a running manager: its lock and state file, its control socket (one reply for
every request, or a reply per command)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from typing import Any, Callable, Iterator

from gce.config.paths import EndpointPaths


@contextlib.contextmanager
def running(paths: EndpointPaths, started_ago: float = 3725.0) -> Iterator[None]:
    """Make PATHS look like a live manager's: its lock held, its state file written (by this process)."""
    from gce.daemon import pidfile

    fd = pidfile.acquire_lock(paths)
    try:
        pidfile.write_state(paths, "running", started_at=time.time() - started_ago)
        yield
    finally:
        os.close(fd)


Replies = Callable[[str, dict[str, Any]], dict[str, Any]]


@contextlib.contextmanager
def answering(paths: EndpointPaths, replies: dict[str, Any] | Replies) -> Iterator[list[dict]]:
    """Serve the endpoint's control socket: a request for COMMAND gets REPLIES[COMMAND] (or
    REPLIES(command, args)); a command without a reply gets UNKNOWN_COMMAND. Yields the requests."""
    requests: list[dict] = []
    path = paths.control_socket
    path.parent.mkdir(parents=True, exist_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    server.settimeout(0.2)
    done = threading.Event()

    def reply_to(request: dict) -> dict:
        command, args = request.get("command"), request.get("args") or {}
        if callable(replies):
            return replies(command, args)
        if command in replies:
            return replies[command]
        return {"ok": False, "code": "UNKNOWN_COMMAND", "error": f"unknown command {command!r}"}

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            with conn:
                request = json.loads(conn.makefile("rb").readline())
                requests.append(request)
                conn.sendall(json.dumps(reply_to(request)).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield requests
    finally:
        done.set()
        thread.join()
        server.close()
        path.unlink(missing_ok=True)


def control_server(paths: EndpointPaths, reply: dict[str, Any]) -> contextlib.AbstractContextManager[list[dict]]:
    """Answer every request on the endpoint's control socket with REPLY; yields the requests received."""
    return answering(paths, lambda _command, _args: reply)
