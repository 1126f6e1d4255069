"""Which keys name secrets, and how an error quotes a value without revealing one.

Error messages are read on terminals, copied into tickets, written to logs and state files
(``gce list`` and ``gce status`` show a failed start's reason): a value quoted there must not
be a password (DESIGN.md, invariant 5). So an error quotes a value only when it cannot hold
one: a URL with its password replaced, a short scalar under an ordinary key; a list or a
mapping, or anything under a key named like a secret or a URL, is named by its kind instead.

``SECRET_KEY`` is the one definition of a secret-like key name; gce diagnostic's redactor
uses it too.
"""

from __future__ import annotations

import re
from typing import Any

from gce.transport.urls import redact, redact_all

MASK = "***"
MAX_SHOWN = 80  # characters of a value an error quotes at most

# A key is secret-like when one of its words (split at _ . -) holds one of these: "db_password",
# "clientSecret", "SITE_API_TOKEN", "credentials" are. "key" counts only as a whole word (or as
# apikey, ssh-key, privateKey...), and so do "pass" and "pw": "keys", "monkey", "compass" are not secrets.
_SECRET_PART = (r"[A-Za-z0-9]*(?:pass(?:word|wd|phrase)|pwd|secret|token|credential|private|authorization|cookie)"
                r"[A-Za-z0-9]*")
_KEY_WORD = r"(?:[A-Za-z0-9]*(?:api|access|secret|private|ssh|signing|encryption|master|license)[-_]?)?key|pass|pw"
SECRET_KEY = rf"(?:[A-Za-z0-9]+[_.-])*?(?:{_SECRET_PART}|{_KEY_WORD})(?:[_.-][A-Za-z0-9]+)*"
# Keys whose values are URLs, which may carry a password: broker.url, management_url, ...
_URL_KEY = re.compile(r"(?i)(?:^|[_.-])ur[li]s?$")
# A secret-like key and its separator inside a text: what follows is hidden by `hide`.
_PAIR = re.compile(rf"(?i)(?<![A-Za-z0-9])[\"']?{SECRET_KEY}[\"']?\s*[:=]")


def is_secret_key(name: Any) -> bool:
    return isinstance(name, str) and re.fullmatch(SECRET_KEY, name, re.I) is not None


def hide(text: str) -> str:
    """TEXT with every URL's password replaced and all after a ``secret-key:``/``=`` hidden."""
    text = redact_all(text)
    m = _PAIR.search(text)
    return text[:m.end()] + " " + MASK if m else text


def kind(value: Any) -> str:
    """What VALUE is, in words, without saying what it holds."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "null" if value is None else f"a {type(value).__name__}"


def shown(value: Any, key: Any = None) -> str:
    """VALUE as an error message may quote it, when it sits under KEY (the last key of its path)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (dict, list, tuple)) or is_secret_key(key):
        return kind(value)
    if isinstance(key, str) and _URL_KEY.search(key):
        # A URL is shown without its password; anything else there may be the password alone.
        return repr(_cut(redact(value))) if isinstance(value, str) and "://" in value else kind(value)
    if isinstance(value, str):
        text = redact_all(value)
        return repr(_cut(text)) if hide(text) == text else kind(value)  # "token=..." is not shown at all
    return repr(value) if isinstance(value, (int, float)) else kind(value)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 3] + "..."


def strings_in(value: Any, keys: bool = True) -> list[str]:
    """Every string in VALUE (with KEYS, the keys of its mappings too)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (strings_in(k) if keys else []) + strings_in(v, keys)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in strings_in(v, keys)]
    return []
