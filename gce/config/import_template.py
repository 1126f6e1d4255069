"""A Globus Compute user config template, rewritten for gce (what `gce import` does to it).

The template is Jinja2 that renders YAML, so it is rewritten as text, not as data, and then
rendered once by gce (``gce.config.templating``) to prove the result works. The rewrites:

- ``type: GlobusComputeEngine`` becomes ``type: HighThroughputEngine`` (the same parsl executor);
- ``_GC`` (Globus Compute's reserved variables) is defined at the top from gce's own
  ``user_runtime``, ``mapped_identity`` and ``parent_config``; fields gce does not have are
  reported, since the template then sees them undefined;
- a block scalar whose only line is one ``{{ expression }}`` (``worker_init: |`` then
  ``{{ default_worker_init }}``) becomes ``key: {{ expression }}``: gce renders every ``{{ }}``
  as one quoted YAML value (its defence against YAML injection), which inside a block scalar
  would keep the quotes;
- a top-level key gce's user endpoint config does not take is put inside a Jinja comment,
  with the reason, and reported; ``idle_heartbeats_soft`` becomes the endpoint's ``idle_timeout``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gce.config import template_vars, templating

_ENGINE_TYPE = re.compile(r"(\btype:\s*[\"']?)GlobusComputeEngine\b")
_TOP_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:(.*)$")
# Regions where a line at column 0 is not YAML the template writes: comments and {% set %} blocks.
_HIDDEN = re.compile(r"\{#.*?#\}|\{%-?\s*set\s+\w+\s*-?%\}.*?\{%-?\s*endset\s*-?%\}", re.S)
_BLOCK_SCALAR = re.compile(r"^(\s*[A-Za-z_][\w-]*:)\s*[|>][-+]?\s*$")
_ONE_EXPRESSION = re.compile(r"^\s*(\{\{.*\}\})\s*$")
_GC_FIELD = re.compile(r"_GC\.(\w+)(?:\.(\w+))?(?:\.(\w+))?")

# Globus Compute's _GC, from gce's variables (its mapped_identity.local.groups are gids; dir is home).
PROLOGUE = (
    '{% set _GC = {"user_runtime": user_runtime, "parent_config": parent_config, '
    '"mapped_identity": {"local": {"uname": mapped_identity.local.uname, "uid": mapped_identity.local.uid, '
    '"gid": mapped_identity.local.gid, "groups": mapped_identity.local.gids, '
    '"dir": mapped_identity.local.home, "shell": mapped_identity.local.shell}}} %}\n'
)
_GC_HAS: dict[str, set[str] | None] = {"user_runtime": set(template_vars.local_runtime()), "parent_config": None,
           "mapped_identity": {"local"}}
_LOCAL_HAS = {"uname", "uid", "gid", "groups", "dir", "shell"}
# Globus Compute's user_runtime fields that gce's lacks, however the template reaches them (_GC.user_runtime
# is often first given a short name: {% set _rt = _GC.user_runtime %}).
_GC_RUNTIME_ONLY = re.compile(r"\.(globus_compute_sdk_version|globus_sdk_version|python)\b")


@dataclass
class Template:
    text: str
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (setting, why)
    idle_heartbeats: int | None = None  # idle_heartbeats_soft, for the endpoint's idle_timeout


def convert(text: str, where: str) -> Template:
    """The gce version of the template TEXT (named WHERE in the report)."""
    out = Template(_ENGINE_TYPE.sub(r"\1HighThroughputEngine", text))
    out.text = _one_line_expressions(out.text)
    out.text = _drop_top_keys(out, where)
    if "_GC" in out.text:
        _report_gc_fields(out, where)
        out.text = PROLOGUE + out.text
    return out


def _one_line_expressions(text: str) -> str:
    lines = text.split("\n")
    result: list[str] = []
    i = 0
    while i < len(lines):
        m = _BLOCK_SCALAR.match(lines[i])
        rest = [line for line in lines[i + 1:] if line.strip()]
        if m and rest and _ONE_EXPRESSION.match(rest[0]):
            j = lines.index(rest[0], i + 1)
            body_indent = len(rest[0]) - len(rest[0].lstrip())
            following = next((line for line in lines[j + 1:] if line.strip()), "")
            if len(following) - len(following.lstrip()) < body_indent:  # the expression is the whole body
                result.append(f"{m.group(1)} {_ONE_EXPRESSION.match(rest[0]).group(1)}")  # type: ignore[union-attr]
                i = j + 1
                continue
        result.append(lines[i])
        i += 1
    return "\n".join(result)


def _visible_starts(text: str) -> set[int]:
    """Offsets of the lines that begin outside Jinja comments and {% set %} blocks."""
    hidden = [m.span() for m in _HIDDEN.finditer(text)]
    starts, offset = set(), 0
    for line in text.split("\n"):
        if not any(a < offset < b for a, b in hidden):
            starts.add(offset)
        offset += len(line) + 1
    return starts


def _drop_top_keys(out: Template, where: str) -> str:
    allowed = _rendered_keys()
    text = out.text
    visible = _visible_starts(text)
    lines = text.split("\n")
    result: list[str] = []
    offset, i = 0, 0
    while i < len(lines):
        line = lines[i]
        m = _TOP_KEY.match(line) if offset in visible else None
        if not m or m.group(1) in allowed:
            result.append(line)
            offset += len(line) + 1
            i += 1
            continue
        key, value = m.group(1), m.group(2).strip()
        block = [line]
        for nxt in lines[i + 1:]:
            if nxt.strip() and not nxt[0].isspace():
                break
            block.append(nxt)
        while len(block) > 1 and not block[-1].strip():
            block.pop()
        why = _why_dropped(out, key, value)
        if out.idle_heartbeats is None or key != "idle_heartbeats_soft":  # else carried over, to idle_timeout
            out.dropped.append((f"{where}: {key}", why))
        body = "\n".join(block)
        if "#}" in body:
            result.append(f"{{# gce import left out {key} here: {why} #}}")
        else:
            result.append(f"{{# gce import left out ({why}):\n{body}\n#}}")
        offset += len(body) + 1
        i += len(block)
    return "\n".join(result)


def _rendered_keys() -> set[str]:
    """The top-level keys a user endpoint's config may have in this gce."""
    properties = templating.RENDERED["properties"]
    return set(properties) if isinstance(properties, dict) else set()


