"""The gce SDK: run Python functions on gce endpoints through a RabbitMQ broker.

    from gce.sdk import Executor

    with Executor(endpoint_id="...") as ex:
        print(ex.submit(sum, [1, 2, 3]).result())

The names below load on first use (PEP 562): code that needs one part of the SDK
(``gce.sdk.serialize``, ``gce.sdk.errors``) must not pay for pika and the Executor machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gce import __version__

_EXPORTS = {
    "Client": "client",
    "Executor": "executor",
    "TaskFuture": "executor",
    "ShellFunction": "shell",
    "ShellResult": "shell",
    "MPIFunction": "mpi",
    "BrokerNotConfigured": "errors",
    "BrokerUnavailable": "errors",
    "ControlRefused": "control",
    "ExecutorFailed": "errors",
    "NoTaskQueue": "errors",
    "PayloadTooLarge": "errors",
    "RegistryRefused": "registry",
    "RemoteExecutionError": "errors",
    "SdkError": "errors",
    "SubmitRefused": "errors",
    "TaskFailed": "errors",
    "TaskOutput": "errors",
    "TaskPending": "errors",
    "TaskGroupInUse": "groups",
    "TaskGroupUnlisted": "groups",
    "NoDirectory": "discovery",
    "UnknownFunction": "errors",
    "VersionMismatch": "versions",
    "VersionWarning": "versions",
}

__all__ = ["__version__", *sorted(_EXPORTS)]

if TYPE_CHECKING:
    from gce.sdk.client import Client
    from gce.sdk.control import ControlRefused
    from gce.sdk.errors import (BrokerNotConfigured, BrokerUnavailable, ExecutorFailed, NoTaskQueue, PayloadTooLarge,
                                RemoteExecutionError, SdkError, SubmitRefused, TaskFailed, TaskOutput, TaskPending,
                                UnknownFunction)
    from gce.sdk.discovery import NoDirectory
    from gce.sdk.executor import Executor, TaskFuture
    from gce.sdk.groups import TaskGroupInUse, TaskGroupUnlisted
    from gce.sdk.mpi import MPIFunction
    from gce.sdk.registry import RegistryRefused
    from gce.sdk.shell import ShellFunction, ShellResult
    from gce.sdk.versions import VersionMismatch, VersionWarning


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gce.sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"gce.sdk.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
