"""How both broker links connect: the parameters pika is given, the wait before a reconnect,
and how a connection is given up.

The SDK (gce.sdk.amqp, gce.sdk.client) and the endpoint (gce.transport.amqp) build their pika
parameters here, so a submitter and an endpoint on the same network give up on an unanswering
broker after the same time and retry it at the same pace.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from gce.backoff import backoff
from gce.transport import urls

if TYPE_CHECKING:
    import pika

# Seconds a TCP connect to the broker may take. Linux resends a lost SYN after 1 s, then 2 s, then
# 4 s (tcp_syn_retries, initial RTO 1 s: RFC 6298): 10 s lets three of them go unanswered, which
# a laptop's Wi-Fi or a VPN link does, where 5 s gave up after two. It is pika's own default, too.
# Waiting longer only matters when the broker cannot be reached at all, and then the link retries.
SOCKET_TIMEOUT = 10.0

# A lost connection is retried after RECONNECT_FIRST seconds, doubling up to RECONNECT_CAP, each
# wait spread by ±RECONNECT_SPREAD: a broker restart seen by a thousand SDKs and endpoints at once
# should not be met by a thousand reconnects at once (gce.backoff).
RECONNECT_FIRST = 0.5
RECONNECT_CAP = 30.0
RECONNECT_SPREAD = 0.5


class UnusableUrl(ValueError):
    """A broker URL pika must not be given: its own errors quote the part they could not parse,
    often a piece of the password, or are a bare TypeError. str() says why, password redacted."""


def parameters(url: str, *, heartbeat: int, name: str) -> list[pika.URLParameters]:
    """pika's parameters for each broker host URL lists (urls.hosts), in its order; NAME shows
    in the broker's connection list. UnusableUrl when the URL cannot be used, said in words
    that never quote its password."""
    why = urls.problem(url) or urls.no_password(url)
    if why:
        raise UnusableUrl(f"the broker URL {urls.redact(url)} cannot be used: {why}")
    import pika

    listed = []
    for one in urls.hosts(url):
        params = pika.URLParameters(one)
        params.heartbeat = heartbeat
        params.connection_attempts = 1  # each link retries by itself: the next host, or after reconnect_delay
        params.socket_timeout = SOCKET_TIMEOUT
        params.client_properties = {"connection_name": name}
        listed.append(params)
    return listed


def result_queue_arguments(url: str, expires_ms: int) -> dict[str, Any]:
    """The arguments of a submitter's result queue, expiring EXPIRES_MS after its last use.

    When URL lists several nodes (a cluster) the queue is a quorum queue: a classic queue lives
    on the one node that declared it, and while that node is down the queue can be declared
    nowhere else (404, "home node ... is down") and the results routed to it are lost.
    """
    arguments: dict[str, Any] = {"x-expires": expires_ms}
    if len(urls.hosts(url)) > 1:
        arguments["x-queue-type"] = "quorum"
    return arguments


def node(params: pika.ConnectionParameters) -> str:
    """HOST:PORT of the broker node PARAMS reach, for status and logs."""
    host = f"[{params.host}]" if ":" in params.host else params.host
    return f"{host}:{params.port}"


class Hosts:
    """Which of a URL's N broker hosts a link connects to next.

    A cluster's nodes each serve the same vhost, so a host that refuses or drops the connection
    is followed at once by the next one; only when every host failed in a row does the link
    wait (reconnect_delay) before another round. A lost connection also moves on, since the
    node that dropped it is likely the one going down.
    """

    def __init__(self, count: int = 1) -> None:
        self.count, self.index, self._failed = count, 0, 0

    def pick(self, listed: list) -> Any:
        self.count = len(listed)
        self.index %= self.count
        return listed[self.index]

    def failed(self) -> bool:
        """Move on to the next host; True when all of them failed in a row: wait before trying again."""
        self.index = (self.index + 1) % max(self.count, 1)
        self._failed += 1
        if self._failed >= self.count:
            self._failed = 0
            return True
        return False

    def reached(self) -> None:
        self._failed = 0


def reconnect_delay(attempt: int) -> float:
    """Seconds to wait before reconnect ATTEMPT+1 (0: the first reconnect)."""
    return backoff(attempt, RECONNECT_FIRST, RECONNECT_CAP, RECONNECT_SPREAD)


def abort(conn: Any) -> None:
    """Close pika connection CONN, also one still opening. pika's close() of a connection in its
    AMQP handshake trips an assertion of its own (tracebacks in the log, and the close callback
    never runs); a handshake still in progress is aborted through its workflow, which pika
    reports as a clean 'bring-up aborted'."""
    if conn.is_closed or conn.is_closing:
        return
    workflow = getattr(conn, "_connection_workflow", None)  # pika >= 1.0, while opening
    if not conn.is_open and workflow is not None:
        with contextlib.suppress(Exception):  # already completed: fall back to close()
            workflow.abort()
            return
    conn.close()
