"""Checks of the way to an endpoint's broker: DNS, TCP, TLS, AMQP login, then (probes.py) what
its account may do.

Each step is bounded by TIMEOUT seconds and runs only when the step before it worked;
the one that fails says what the next one would have needed. Everything is tried with the
endpoint's own URL from its config, so it proves what the endpoint itself can do.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from gce.commands.diagnostic import probes
from gce.commands.diagnostic.result import Result, fail, ok, skip, timed_ms, warn
from gce.transport.urls import broker_user

TIMEOUT = 5.0
CLOSE_TIMEOUT = 2.0  # after the probes: a broker that answered them answers this at once
CHECKS = ("broker dns", "broker tcp", "broker tls", "broker login", "broker queue", "broker publish")
CERT_WARN_DAYS = 14


@dataclass
class Target:
    url: str
    host: str
    port: int
    tls: bool
    vhost: str
    user: str
    addresses: list[tuple[Any, ...]] = field(default_factory=list)
    connected: tuple[Any, ...] | None = None  # the address the TCP check reached

    @classmethod
    def of(cls, url: str) -> Target:
        parts = urlsplit(url)
        tls = parts.scheme == "amqps"
        vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        return cls(url, parts.hostname or "localhost", parts.port or (5671 if tls else 5672), tls, vhost,
                   broker_user(url))


def bounded(fn: Callable[[], Any], timeout: float) -> Any:
    """FN() in a daemon thread, or TimeoutError after TIMEOUT s (getaddrinfo has no timeout of its own)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # handed over to the caller
            box["error"] = e

    t = threading.Thread(target=run, daemon=True, name="gce-diagnostic-dns")
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def dns(t: Target) -> Result:
    start = time.monotonic()
    try:
        infos = bounded(lambda: socket.getaddrinfo(t.host, t.port, type=socket.SOCK_STREAM), TIMEOUT)
    except (OSError, TimeoutError) as e:
        return fail("broker dns", f"cannot resolve the broker's host {t.host!r}: {e}",
                    f"check the host in broker.url; try: getent hosts {t.host}", host=t.host)
    t.addresses = [info[4] for info in infos]
    shown = sorted({a[0] for a in t.addresses})
    if _is_address(t.host):
        return ok("broker dns", f"{t.host} is an address: no lookup needed", host=t.host)
    return ok("broker dns", f"{t.host} resolves to {', '.join(shown)} ({timed_ms(start)} ms)",
              host=t.host, addresses=shown)


def tcp(t: Target) -> Result:
    """Connect to each address in turn (localhost may be ::1 then 127.0.0.1), TIMEOUT s for all."""
    errors = []
    deadline = time.monotonic() + TIMEOUT
    for addr in t.addresses:
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        start = time.monotonic()
        if start >= deadline:
            errors.append(f"{addr[0]}: not tried, {TIMEOUT:g} s are up")
            continue
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(deadline - start)
        try:
            s.connect(addr)
            t.connected = addr
            return ok("broker tcp", f"connected to {addr[0]} port {t.port} in {timed_ms(start)} ms",
                      address=addr[0], port=t.port)
        except socket.timeout:
            errors.append(f"{addr[0]}: no answer within {deadline - start:.1f} s")
        except OSError as e:
            errors.append(f"{addr[0]}: {e.strerror or e}")
        finally:
            s.close()
    return fail("broker tcp", f"cannot connect to {t.host} port {t.port}: {'; '.join(errors)}",
                f"is RabbitMQ running and listening on port {t.port} of {t.host}? is a firewall in the way? "
                "(AMQP uses 5672, AMQP over TLS 5671)", port=t.port)


def _loopback(t: Target) -> bool:
    return all(ipaddress.ip_address(a[0].split("%")[0]).is_loopback for a in t.addresses)


