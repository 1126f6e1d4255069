"""One module per ``gce`` subcommand; each parses its arguments, calls the core and renders.

What several commands share lives here: finding a configured endpoint and the typer
argument for its name.
"""

from __future__ import annotations

from typing import Annotated

import typer

from gce.config.paths import EndpointPaths, endpoint_paths, require_readable
from gce.errors import EX_CONFIG, ConfigError

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The endpoint's name (see gce list).", show_default=False)]


def configured_paths(name: str, exit_code: int = EX_CONFIG) -> EndpointPaths:
    """The paths of endpoint NAME; a ConfigError (EXIT_CODE) if no such endpoint is configured."""
    paths = endpoint_paths(name)
    require_readable(paths)  # a directory this user may not enter is not "no such endpoint"
    if not paths.config_file.is_file():
        raise ConfigError(
            f"no endpoint named {name!r}",
            f"{paths.config_file} does not exist",
            hint=f"gce list shows the configured endpoints; gce configure {name} creates this one",
            exit_code=exit_code,
        )
    return paths


def format_duration(seconds: float | None) -> str:
    """A short human duration: '45s', '12m 03s', '5h 07m', '3d 04h'."""
    if seconds is None or seconds < 0:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"
