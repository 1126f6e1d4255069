"""The clock skew check: this host's clock against the broker host's.

RabbitMQ tells an AMQP client no time (not in connection.start, not on messages without
the rabbitmq_message_timestamp plugin), but its management plugin is an HTTP server, and
HTTP servers send a ``Date`` header on every response, a 401 too (RFC 9110, section 6.6.1).
So one unauthenticated GET of the management port measures the skew to 1 s resolution: the
broker's time is compared with the midpoint of the request on this host's clock.
"""

from __future__ import annotations

import http.client
import ssl
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from gce.commands.diagnostic.result import Result, ok, skip, warn

TIMEOUT = 2.0
MAX_SKEW = 2.0  # seconds; the Date header's resolution is 1 s
PATH = "/api/overview"  # small, and it answers 401 without credentials
HINT = "keep the clocks in sync with NTP: systemctl status chrony (or systemd-timesyncd) on both hosts"


def management_url(broker_url: str, override: str | None = None) -> str:
    """OVERRIDE, else the broker's host on the management plugin's default port: 15672, or
    15671 (HTTPS) for a broker reached over amqps."""
    if override:
        return override
    parts = urlsplit(broker_url)
    tls = parts.scheme == "amqps"
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{15671 if tls else 15672}"


def skew_of(date_header: str, sent: float, received: float) -> float:
    """Seconds the server's clock is ahead of ours (negative: behind), given its DATE_HEADER
    and our clock when the request left (SENT) and the answer came (RECEIVED)."""
    server = parsedate_to_datetime(date_header).timestamp() + 0.5  # the header drops the fraction
    return server - (sent + received) / 2


def verdict(skew: float, round_trip: float, url: str) -> Result:
    """PASS within MAX_SKEW seconds (plus half the round trip, which blurs the midpoint), else WARN."""
    details = {"skew_seconds": round(skew, 1), "round_trip_ms": round(round_trip * 1000), "url": url}
    if abs(skew) <= MAX_SKEW + round_trip / 2:
        return ok("clock skew", f"this host's clock and the broker host's agree within {MAX_SKEW:g} s "
                  f"({skew:+.1f} s, measured through {url})", **details)
    way = "behind" if skew > 0 else "ahead of"
    return warn("clock skew", f"this host's clock is {abs(skew):.1f} s {way} the broker host's (measured "
                f"through {url}): logs do not line up and TLS certificates may look not yet valid or expired",
                HINT, **details)


def _get(url: str) -> tuple[str | None, float, float]:
    parts = urlsplit(url)
    host, tls = parts.hostname or "localhost", parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    if tls:
        # Only a time stamp is read and nothing is sent but a path: no certificate to trust.
        context = ssl._create_unverified_context()
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=TIMEOUT, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    try:
        conn.connect()
        sent = time.time()
        conn.request("GET", parts.path.rstrip("/") + PATH, headers={"Accept": "application/json"})
        response = conn.getresponse()
        received = time.time()
        response.read(65536)
        return response.getheader("Date"), sent, received
    finally:
        conn.close()


def check(broker_url: str, override: str | None = None) -> Result:
    from gce.commands.diagnostic.network import bounded

    url = management_url(broker_url, override)
    try:
        date, sent, received = bounded(lambda: _get(url), TIMEOUT)
    except (OSError, TimeoutError, ValueError) as e:
        why = str(e) or type(e).__name__
        return skip("clock skew", f"not measured: the broker's management API at {url} does not answer ({why})",
                    "enable the rabbitmq_management plugin, or set broker.management_url in config.yaml",
                    url=url)
    except http.client.HTTPException as e:  # whatever answers there is not an HTTP server
        return skip("clock skew", f"not measured: {url} does not answer HTTP ({type(e).__name__})", url=url)
    if not date:
        return skip("clock skew", f"not measured: {url} sent no Date header", url=url)
    try:
        skew = skew_of(date, sent, received)
    except (TypeError, ValueError):
        return skip("clock skew", f"not measured: {url} sent an unreadable Date header {date[:60]!r}", url=url)
    return verdict(skew, received - sent, url)
