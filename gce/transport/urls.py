"""Broker URLs: who they log in as, and how to print them without their password."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit


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


def redact(url: str) -> str:
    """URL with its password replaced by ***, safe for output, logs and status."""
    parts = _userinfo_split(url)
    if parts is None or ":" not in parts[1]:
        return url
    head, userinfo, tail = parts
    return f"{head}{userinfo.split(':', 1)[0]}:***{tail}"


def broker_user(url: str) -> str:
    """The broker user name in URL (RabbitMQ's default, guest, when it names none)."""
    return unquote(urlsplit(url).username or "guest")
