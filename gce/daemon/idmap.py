"""Identity mapping: which local account runs a submitter's tasks, and whether it may.

The submitter is the broker-validated ``user_id`` of a task (``alice@uni.edu`` or ``alice``);
rules see it as ``{"username": u, "id": u}``, plus ``"email": u`` when it holds an ``@``. The
mapping file is Globus Connect Server v5's format: one document or a JSON list of them, tried
in order, the first rule that maps the identity winning (as in Globus Compute).

- ``expression_identity_mapping#1.0.0``: ``"mappings": [{"source": "{username}", "match":
  "(.*)@uni\\.edu", "output": "{0}", "ignore_case": false, "literal": false}]``. The match
  must cover the whole source; ``{0}`` is the first parenthesised group. ``match`` is GCS's
  reduced regex: ``. ? * | ( )`` are operators, ``\\`` escapes one of them (or ``\\``, ``"``)
  and every other character is literal (``[a-z]``, ``+``, ``^``, ``$`` match themselves).
- ``external_identity_mapping#1.0.0``: ``"command": [argv...]``, see ``idmap_external``.

API::

    mapper = mapper_for(config)            # or IdentityMapper(path, endpoint=..., endpoint_id=...)
    mapper.map("alice@uni.edu")            -> ("alice", "expression mapping #1")   | MappingRefused

What the endpoint's config then allows is ``gce.daemon.policy``'s (the account itself comes
from ``gce.daemon.privileges.resolve_local_user``)::

    check_policy(identity, local, *, allowed_identities, allowed_domains, min_uid,
                 allow_privileged_mapping, endpoint)                          -> None | MappingRefused
    map_identity(mapper, "alice@uni.edu", config) -> (LocalUser, rule)       # all of the above

``map`` stats the file on each call and re-reads it when its inode, size, mtime or ctime
changed. What is in force is what the file says now: a file that is deleted, emptied, broken,
or that someone other than root could change (gce.daemon.privileges.others_could_change) maps
nobody until it is fixed, and says why in the log once. (Keeping the previous mapping would
keep an identity the admin has just revoked mapped.)

Why not the ``globus-identity-mapping`` library: its external mapper requires UUID identity
ids (ours are broker user names) and leaves a timed-out program running, it anchors ``match``
with ``^...$`` (``a|b`` is then not a whole-string match), it needs Python >= 3.10, and it
brings marshmallow and click into a manager that must stay small.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from gce.daemon import idmap_external, privileges
from gce.errors import ConfigError, GceError

if TYPE_CHECKING:
    from gce.config.model import EndpointConfig

log = logging.getLogger(__name__)

EXPRESSION = "expression_identity_mapping#1.0.0"
EXTERNAL = "external_identity_mapping#1.0.0"
IDENTITY_FIELDS = ("username", "id", "email")
NO_MATCH = "no mapping rule matched"
UNUSABLE = "identity mapping file unusable"
_FIELD_RE = re.compile(r"\{([^{}]*)\}")
_ESCAPABLE = frozenset('.?*|()\\"')


class MappingRefused(GceError):
    """No local account for IDENTITY here. ``str()`` is a sentence for the submitter naming the
    identity and the endpoint; ``rule`` says what decided; ``detail`` is for the admin only;
    ``policy`` is true when the identity was mapped (or could be) but the endpoint's policy
    refuses it, false when it simply has no usable mapping."""

    def __init__(self, identity: str, rule: str, sentence: str, *, endpoint: str = "", hint: str = "",
                 detail: str = "", policy: bool = False):
        super().__init__(sentence, hint=hint)
        self.identity, self.rule, self.endpoint, self.detail = identity, rule, endpoint, detail
        self.policy = policy


def identity_document(user_id: str) -> dict[str, str]:
    """The fields a mapping rule sees for broker user USER_ID."""
    return {"username": user_id, "id": user_id, **({"email": user_id} if "@" in user_id else {})}


@dataclass(frozen=True)
class _Rule:
    label: str  # "expression mapping #2", "document #3: external mapping"
    apply: Callable[[dict], Optional[str]]  # the local user name; None when the rule does not apply


def _where(*parts: str) -> str:
    return ".".join(p for p in parts if p).replace(".[", "[") or "(top level)"


def _keys(doc: dict, where: str, required: Iterable[str], optional: Iterable[str] = ()) -> None:
    missing = [k for k in required if k not in doc]
    unknown = sorted(set(doc) - set(required) - set(optional) - {"comment"})
    if missing or unknown:
        raise ValueError(f"{where}: " + (f"missing {', '.join(missing)}" if missing else f"unknown key {', '.join(unknown)}"))


def _compile_match(match: str, ignore_case: bool, literal: bool) -> re.Pattern:
    out: list[str] = [re.escape(match)] if literal else []
    chars = iter("" if literal else match)
    for c in chars:
        if c == "\\":
            nxt = next(chars, "")
            if not nxt or nxt not in _ESCAPABLE:
                raise ValueError(f"'\\{nxt}' is not an escape here (escape only . ? * | ( ) \\ \")")
            out.append(re.escape(nxt))
        elif c in "?*" and out[-1:] in (["?"], ["*"]):
            raise ValueError(f"'{out[-1]}{c}' repeats a repetition")
        else:
            out.append(c if c in ".?*|()" else re.escape(c))
    try:
        return re.compile("".join(out), re.IGNORECASE if ignore_case else 0)
    except re.error as e:
        raise ValueError(f"{match!r} is not a valid expression: {e}") from None


def _interpolate(template: str, fields: dict, groups: tuple = ()) -> str | None:
    """TEMPLATE with {field} and {N} filled in; None if it names a field FIELDS lacks
    (e.g. {email} of a broker user without '@': the rule does not apply)."""
    keys = _FIELD_RE.findall(template)
    if any(not k.isdigit() and k not in fields for k in keys):
        return None
    return _FIELD_RE.sub(lambda m: (groups[int(m[1])] or "") if m[1].isdigit() else fields[m[1]], template)


def _check_fields(template: str, groups: int, where: str) -> None:
    for key in _FIELD_RE.findall(template):
        if key.isdigit() and int(key) >= groups:
            raise ValueError(f"{where}: {{{key}}} needs {int(key) + 1} group(s) in match, which has {groups}")
        if not key.isdigit() and key not in IDENTITY_FIELDS:
            raise ValueError(f"{where}: unknown field {{{key}}} (gce identities have {', '.join(IDENTITY_FIELDS)})")


def _expression(entry: Any, where: str, label: str) -> _Rule:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object with source, match and output")
    _keys(entry, where, ("source", "match", "output"), ("ignore_case", "literal"))
    for key, kind in (("source", str), ("match", str), ("output", str), ("ignore_case", bool), ("literal", bool)):
        if not isinstance(entry.get(key, False), kind):
            raise ValueError(f"{where}.{key}: expected {'a string' if kind is str else 'true or false'}")
    try:
        pattern = _compile_match(entry["match"], entry.get("ignore_case", False), entry.get("literal", False))
    except ValueError as e:
        raise ValueError(f"{where}.match: {e}") from None
    _check_fields(entry["source"], 0, f"{where}.source")
    _check_fields(entry["output"], pattern.groups, f"{where}.output")
    source, output = entry["source"], entry["output"]

    def apply(fields: dict) -> str | None:
        text = _interpolate(source, fields)
        m = pattern.fullmatch(text) if text is not None else None
        return _interpolate(output, fields, m.groups()) if m else None

    return _Rule(label, apply)


def parse_rules(data: Any, endpoint_id: str = "", timeout: float = idmap_external.DEFAULT_TIMEOUT) -> list[_Rule]:
    """The rules of a parsed mapping file, in order; ValueError saying where it is wrong."""
    docs = data if isinstance(data, list) else [data]
    rules: list[_Rule] = []
    for i, doc in enumerate(docs):
        at = f"[{i}]" if isinstance(data, list) else ""
        prefix = f"document #{i + 1}: " if len(docs) > 1 else ""
        kind = doc.get("DATA_TYPE") if isinstance(doc, dict) else None
        if kind == EXPRESSION:
            _keys(doc, _where(at), ("DATA_TYPE", "mappings"))
            if not isinstance(doc["mappings"], list):
                raise ValueError(f"{_where(at, 'mappings')}: expected a list")
            rules += [_expression(e, _where(at, "mappings", f"[{j}]"), f"{prefix}expression mapping #{j + 1}")
                      for j, e in enumerate(doc["mappings"])]
        elif kind == EXTERNAL:
            _keys(doc, _where(at), ("DATA_TYPE", "command"))
            try:
                rules.append(_Rule(f"{prefix}external mapping",
                                   idmap_external.mapping_function(doc["command"], endpoint_id, timeout)))
            except ValueError as e:
                raise ValueError(f"{_where(at, 'command')}: {e}") from None
        else:
            raise ValueError(f"{_where(at, 'DATA_TYPE')}: expected {EXPRESSION} or {EXTERNAL}, not {kind!r}")
    return rules


def _signature(path: Path) -> tuple:
    """What changes when the file's content, or who could change it, may have changed."""
    st = path.stat()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, privileges.others_could_change(path))


