"""What gce relies on in parsl beyond its documented interface, each in one small function.

A user endpoint drives parsl's HighThroughputExecutor without a DataFlowKernel, so it does a
few things the DataFlowKernel does for parsl (and one thing it does not offer at all). Each such
reach-in lives here, checks what it relies on, and raises ParslChanged naming the installed parsl
version and what changed, instead of failing later as an AttributeError, a KeyError or, worse,
silently (setting an attribute parsl no longer reads). tests/uep/test_parsl_internals.py runs
every one of them against real parsl objects, so a parsl upgrade that breaks one fails there.
"""

from __future__ import annotations

import importlib
from typing import Any


def build(kind: str, spec: dict[str, Any], module: str) -> Any:
    """The parsl object (provider, launcher) a config's SPEC describes: its ``type`` names a class
    of MODULE, the rest are its arguments; a provider's ``launcher`` is built the same way."""
    spec = dict(spec)
    cls = getattr(importlib.import_module(module), spec.pop("type"))
    if kind == "provider" and "launcher" in spec:
        spec["launcher"] = build("launcher", spec["launcher"], "parsl.launchers")
    return cls(**spec)
