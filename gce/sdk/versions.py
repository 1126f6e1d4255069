"""Before the first task to an endpoint: do this SDK's Python, gce and cloudpickle suit the endpoint's?

The endpoint's status on the broker says its versions (those of the interpreter its manager runs,
which its user endpoints and local workers run too unless a config picks another). The rule
(README, "Submitting from Python"):

- Python: a pickled function (``cloudpickle``) is bytecode of one Python minor version, so a
  different major.minor at the endpoint is refused before anything is sent; a source-code function
  (``register_source_code``) crosses versions, so it only gets a warning.
- gce: a different major.minor gets a warning (tasks still travel: their format has its own version).
- cloudpickle: a different major gets a warning, for pickled functions only.

Warnings (`VersionWarning`) come once per endpoint and Executor or Client. An endpoint that does not
say its versions (older than this check, or never started) is not checked: the worker still
refuses a Python mismatch it meets.
"""

from __future__ import annotations

import functools
import platform
import threading
import warnings
from dataclasses import dataclass
from typing import Callable

from gce import __version__
from gce.sdk import serialize
from gce.sdk.errors import SdkError


class VersionWarning(UserWarning):
    """The endpoint runs other versions than this SDK: tasks may fail there."""


class VersionMismatch(SdkError, RuntimeError):
    """The endpoint cannot run this task: its Python differs from this one and the function is pickled."""

    code = "VERSION_MISMATCH"


@dataclass(frozen=True)
class Runtime:
    python: str
    gce: str
    cloudpickle: str


@functools.lru_cache(maxsize=1)  # reading a distribution's metadata costs milliseconds
def local_cloudpickle() -> str:
    try:
        from importlib.metadata import version

        return version("cloudpickle")
    except Exception:  # not installed as a distribution: say nothing rather than guess
        return ""


def local() -> Runtime:
    """This process's versions."""
    return Runtime(platform.python_version(), __version__, local_cloudpickle())


def remote(status: dict) -> Runtime | None:
    """The endpoint's versions from its STATUS (Client.get_endpoint_status), or None if it does not say."""
    details = status.get("details")
    if not isinstance(details, dict) or not isinstance(details.get("python_version"), str):
        return None

    def text(key: str) -> str:
        value = details.get(key)
        return value if isinstance(value, str) else ""

    return Runtime(text("python_version"), text("gce_version"), text("cloudpickle_version"))


def _parts(version: str, count: int) -> tuple[str, ...] | None:
    parts = version.split(".") if version else []
    return tuple(parts[:count]) if len(parts) >= count else None


def _differ(here: str, there: str, count: int) -> bool:
    """True when both versions are known and their first COUNT parts differ."""
    a, b = _parts(here, count), _parts(there, count)
    return a is not None and b is not None and a != b


def verdict(here: Runtime, there: Runtime, kind: bytes) -> tuple[str | None, list[str]]:
    """(why a task of KIND is refused, or None; the warnings it gets) for an SDK at HERE and an endpoint at THERE."""
    pickled = kind == serialize.KIND_PICKLE
    warned = []
    if _differ(here.python, there.python, 2):
        if pickled:
            return (f"the endpoint runs Python {there.python} and this SDK Python {here.python}: a pickled "
                    "function cannot cross Python minor versions\nhint: use a Python "
                    f"{'.'.join(there.python.split('.')[:2])} here, or send the function as source with "
                    "register_source_code() and submit_to_registered_function()"), []
        warned.append(f"the endpoint runs Python {there.python} and this SDK Python {here.python}: the source "
                      "code runs there, but arguments and results are pickled and may not load on both sides")
    if _differ(here.gce, there.gce, 2):
        warned.append(f"the endpoint runs gce {there.gce} and this SDK gce {here.gce}: some features may "
                      "differ; use the same major.minor on both sides")
    if pickled and _differ(here.cloudpickle, there.cloudpickle, 1):
        warned.append(f"the endpoint has cloudpickle {there.cloudpickle} and this SDK cloudpickle "
                      f"{here.cloudpickle}: a function pickled by one major version may not load with another")
    return None, warned


class Checker:
    """One Executor's or Client's checks: each endpoint's versions are read once (READ_STATUS gives
    its status), and each endpoint's warnings are given once."""

    def __init__(self, read_status: Callable[[str], dict]) -> None:
        self._read_status = read_status
        self._lock = threading.Lock()
        self._runtimes: dict[str, Runtime | None] = {}  # endpoint -> its versions, read once
        self._refusals: dict[tuple[str, bytes], str | None] = {}  # (endpoint, kind) -> why refused, if
        self._warned: set[str] = set()

    def check(self, endpoint_id: str, kind: bytes) -> None:
        """Raise VersionMismatch if a task of KIND cannot run at ENDPOINT_ID; warn (once) if it may fail."""
        key = (endpoint_id, kind)
        if key not in self._refusals:  # the first task of this kind to this endpoint; later ones pay a lookup
            warned: list[str] = []
            with self._lock:  # one status read per endpoint, even with many submitting threads
                if key not in self._refusals:
                    if endpoint_id not in self._runtimes:
                        try:
                            self._runtimes[endpoint_id] = remote(self._read_status(endpoint_id))
                        except Exception:  # the check only helps: a status that cannot be read holds nothing up
                            self._runtimes[endpoint_id] = None
                    there = self._runtimes[endpoint_id]
                    refusal, warned = verdict(local(), there, kind) if there is not None else (None, [])
                    self._refusals[key] = refusal
                    if endpoint_id in self._warned:
                        warned = []
                    elif warned:
                        self._warned.add(endpoint_id)
            if warned:
                warnings.warn(f"endpoint {endpoint_id}: " + "; ".join(warned), VersionWarning, stacklevel=4)
        refusal = self._refusals[key]
        if refusal is not None:
            raise VersionMismatch(f"cannot send a task to endpoint {endpoint_id}: {refusal}")
