"""Broker URLs: who they log in as, whether they can be used, and how to print them without their password."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")


def _userinfo_split(url: str) -> tuple[str, str, str] | None:
    """(before userinfo, userinfo, after userinfo) of URL, or None when it has no userinfo.

    The userinfo ends at the *last* '@', even past a '/': a password with an unencoded '/' or
    '@' is then hidden whole, where a strict URL parser would show part of it.
    """
    scheme_end = url.find("//")
    if scheme_end < 0:
        return None
    start = scheme_end + 2
    at = url.rfind("@", start)
    if at < 0:
        return None
    return url[:start], url[start:at], url[at:]


def has_password(url: str) -> bool:
    parts = _userinfo_split(url)
    return parts is not None and ":" in parts[1] and parts[1].split(":", 1)[1] != ""


# host:PORT, PORT being anything up to the path; digits and the punctuation of a text around
# a URL ("(see http://h:15672)") are a port, anything else may be a password (see `redact`)
# (a cluster's further "host:port" after a comma are no password either)
_NOT_A_PORT = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/?#@\[\]:]*:)"
                         r"(?![0-9]*(?:,[A-Za-z0-9.\-\[\]:]+)*[)\]}>.,;:'\"]*(?:[/?#]|$))"
                         r"([^/?#]+)(.*)$", re.S)


# A secret in the query: pika's ?ssl_options={'certfile': ..., 'password': 'KEY PASSPHRASE'}
_QUERY_SECRET = re.compile(r"""(?i)((?<![A-Za-z0-9])(?:pass(?:word|wd|phrase)?|secret|token|key)['"]?\s*[:=]\s*['"]?)"""
                           r"""[^'"&,}\s]+""")


def redact(url: str) -> str:
    """URL with its password replaced by ***, safe for output, logs and status."""
    parts = _userinfo_split(url)
    if parts is None:
        # No '@': what stands where the port goes and is no number may be a password whose
        # "USER:" or "@HOST" was left out ("amqp://alice:PASSWORD/gce").
        url = _NOT_A_PORT.sub(r"\1***\3", url)
    elif ":" in parts[1]:
        head, userinfo, tail = parts
        url = f"{head}{userinfo.split(':', 1)[0]}:***{tail}"
    base, mark, query = url.partition("?")
    return base + mark + _QUERY_SECRET.sub(r"\1***", query)


def redact_all(text: str) -> str:
    """TEXT with the password of every URL in it replaced by ***."""
    return _URL.sub(lambda m: redact(m.group(0)), text)


def hosts(url: str) -> list[str]:
    """URL once per broker host it lists, in its order.

    A RabbitMQ cluster is one URL whose hosts are separated by commas, sharing the account,
    the vhost and the options: amqps://USER:PASS@h1:5671,h2:5671,h3:5671/VHOST gives
    [amqps://USER:PASS@h1:5671/VHOST, amqps://USER:PASS@h2:5671/VHOST, ...]. One key in the
    config and in $GCE_BROKER_URL, and the form other AMQP clients (Celery, Kombu) read too.
    """
    scheme_end = url.find("//")
    if scheme_end < 0:
        return [url]
    parts = _userinfo_split(url)
    start = len(parts[0]) + len(parts[1]) + 1 if parts else scheme_end + 2
    end = next((i for i in range(start, len(url)) if url[i] in "/?#"), len(url))
    listed = url[start:end].split(",")
    if len(listed) == 1:
        return [url]
    return [url[:start] + host + url[end:] for host in listed]


def host_port(url: str) -> str:
    """HOST:PORT of a one-host URL (the AMQP port when it names none): the node a link reached."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port or (5671 if parts.scheme.lower() == 'amqps' else 5672)}"


def problem(url: str, schemes: tuple[str, ...] = ("amqp", "amqps")) -> str | None:
    """Why URL cannot be used, in words that never quote any part of it; None when it can.

    A URL parser's own errors quote what they could not parse, and that is often a piece of
    the password: "amqp://u:ab/cd@host" splits at the '/' and makes "ab" the port.
    """
    listed = hosts(url)
    if len(listed) > 1:
        for n, one in enumerate(listed, 1):
            why = problem(one, schemes)
            if why:
                return f"{why} (host {n} of the {len(listed)} it lists, separated by commas)"
        return None
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "it contains a space or a control character (percent-encode them, e.g. %20)"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "it is not a URL gce can read: a '[' or ']' is out of place (percent-encode one in a password: %5B, %5D)"
    if parts.scheme.lower() not in schemes:
        return f"it must start with {' or '.join(s + '://' for s in schemes)}"
    userinfo = _userinfo_split(url)
    if userinfo is not None and parts.netloc.rpartition("@")[0] != userinfo[1]:
        return "its user name or password holds a '/', '?' or '#': percent-encode it (%2F, %3F, %23)"
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        return "its port is not a number from 0 to 65535"
    if not host:
        return "it names no host"
    del port
    return None


def no_password(url: str) -> str | None:
    """Why URL cannot log in: it names a user but no password (pika would fail with a TypeError
    deep in its connection set-up); None otherwise. Never quotes the URL."""
    parts = _userinfo_split(url)
    if parts is not None and ":" not in parts[1]:
        return "it names a user but no password: write amqp://USER:PASSWORD@HOST/VHOST (percent-encoded)"
    return None


def broker_user(url: str) -> str:
    """The broker user name in URL (RabbitMQ's default, guest, when it names none)."""
    try:
        return unquote(urlsplit(url).username or "guest")
    except ValueError:  # an unreadable URL; the config check says why
        parts = _userinfo_split(url)
        return unquote(parts[1].split(":", 1)[0]) if parts else "guest"
