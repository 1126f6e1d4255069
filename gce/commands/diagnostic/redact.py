"""Hide secrets in any text before it is printed or put into a bundle.

Files are redacted as text, line by line, so that a config keeps its comments and its
layout and a support engineer reads what the site wrote, minus the secrets:

- the password of every URL (``scheme://user:PASSWORD@host``), as gce.transport.urls.redact;
- the value of every key named like a secret (password, passwd, secret, token, key,
  client_secret, api_key, private_key, credential, ...), in any case, wherever it stands in a
  line: YAML and ``key: value`` logs, JSON and Python reprs, ``KEY=value`` (env, logfmt, query
  strings; the value ends at a space), ``<password>x</password>``, a YAML block or nested
  mapping under such a key, ``--token VALUE`` options (in a JSON argv list too), ``-p VALUE``
  and ``curl -u USER:PASSWORD``; the key stays, its value goes;
- a secret's name followed by a quoted value or one that looks like a credential
  ("token abc123def456"), and a value under a URL key that is no URL (a password put there);
- ``Authorization:`` headers and ``Bearer``/``Basic`` credentials;
- PEM private key blocks, also a block cut off by the start or the end of a log tail.

A Redactor also remembers every secret it removed, and removes those strings wherever
else they turn up (a password that a log line prints bare, say): ``learn`` every text
first, then ``redact`` each one.
"""

from __future__ import annotations

import re
from typing import Any

from gce.config.redaction import SECRET_KEY
from gce.transport.urls import redact as redact_url

MASK = "***"
MIN_LITERAL = 6  # shorter remembered secrets would mask ordinary words (the patterns still hide them)
_NOT_SECRETS = {"true", "false", "null", "none", "changeme", "password", "secret"}

# A secret-like key ("db_password", "SITE_API_TOKEN", "ssh-key"; not "keys" or "monkey"), as
# gce's config errors judge one; and a URL key, whose value is a secret when it is no URL: a
# password typed where the URL should be.
_KEY = SECRET_KEY
_URL_KEY = r"(?:[A-Za-z0-9]+[_.-])*?ur[li]s?"
_ANY_KEY = rf"(?:{_KEY}|{_URL_KEY})"
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
# "key": "value" (JSON, Python reprs; also several on one line)
_QUOTED_PAIR = re.compile(rf"""(?i)(["'])({_ANY_KEY})\1(\s*:\s*)("(?:[^"\\]|\\.)*"|'[^']*'|[^,}}\]\s]+)""")
# KEY=value / export KEY=value / ?key=value&: the value ends at a space (or a quote, a '&')
_EQ_PAIR = re.compile(rf"""(?i)(^|[^A-Za-z0-9])((?:export\s+)?{_ANY_KEY})(\s*=\s*)("(?:[^"\\]|\\.)*"|'[^']*'|[^\s"'`&]*)""")
# key: value / - key: value, to the end of the line or a " #" comment
_COLON_PAIR = re.compile(
    rf"""(?i)(^|[^A-Za-z0-9])({_ANY_KEY})(\s*:\s*)("(?:[^"\\]|\\.)*"|'[^']*'|.*?)(\s+#.*)?$""")
# --token VALUE, --password=VALUE, and the same in a JSON argv list: "--token", "VALUE"
_OPTION = re.compile(rf"""(?i)(?<![A-Za-z0-9_])(--?{_KEY})(=|\s+|["']\s*,\s*["'])([^\s"',]+)""")
# -p VALUE (mysql, many tools' password option), curl -u USER:PASSWORD / --user=USER:PASSWORD
_SHORT_OPTION = re.compile(r"""(?<![\w-])(-p)(\s+)([^\s"'-][^\s"']*)""")
_USER_OPTION = re.compile(r"""(?<![\w-])(-u\s*|--user[=\s]\s*)([^\s:"']*:)([^\s"']+)""")
# a secret's name, a space and a quoted value or one that looks like a credential (letters and digits)
_NAMED = re.compile(r"""(?i)(?<![\w-])(pass(?:word|wd|phrase)|secret|token|credentials?|api[-_]?key)(\s+)"""
                    r"""("[^"]*"|'[^']*'|(?=[\w.~+/=-]*\d)(?=[\w.~+/=-]*[A-Za-z])[\w.~+/=-]{8,})""")
