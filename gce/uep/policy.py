"""Which tasks a user endpoint lets reach a worker: allowed_functions and allowed_serializers.

Both are set in the endpoint's config.yaml and may also be set by the admin's user config template
(what a multi-user endpoint renders per user). The template only narrows: the rules in force are
the intersection of the two, so no value a user puts in their user_endpoint_config (the template's
variables) can let through a function or a serializer that config.yaml does not.

The checks read the payload's bytes only (gce.transport.payload): a refused task is answered before
anything in it is unpickled. A serializer is named by the kind of function body the SDK sends:
``cloudpickle`` (the function pickled by value: Executor.submit, register_function) or ``source``
(its source text: register_source_code). The arguments are always cloudpickle.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import Any, Iterable, Optional

from gce.config.uep import UepConfig
from gce.transport.message import ErrorCode
from gce.transport.payload import KIND_PICKLE, KIND_SOURCE

SERIALIZERS = (KIND_PICKLE.decode(), KIND_SOURCE.decode())  # the names allowed_serializers takes


def narrowed(site: Optional[Iterable[str]], template: Optional[Iterable[str]]) -> tuple[str, ...] | None:
    """What both SITE (config.yaml) and TEMPLATE (the rendered user config) allow; None: either
    list absent means that side allows anything, so the other decides (None when both are absent)."""
    if template is None:
        return None if site is None else tuple(site)
    if site is None:
        return tuple(dict.fromkeys(template))
    allowed = set(site)
    return tuple(f for f in dict.fromkeys(template) if f in allowed)


def site_locked(conf: UepConfig, rendered: dict[str, Any] | None) -> UepConfig:
    """CONF with the allowed_functions and allowed_serializers of the RENDERED user config (the
    admin's template, filled with the user's values) applied within those of config.yaml."""
    if not rendered:
        return conf
    return replace(conf,
                   allowed_functions=narrowed(conf.allowed_functions, rendered.get("allowed_functions")),
                   allowed_serializers=narrowed(conf.allowed_serializers, rendered.get("allowed_serializers")))


@dataclass(frozen=True)
class Refused:
    code: str
    sentence: str


@dataclass(frozen=True)
class TaskPolicy:
    functions: frozenset[str] | None = None  # None: any
    serializers: frozenset[str] | None = None

    @classmethod
    def of(cls, conf: UepConfig) -> TaskPolicy:
        def allowed(values: Optional[Iterable[str]]) -> frozenset[str] | None:
            return None if values is None else frozenset(values)
        return cls(allowed(conf.allowed_functions), allowed(conf.allowed_serializers))

    def serializer_refused(self, kind: bytes) -> Refused | None:
        """Refused when the function body of kind KIND may not run here."""
        name = kind.decode(errors="replace")[:40]
        if self.serializers is None or name in self.serializers:
            return None
        allowed = ", ".join(sorted(self.serializers)) or "none"
        hint = " (submit it with register_source_code)" if "source" in self.serializers else ""
        return Refused(ErrorCode.SERIALIZER_NOT_ALLOWED, f"this endpoint does not run functions serialized as {name!r}: its "
                       f"allowed_serializers are {allowed}{hint}")

    def function_refused(self, function_id: str) -> Refused | None:
        if self.functions is None or function_id in self.functions:
            return None
        return Refused(ErrorCode.FUNCTION_NOT_ALLOWED, f"function {function_id} is not in this endpoint's "
                       "allowed_functions")

    def refused(self, payload: bytes, function_id: str) -> Refused | None:
        """Why PAYLOAD, a well-formed task payload whose function is FUNCTION_ID, may not run here."""
        return self.serializer_refused(kind_of(payload)) or self.function_refused(function_id)


def kind_of(payload: bytes) -> bytes:
    """The kind of a well-formed task payload's function (its first part), read in place: the
    payload may be large, and its function and arguments are not needed here."""
    (length,) = struct.unpack_from("!Q", payload, 8)  # after the magic and the part count
    return bytes(payload[16:16 + min(length, 64)])
