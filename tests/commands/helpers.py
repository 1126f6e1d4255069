"""Stand-ins for a running manager: its lock and state file, its control socket."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from typing import Any, Iterator

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


@contextlib.contextmanager
def control_server(paths: EndpointPaths, reply: dict[str, Any]) -> Iterator[list[dict]]:
    """Answer requests on the endpoint's control socket with REPLY; yields the requests received."""
    requests: list[dict] = []
    path = paths.control_socket
    path.parent.mkdir(parents=True, exist_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    server.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            with conn:
                requests.append(json.loads(conn.makefile("rb").readline()))
                conn.sendall(json.dumps(reply).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield requests
    finally:
        done.set()
        thread.join()
        server.close()
        path.unlink(missing_ok=True)