class IdentityMapper:
    """The mapping file at PATH (ConfigError if it is unusable now), re-read when it changes.
    ENDPOINT names the endpoint in refusals; ENDPOINT_ID is passed to external programs."""

    def __init__(self, path: str | Path, *, endpoint: str = "", endpoint_id: str = "",
                 timeout: float = idmap_external.DEFAULT_TIMEOUT):
        self.path = Path(path)
        self.endpoint, self.endpoint_id, self.timeout = endpoint, endpoint_id, timeout
        self._lock = threading.Lock()  # the manager may map from several threads
        self._rejected: tuple | None = None  # the signature of a bad file already logged
        self._signature, self._rules = self._load()
        self._unusable = False  # the file changed into one that maps nobody

    def _load(self) -> tuple[tuple, list[_Rule]]:
        try:
            signature = _signature(self.path)  # before reading: a write in between shows up next time
            if signature[-1]:
                raise ConfigError(f"identity mapping file {self.path} is not safe to use",
                                  f"{signature[-1]}, so someone other than root could change it",
                                  hint=f"chown root {self.path} and chmod go-w it and the directories above it")
            return signature, parse_rules(json.loads(self.path.read_bytes()), self.endpoint_id, self.timeout)
        except OSError as e:
            raise ConfigError(f"cannot read the identity mapping file {self.path}", e.strerror or str(e),
                              hint="check identity_mapping_config_path in config.yaml") from None
        except ValueError as e:  # json.JSONDecodeError included
            raise ConfigError(f"invalid identity mapping file {self.path}", str(e),
                              hint="fix the file; gce idmap test NAME IDENTITY shows how an identity maps") from None

    def _refresh(self) -> None:
        with self._lock:
            try:
                signature = _signature(self.path)
            except OSError as e:
                signature = ("unreadable", e.strerror)
            if signature in (self._signature, self._rejected):
                return
            try:
                self._signature, self._rules = self._load()
                self._rejected, self._unusable = None, False
                log.info("identity mapping file %s reloaded (%d rules)", self.path, len(self._rules))
            except ConfigError as e:
                self._rejected, self._rules, self._unusable = signature, [], True
                self._signature = ()
                log.error("identity mapping file %s changed but cannot be used: %s; it maps nobody until it is "
                          "fixed", self.path, e.why)

    def map(self, identity: str) -> tuple[str, str]:
        """(local user name, the rule that mapped IDENTITY); MappingRefused if none does."""
        self._refresh()
        if self._unusable:
            raise MappingRefused(identity, UNUSABLE, f"identity {identity!r} could not be mapped on endpoint "
                                 f"{self.endpoint!r}: its identity mapping file is unusable (the endpoint's log "
                                 "says why)", endpoint=self.endpoint, hint=f"fix {self.path}")
        fields = identity_document(identity)
        for rule in self._rules:
            try:
                name = rule.apply(fields)
            except idmap_external.ExternalMappingError as e:
                log.warning("identity %r: %s in %s failed: %s; %s", identity, rule.label, self.path, e, e.detail)
                raise MappingRefused(identity, rule.label, f"identity {identity!r} could not be mapped on endpoint "
                                     f"{self.endpoint!r} ({rule.label}: {e})", endpoint=self.endpoint,
                                     hint=f"fix the mapping program or its rule in {self.path}",
                                     detail=e.detail) from None
            if name:
                return name, rule.label
        raise MappingRefused(identity, NO_MATCH, f"identity {identity!r} does not map to a local user on endpoint "
                             f"{self.endpoint!r} ({NO_MATCH})", endpoint=self.endpoint,
                             hint=f"add a rule for this identity to {self.path}")


def mapper_for(config: EndpointConfig, timeout: float | None = None) -> IdentityMapper:
    """The IdentityMapper of a multi-user endpoint's CONFIG; ConfigError if it has no usable file."""
    if not config.identity_mapping_config_path:
        raise ConfigError(f"endpoint {config.name!r} has no identity mapping file",
                          "config.yaml does not set identity_mapping_config_path",
                          hint="set identity_mapping_config_path in config.yaml to a GCS identity mapping file")
    return IdentityMapper(config.identity_mapping_config_path, endpoint=config.name,
                          endpoint_id=config.endpoint_id,
                          timeout=config.identity_mapping_timeout if timeout is None else timeout)