def tls(t: Target, params: Any) -> Result:
    if not t.tls:
        if _loopback(t):
            return skip("broker tls", "amqp:// to a broker on this host: no TLS needed")
        return warn("broker tls", "the broker URL is amqp:// without TLS: the broker password crosses the "
                    "network in clear text", "use amqps:// and port 5671 in broker.url")
    opts = params.ssl_options
    context = opts.context if opts else ssl.create_default_context()
    server_name = (opts.server_hostname if opts else None) or t.host
    start = time.monotonic()
    try:
        address = t.connected[:2] if t.connected else (t.host, t.port)
        with socket.create_connection(address, timeout=TIMEOUT) as raw:
            with context.wrap_socket(raw, server_hostname=server_name) as s:
                cert = s.getpeercert() or {}
                version = s.version()
    except ssl.SSLCertVerificationError as e:
        return fail("broker tls", f"the broker's certificate is not trusted: {e.verify_message or e}",
                    "install the CA that signed it, or fix the broker's certificate chain and host name")
    except (OSError, ssl.SSLError) as e:
        return fail("broker tls", f"TLS handshake with {t.host} port {t.port} failed: {e}",
                    "is this port the broker's TLS listener (5671)?")
    details: dict[str, Any] = {"version": version, "ms": timed_ms(start)}
    not_after = cert.get("notAfter")
    if not isinstance(not_after, str) or not not_after:
        return ok("broker tls", f"{version} with {server_name} (certificate not verified)", **details)
    expires = ssl.cert_time_to_seconds(not_after)
    days = (expires - time.time()) / 86400
    details.update(expires=not_after, days_left=int(days))
    reason = f"{version}, certificate for {server_name} valid until {not_after}"
    if days < CERT_WARN_DAYS:
        return warn("broker tls", f"{reason}: it expires in {int(days)} days", "renew the broker's certificate",
                    **details)
    return ok("broker tls", reason, **details)


def login(t: Target, params: Any) -> tuple[Result, Any]:
    """Log in as the endpoint's broker user; returns the result and the open connection (or None)."""
    import pika
    from pika import exceptions as px

    params.socket_timeout = TIMEOUT
    params.stack_timeout = TIMEOUT
    params.blocked_connection_timeout = TIMEOUT
    params.connection_attempts = 1
    params.retry_delay = 0
    params.client_properties = {"connection_name": "gce diagnostic"}
    start = time.monotonic()
    where = f"{t.host}:{t.port} (virtual host {t.vhost!r})"
    try:
        conn = pika.BlockingConnection(params)
    except px.ProbableAuthenticationError:
        return fail("broker login", f"the broker at {where} refused the login of user {t.user!r}: "
                    "wrong user name or password", f"check the password in broker.url; a broker admin can "
                    f"reset it: rabbitmqctl change_password {t.user} NEWPASSWORD", user=t.user), None
    except px.ProbableAccessDeniedError:
        return fail("broker login", f"the broker refused user {t.user!r} access to virtual host {t.vhost!r}",
                    f"rabbitmqctl set_permissions -p {t.vhost} {t.user} ... (or gce broker provision)",
                    user=t.user), None
    except (px.IncompatibleProtocolError, px.StreamLostError):
        return fail("broker login", f"no AMQP session with {where} as {t.user!r}: the server hung up during "
                    "the AMQP handshake", "is this port the broker's AMQP listener (5672, or 5671 for amqps)? "
                    "look at the broker's log", user=t.user), None
    except px.AMQPError as e:
        why = (str(e) or type(e).__name__)[:300]
        return fail("broker login", f"no AMQP session with {where} as {t.user!r}: {type(e).__name__}: {why}",
                    "is this port the broker's AMQP listener? look at the broker's log", user=t.user), None
    props = getattr(conn._impl, "server_properties", None) or {}  # connection.start's, kept by pika
    product = props.get("product", b"broker")
    version = props.get("version", b"")
    text = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
    return ok("broker login", f"logged in as {t.user!r} to {text(product)} {text(version)} "
              f"({timed_ms(start)} ms)", user=t.user, vhost=t.vhost, broker=f"{text(product)} {text(version)}"), conn


def checks(url: str, endpoint_id: str, running: bool,
           more: Callable[[Any], list[Result]] | None = None) -> list[Result]:
    """The checks of the way to the broker at URL (one host); MORE(connection) adds checks of its own
    once logged in (cluster.py's)."""
    import pika
    from pika import exceptions as px

    t = Target.of(url)
    results: list[Result] = []

    def stop(why: str) -> list[Result]:
        return results + [skip(n, why) for n in CHECKS[len(results):]]

    results.append(dns(t))
    if results[-1].status == "FAIL":
        return stop("the broker's host name does not resolve")
    results.append(tcp(t))
    if results[-1].status == "FAIL":
        return stop(f"no TCP connection to {t.host} port {t.port}")
    params = pika.URLParameters(url)
    results.append(tls(t, params))
    if results[-1].status == "FAIL":
        return stop("the TLS handshake failed")
    result, conn = login(t, params)
    results.append(result)
    if conn is None:
        return stop("the broker refused the login" if "refused" in result.reason else "no AMQP session")
    try:
        results += probes.run(conn, endpoint_id, t.user, running, TIMEOUT)
        if more is not None and conn.is_open:
            results += more(conn)
    finally:
        if conn.is_open:
            with probes.deadline(conn, CLOSE_TIMEOUT):
                try:
                    conn.close()
                except (px.AMQPError, OSError, probes.Expired):
                    pass  # the broker dropped it or stopped answering: nothing left to close
    return results

