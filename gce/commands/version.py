"""gce version: which product this is, how it was installed, and its Python and libraries."""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Annotated

import typer

from gce import __version__, output

# Globus Compute's agent package ships a /usr/sbin/gce too (ahead of /usr/bin in root's PATH):
# the first line says which of the two answered.
PRODUCT = "gce, the self-hosted function-as-a-service endpoint; not Globus Compute"
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


def installed_from() -> tuple[str, str]:
    """(deb | rpm | source | pip, where): a package's prefix, the source checkout's directory
    gce runs from, or the environment pip installed it into."""
    from gce.commands.packaged import packaged

    found = packaged()
    if found is not None:
        return found.kind, sys.prefix
    checkout = Path(__file__).resolve().parent.parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "gce" / "cli.py").is_file():
        return "source", str(checkout)  # run from the tree itself (an editable install, or PYTHONPATH)
    return "pip", sys.prefix


def _installed_line(kind: str, where: str) -> str:
    if kind in ("deb", "rpm"):
        return f"Installed from the .{kind} package, in {where}"
    if kind == "source":
        return f"Run from the source checkout {where}"
    return f"Installed with pip, in {where}"


def command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the versions as a JSON object.")] = False,
) -> None:
    """Show which gce this is, how it was installed, and the versions of Python and key libraries.

    Compare them with the SDK's (gce.sdk.__version__, your Python) when functions fail remotely:
    a different Python or cloudpickle version on each side is a common cause.
    """
    found = versions()
    kind, where = installed_from()
    if as_json:
        output.json({**found, "product": PRODUCT, "installed_from": kind, "location": where,
                     "python_executable": sys.executable, "platform": platform.platform()})
        return
    output.line(f"gce {found.pop('gce')} ({PRODUCT})")
    output.line(_installed_line(kind, where))
    output.line(f"Python {found.pop('python')} ({sys.executable})")
    output.line(", ".join(f"{lib} {v}" for lib, v in found.items()))
