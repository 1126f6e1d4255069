"""Checks of this host: gce's and its libraries' versions, the OS.

Versions are read from package metadata: importing parsl alone costs half a second, and a
broken parsl install must be reported, not crash the diagnostic.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import sys

from gce import __version__
from gce.commands.diagnostic.result import Result, fail, ok, warn

MIN_PYTHON = (3, 9)


def _numbers(version: str) -> tuple[int, ...]:
    """(2024, 1, 1) of '2024.1.1'; stops at the first part that is not a number."""
    out = []
    for part in version.split("."):
        m = re.match(r"\d+", part)
        if not m:
            break
        out.append(int(m.group()))
        if m.group() != part:
            break
    return tuple(out)


def required_minimum(dist: str) -> str | None:
    """The lowest version of DIST that gce's own metadata requires (e.g. '1.3' of 'pika>=1.3')."""
    from importlib import metadata

    try:
        requires = metadata.requires("gce") or []
    except metadata.PackageNotFoundError:
        return None
    for req in requires:
        if ";" in req:
            continue  # optional extras (pystemd, test tools)
        m = re.match(rf"^{re.escape(dist)}\s*(?:\[[^]]*\])?\s*>=\s*([0-9][0-9.]*)", req, re.I)
        if m:
            return m.group(1)
    return None


def library(dist: str, why: str) -> Result:
    from importlib import metadata

    check = f"{dist} version"
    try:
        version = metadata.version(dist)
    except metadata.PackageNotFoundError:
        return fail(check, f"{dist} is not installed; {why}", f"pip install '{dist}' into gce's environment "
                    f"({sys.prefix})")
    minimum = required_minimum(dist)
    if minimum and _numbers(version) < _numbers(minimum):
        return fail(check, f"{dist} {version} is older than the {minimum} gce needs",
                    f"pip install -U '{dist}>={minimum}' in {sys.prefix}", version=version, minimum=minimum)
    needs = f" (gce needs >= {minimum})" if minimum else ""
    return ok(check, f"{dist} {version}{needs}", version=version, minimum=minimum)


def gce_version() -> Result:
    return ok("gce version", f"gce {__version__} in {sys.prefix}", version=__version__, prefix=sys.prefix)


def python_version() -> Result:
    version = platform.python_version()
    details = {"version": version, "executable": sys.executable}
    if sys.version_info[:2] < MIN_PYTHON:
        return fail("python version", f"Python {version} is older than {'.'.join(map(str, MIN_PYTHON))}",
                    "install gce with a newer Python", **details)
    return ok("python version", f"Python {version} ({sys.executable})", **details)


def os_release() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def os_and_host() -> Result:
    uname = platform.uname()
    host = socket.gethostname()
    distro = os_release()
    details = {"host": host, "os": distro, "kernel": uname.release, "machine": uname.machine,
               "uid": os.geteuid(), "cpus": os.cpu_count()}
    reason = f"{distro}, {uname.system} {uname.release} {uname.machine}, host {host}, running as uid {os.geteuid()}"
    if uname.system != "Linux":
        return warn("os and host", reason + ": gce endpoints are built and tested on Linux only",
                    "run endpoints on Linux; the SDK works anywhere", **details)
    return ok("os and host", reason, **details)


def checks() -> list[Result]:
    return [
        gce_version(),
        python_version(),
        library("parsl", "the HighThroughputEngine needs it"),
        library("pika", "every endpoint needs it to talk to the broker"),
        os_and_host(),
    ]