_XML = re.compile(rf"(?i)<({_KEY})>([^<]+)</\1>")
# what may close a value that the text opened before its key: "msg='token=x'", "[token: x]"
_CLOSERS = "\"')]}>,;"
_HEADER = re.compile(r"(?i)\b(authorization\s*[:=]\s*)(.+)$")
_BEARER = re.compile(r"\b(Bearer|Basic|bearer)(\s+)([A-Za-z0-9._~+/=-]{8,})")
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----")
_PEM_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----")
_SCHEMA_VALUES = ("default", "const", "examples", "enum", "value")  # of a secret-like property
_BLOCK_START = re.compile(r"^[|>][-+0-9]*$")


def _is_url(key: str, value: str) -> bool:
    """True when KEY names a URL and VALUE is one (the URL rule hid its password) or is empty:
    kept as it is. Anything else there may be a password typed in the wrong place."""
    return re.fullmatch(_URL_KEY, key, re.I) is not None and ("://" in value or value.strip("\"'") in ("", "null"))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


class Redactor:
    def __init__(self) -> None:
        self.secrets: set[str] = set()

    # -- remembering -------------------------------------------------------------------------
    def remember(self, value: str) -> None:
        from urllib.parse import unquote

        value = value.strip().strip("\"'")
        for v in {value, unquote(value)}:
            if len(v) >= MIN_LITERAL and MASK not in v and v.lower() not in _NOT_SECRETS:
                self.secrets.add(v)

    def learn(self, text: str) -> None:
        """Remember the secrets of TEXT so that they are hidden in every other text too."""
        self._redact_patterns(text, learn=True)

    def learn_data(self, data: Any, key: str = "") -> None:
        """Remember the secrets of parsed YAML/JSON: values under secret-like keys, URL passwords."""
        if isinstance(data, dict):
            # A mapping under a secret-like key is judged by its own keys: {"api_key": {"type":
            # "string"}} is a schema, not a secret, but its default or example value is one.
            for k, v in data.items():
                secret = re.fullmatch(_KEY, str(k), re.I) or (key and k in _SCHEMA_VALUES)
                self.learn_data(v, str(k) if secret else "")
        elif isinstance(data, list):
            for v in data:
                self.learn_data(v, key)
        elif isinstance(data, (str, int, float)) and not isinstance(data, bool):
            if key:
                self.remember(str(data))
            elif isinstance(data, str):
                self._redact_patterns(data, learn=True)

    # -- hiding ------------------------------------------------------------------------------
    def redact(self, text: str) -> str:
        text = self._redact_patterns(text, learn=False)
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def redact_data(self, data: Any) -> Any:
        """A copy of DATA (JSON-like) with every string redacted and secret-like keys masked."""
        if isinstance(data, dict):
            return {k: (MASK if re.fullmatch(_KEY, str(k), re.I) and v not in (None, "", MASK)
                        else self.redact_data(v)) for k, v in data.items()}
        if isinstance(data, (list, tuple)) and data and all(isinstance(v, str) for v in data):
            # lines (of a log tail, say) are redacted together: a key block spans several
            return self.redact("\n".join(data)).split("\n")
        if isinstance(data, (list, tuple)):
            return [self.redact_data(v) for v in data]
        if isinstance(data, str):
            return self.redact(data)
        return data

    def _secret(self, value: str, learn: bool) -> str:
        if learn:
            self.remember(value.strip("\"'"))
        if value[:1] in "\"'" and len(value) > 1 and value[-1] == value[0]:
            return value[0] + MASK + value[0]
        return MASK

    def _redact_patterns(self, text: str, learn: bool) -> str:
        text = self._redact_pem(text, learn)
        out: list[str] = []
        block_indent: int | None = None  # inside the block or mapping under a secret-like key
        for line in text.split("\n"):
            if block_indent is not None:
                stripped = line.strip()
                if not stripped or _indent(line) > block_indent or (
                        _indent(line) == block_indent and stripped.startswith("- ")):
                    if stripped and not stripped.startswith("#"):
                        item = stripped[2:] if stripped.startswith("- ") else stripped
                        pair = re.match(r"^([\w.-]+):\s*(.*)$", item)
                        if learn and (pair is None or re.fullmatch(_KEY, pair.group(1), re.I)):
                            self.remember(pair.group(2) if pair else item)  # not "user: bob" of credentials:
                        keep = line[:len(line) - len(item)]  # indentation and "- "
                        line = keep + (f"{pair.group(1)}: {MASK}" if pair and pair.group(2) else
                                       line[len(keep):] if pair else MASK)
                    out.append(line)
                    continue
                block_indent = None
            line, opens_block = self._redact_line(line, learn)
            if opens_block:
                block_indent = _indent(line)
            out.append(line)
        return "\n".join(out)

    def _quoted_pair(self, learn: bool) -> Any:
        def sub(m: re.Match) -> str:
            value = m.group(4)
            if value in ("null", "true", "false") or value.startswith(("{", "[")) or _is_url(m.group(2), value):
                return m.group(0)
            hidden = self._secret(value, learn)
            return m.group(1) + m.group(2) + m.group(1) + m.group(3) + (hidden if hidden != MASK else f'"{MASK}"')
        return sub

    def _redact_line(self, line: str, learn: bool) -> tuple[str, bool]:
        """LINE with its secrets hidden, and whether it opens a YAML block under a secret key."""

        def url(m: re.Match) -> str:
            hidden = redact_url(m.group(0))
            if learn and hidden != m.group(0):
                userinfo = m.group(0).split("//", 1)[1].rsplit("@", 1)[0]
                self.remember(userinfo.split(":", 1)[1])
            return hidden

        def secret(group: int) -> Any:  # hides GROUP of the match, keeps the rest of it
            return lambda m: (m.string[m.start():m.start(group)] + self._secret(m.group(group), learn)
                              + m.string[m.end(group):m.end()])

        line = _URL.sub(url, line)
        line = _QUOTED_PAIR.sub(self._quoted_pair(learn), line)
        line = _OPTION.sub(secret(3), line)
        line = _SHORT_OPTION.sub(secret(3), line)
        line = _USER_OPTION.sub(secret(3), line)
        line = _HEADER.sub(secret(2), line)
        line = _BEARER.sub(secret(3), line)
        line = _NAMED.sub(secret(3), line)
        line = _XML.sub(secret(2), line)
        line = self._pairs(_EQ_PAIR, line, learn)[0]
        return self._pairs(_COLON_PAIR, line, learn)

    def _pairs(self, pattern: re.Pattern, line: str, learn: bool) -> tuple[str, bool]:
        """LINE with the value of each PATTERN pair hidden; whether the last opens a YAML block."""
        pos, opens = 0, False
        while (m := pattern.search(line, pos)) is not None:
            pos = m.start(4) if m.end() > m.start(4) else m.end() + 1  # on to the next pair
            value = m.group(4).strip()
            if MASK in value or _is_url(m.group(2), value):
                continue
            if value == "" or _BLOCK_START.match(value):
                opens = pattern is _COLON_PAIR and re.fullmatch(_KEY, m.group(2), re.I) is not None
                continue
            if line.lstrip().startswith("#") and pattern is _COLON_PAIR and " " in value:
                continue  # in a comment, "password: keep this file private" is prose; "#password: x" is not
            tail = ""
            if value[:1] not in "\"'":  # a quote or bracket opened before the key closes after the value
                kept = value.rstrip(_CLOSERS)
                value, tail = kept or value, value[len(kept):] if kept else ""
            hidden = self._secret(value, learn) + tail
            line = line[:m.start(4)] + hidden + line[m.end(4):]
            pos = m.start(4) + len(hidden)
        return line, opens

    def _redact_pem(self, text: str, learn: bool) -> str:
        """Replace private key blocks, even one whose BEGIN or END line a tail cut off."""
        out, pos = [], 0
        while True:
            begin = _PEM_BEGIN.search(text, pos)
            end = _PEM_END.search(text, pos)
            if end and (begin is None or end.start() < begin.start()):
                # an END with no BEGIN before it: the key started before this text did
                cut = text[pos:end.start()]
                if learn:
                    self._remember_pem(cut)
                out.append(("\n" if cut.startswith("\n") else "") + MASK + "\n" + end.group(0))
                pos = end.end()
                continue
            if begin is None:
                out.append(text[pos:])
                return "".join(out)
            out.append(text[pos:begin.end()])
            end = _PEM_END.search(text, begin.end())
            stop = end.start() if end else len(text)
            if learn:
                self._remember_pem(text[begin.end():stop])
            out.append("\n" + MASK + "\n")
            if end is None:
                return "".join(out)
            out.append(end.group(0))
            pos = end.end()

    def _remember_pem(self, body: str) -> None:
        for line in body.split("\n"):
            self.remember(line)
