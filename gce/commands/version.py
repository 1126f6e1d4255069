"""gce version: which gce, Python and libraries this is."""

from __future__ import annotations

import platform
import sys
from typing import Annotated

import typer

from gce import __version__, output

# Versions that matter when a function fails remotely (version skew between the submitter
# and the workers is the usual cause); read from package metadata, without importing them.
_LIBRARIES = ("parsl", "pika", "cloudpickle")


def versions() -> dict[str, str]:
    from importlib import metadata

    found = {"gce": __version__, "python": platform.python_version()}
    for lib in _LIBRARIES:
        try:
            found[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            found[lib] = "not installed"
    return found


def command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the versions as a JSON object.")] = False,
) -> None:
    """Show the versions of gce, Python and key libraries.

    Compare them with the SDK's (gce.sdk.__version__, your Python) when functions fail remotely:
    a different Python or cloudpickle version on each side is a common cause.
    """
    found = versions()
    if as_json:
        output.json({**found, "python_executable": sys.executable, "platform": platform.platform()})
        return
    output.line(f"gce {found.pop('gce')}")
    output.line(f"Python {found.pop('python')} ({sys.executable})")
    output.line(", ".join(f"{lib} {v}" for lib, v in found.items()))
