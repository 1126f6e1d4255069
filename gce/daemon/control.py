"""The manager's local control socket: one JSON request line, one JSON reply line.

Peers are identified with SO_PEERCRED: root and the manager's own uid may use every
command; anyone else is refused (multi-user views arrive with the multi-user manager).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from pathlib import Path
from typing import Any, Awaitable, Callable

from gce.config.paths import EndpointPaths
from gce.errors import NotRunning, PermissionDenied
from gce.transport import limits

Handler = Callable[[str, dict, int], Awaitable[dict]]
MAX_REQUEST = 64 * 1024


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


async def serve(path: Path, handler: Handler) -> asyncio.AbstractServer:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    own_uid = os.geteuid()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            uid = peer_uid(writer.get_extra_info("socket"))
            line = await asyncio.wait_for(reader.readline(), timeout=10)
            if uid not in (0, own_uid):
                reply: dict = {"ok": False, "error": "permission denied: this endpoint belongs to another user"}
            else:
                req = limits.loads(line[:MAX_REQUEST] or b"{}")  # depth-checked: see gce.daemon.main
                reply = await handler(str(req.get("command", "")), req.get("args") or {}, uid)
        except Exception as e:  # a bad client must never hurt the manager
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        try:
            writer.write(json.dumps(reply, default=str).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()

    old = os.umask(0o077)
    try:
        server = await asyncio.start_unix_server(on_client, path=str(path), limit=MAX_REQUEST)
    finally:
        os.umask(old)
    return server


def request(paths: EndpointPaths, command: str, timeout: float = 5.0, **args: Any) -> dict:
    """Send one command to the endpoint's manager; raise NotRunning if none answers."""
    path = paths.control_socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
        s.sendall(json.dumps({"command": command, "args": args}).encode() + b"\n")
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except (FileNotFoundError, ConnectionRefusedError):
        raise NotRunning(
            f"endpoint {paths.name!r} is not running", f"no manager answers on {path}", hint=f"gce start {paths.name}"
        ) from None
    except socket.timeout:
        raise NotRunning(
            f"endpoint {paths.name!r} did not answer", f"no reply on {path} within {timeout:g} s"
        ) from None
    finally:
        s.close()
    try:
        reply = json.loads(b"".join(chunks))
    except ValueError:
        raise NotRunning(f"endpoint {paths.name!r} gave no valid reply", f"on {path}") from None
    if reply.get("ok") is False and "permission denied" in str(reply.get("error", "")):
        raise PermissionDenied(f"cannot query endpoint {paths.name!r}", reply["error"])
    return reply