def _why_dropped(out: Template, key: str, value: str) -> str:
    if key == "idle_heartbeats_soft" and value.isdigit():
        out.idle_heartbeats = int(value)
        return "carried over as the endpoint's idle_timeout in config.yaml"
    reasons = {
        "idle_heartbeats_soft": "a user endpoint stops after the endpoint's idle_timeout, set in config.yaml",
        "idle_heartbeats_hard": "gce does not stop a user endpoint that has work; give tasks a time limit instead",
        "heartbeat_threshold": "gce watches the broker link with AMQP heartbeats (broker.heartbeat in config.yaml)",
        "heartbeat_period": "gce's status_period in config.yaml sets how often status is published",
    }
    return reasons.get(key, "gce's user endpoint config takes only " + ", ".join(sorted(_rendered_keys())))


def _report_gc_fields(out: Template, where: str) -> None:
    seen = set()
    for m in _GC_FIELD.finditer(out.text):
        top, sub, subsub = m.groups()
        has = _GC_HAS.get(top, set())
        shown = sorted(has) if has else sorted(_LOCAL_HAS)
        missing = None
        if top not in _GC_HAS:
            missing = f"_GC.{top}"
        elif has is not None and sub and sub not in has:
            missing = f"_GC.{top}.{sub}"
        elif top == "mapped_identity" and sub == "local" and subsub and subsub not in _LOCAL_HAS:
            missing = f"_GC.{top}.{sub}.{subsub}"
        if missing and missing not in seen:
            seen.add(missing)
            gce_has = "the environment is not shown to templates" if top == "env" else \
                "gce gives " + ", ".join(shown)
            out.dropped.append((f"{where}: {missing}", f"undefined in gce ({gce_has})"))
    for name in dict.fromkeys(_GC_RUNTIME_ONLY.findall(out.text)):
        out.dropped.append((f"{where}: user_runtime.{name}",
                            "undefined in gce (its user_runtime has " + ", ".join(sorted(template_vars.local_runtime())) + ")"))
