"""Engine, provider and launcher options checked against what will receive them.

The schema knows the common keys only; the rest go to parsl as keyword arguments when the
user endpoint builds its engine (gce.uep.engines). A misspelt key would pass the schema and
then end that start in a TypeError, after a restart had already stopped the running
endpoint. Checking the keys against the real signatures here turns that into a config
error with a "did you mean" before anything is stopped.

parsl is imported only for a HighThroughputEngine, and only when asked (about a second):
never call this in the manager, which must not import parsl.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any

from gce.config.schema import ENGINE, MPI_ENGINE_TYPES
from gce.errors import ConfigError

# Keys gce itself takes out of the engine mapping before the rest reaches HighThroughputExecutor,
# and the keyword arguments it passes itself (a second value for them would be a TypeError).
HTEX_OWN = {"type", "provider", "strategy_period", "max_idletime", "block_failure_limit", "block_grace_period",
            "scheduler_timeout", "scheduler_poll_period", "run_in_sandbox", "working_dir"}
HTEX_SET_BY_GCE = {"self", "label", "block_error_handler"}
HTEX_OWN |= {"container_type", "container_uri", "container_cmd_options"}  # gce.uep.containers takes them
HTEX_OWN |= {"max_retries_on_system_failure"}  # the user endpoint takes it (gce.uep.retries)
# A pool engine takes max_workers only; the schema's other common keys are accepted and unused.
POOL_KEYS = set(ENGINE["properties"])


def check(engine: dict | None, source: str) -> None:
    """Raise ConfigError naming the first key of ENGINE (a schema-valid engine mapping) that
    its engine, provider or launcher does not take, with the closest one that it does."""
    if not engine:
        return
    from gce.uep.containers import problem

    why = problem(engine)
    if why is not None:
        raise ConfigError(f"invalid configuration in {source}", f"engine.{why}",
                          hint=f"fix {source} and try again; gce-config(5) describes the container settings")
    kind = engine.get("type")
    if kind != "HighThroughputEngine" and kind not in MPI_ENGINE_TYPES:
        _compare(engine, POOL_KEYS, "engine", f"{kind}", source)
        return
    executor = "MPIExecutor" if kind in MPI_ENGINE_TYPES else "HighThroughputExecutor"
    htex = _class("parsl.executors", executor, "engine", source)
    _compare(engine, _parameters(htex, HTEX_OWN, HTEX_SET_BY_GCE), "engine", str(kind), source)
    provider = engine.get("provider")
    if not provider:
        return
    cls = _class("parsl.providers", provider["type"], "engine.provider.type", source)
    _compare(provider, _parameters(cls, {"type"}, {"self"}), "engine.provider", provider["type"], source)
    launcher = provider.get("launcher")
    if kind in MPI_ENGINE_TYPES and launcher and launcher["type"] != "SimpleLauncher":
        raise ConfigError(f"invalid configuration in {source}", f"engine.provider.launcher: {kind} starts each "
                          f"task's ranks itself, from one worker pool per block: it needs a SimpleLauncher, not "
                          f"a {launcher['type']}", hint=f"fix {source}: remove engine.provider.launcher, or set its "
                          "type to SimpleLauncher")
    if launcher:
        cls = _class("parsl.launchers", launcher["type"], "engine.provider.launcher.type", source)
        _compare(launcher, _parameters(cls, {"type"}, {"self"}), "engine.provider.launcher", launcher["type"],
                 source)


def _class(module: str, name: str, where: str, source: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"invalid configuration in {source}",
                          f"{where}: {name} cannot be used on this host: {type(e).__name__}: {e}",
                          hint="install the parsl extra it needs, or choose another type") from None


def _parameters(cls: Any, own: set[str], excluded: set[str]) -> set[str] | None:
    """The keys a mapping for CLS may hold, or None when CLS takes any keyword (**kwargs)."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return own | {name for name, p in params.items()
                  if name not in excluded and p.kind is not inspect.Parameter.VAR_POSITIONAL}


def _compare(mapping: dict, allowed: set[str] | None, where: str, what: str, source: str) -> None:
    if allowed is None:
        return
    for key in mapping:
        if key in allowed:
            continue
        shown = str(key)[:64]
        close = difflib.get_close_matches(shown, sorted(allowed), n=1)
        guess = f" (did you mean {close[0]!r}?)" if close else f" (it takes: {', '.join(sorted(allowed))})"
        raise ConfigError(f"invalid configuration in {source}", f"{where}.{shown}: {what} has no option "
                          f"{shown!r}{guess}",
                          hint=f"fix {source} and try again; 'gce configure --help' shows the defaults")
