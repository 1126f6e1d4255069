"""One module per ``gce`` subcommand; each parses its arguments, calls the core and renders.

What several commands share lives here: finding a configured endpoint, the typer argument
for its name, and reading a broker URL from a file (gce configure's option and its prompt).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gce.config.paths import EndpointPaths, endpoint_paths, looks_like_id, names_with_id, require_readable
from gce.errors import EX_CONFIG, ConfigError, PermissionDenied, UsageError


def complete_name(incomplete: str) -> list[str]:
    """The configured endpoints whose name starts with INCOMPLETE (shell completion of NAME)."""
    from gce.config.paths import list_endpoint_names

    return [n for n in list_endpoint_names() if n.startswith(incomplete)]


def resolve_name(name: str) -> str:
    """The name of the endpoint NAME designates: NAME itself, or the endpoint whose id NAME is.

    A name wins over an id: an endpoint may be named like a UUID. An id no endpoint has is
    returned unchanged, so that each command reports "no such endpoint" with its own exit code.
    """
    if not looks_like_id(name) or endpoint_paths(name).config_dir.exists():
        return name
    found = names_with_id(name)
    if len(found) > 1:
        raise ConfigError(
            f"endpoint id {name!r} is ambiguous",
            f"endpoints {' and '.join(map(repr, found))} both have it",
            hint="gce list shows each endpoint's id; name the endpoint instead, or delete the copy",
        )
    return found[0] if found else name


NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The endpoint's name or id (see gce list).",
                                        show_default=False, autocompletion=complete_name,
                                        callback=resolve_name)]


# Globus Compute's name for an endpoint when none is given; every command that takes NAME uses it too.
DEFAULT_NAME = "default"
DefaultNameArg = Annotated[str, typer.Argument(metavar="[NAME]", show_default=False, autocompletion=complete_name,
                                               help="The endpoint's name or id (see gce list); default: default.",
                                               callback=resolve_name)]


def configured_paths(name: str, exit_code: int = EX_CONFIG) -> EndpointPaths:
    """The paths of endpoint NAME (a name or an id); a ConfigError (EXIT_CODE) if no such
    endpoint is configured."""
    paths = endpoint_paths(resolve_name(name))
    require_readable(paths)  # a directory this user may not enter is not "no such endpoint"
    if not paths.config_file.is_file() and looks_like_id(name):
        raise ConfigError(
            f"no such endpoint {name!r}",
            "no endpoint is named so or has this id",
            hint="gce list shows the configured endpoints and their ids",
            exit_code=exit_code,
        )
    if not paths.config_file.is_file():
        raise ConfigError(
            f"no endpoint named {name!r}",
            f"{paths.config_file} does not exist",
            hint=f"gce list shows the configured endpoints; gce configure {name} creates this one",
            exit_code=exit_code,
        )
    return paths


def shared_endpoint(name: str) -> EndpointPaths | None:
    """A running multi-user endpoint NAME of this host that this (non-root) user may ask about
    their own work, when it is not one of their own: its files are root's, but its control
    socket answers every local user about what is theirs (gce.daemon.control_commands)."""
    import os

    from gce.config.paths import system_endpoint_paths, validate_name
    from gce.errors import GceError

    if os.geteuid() == 0:
        return None
    try:
        validate_name(name)
    except GceError:
        return None
    for paths in (endpoint_paths(name), system_endpoint_paths(name)):
        try:
            if paths.control_socket.exists():
                return paths
        except OSError:
            continue
    return None


def own_or_shared_paths(name: str) -> tuple[EndpointPaths, bool]:
    """(endpoint NAME's paths, whether it is a multi-user endpoint of root's that this local user
    reaches through its socket only); configured_paths' error when it is neither."""
    try:
        return configured_paths(name), False
    except (ConfigError, PermissionDenied):
        shared = shared_endpoint(name)
        if shared is None:
            raise
        return shared, True


def read_url_file(path: Path) -> str:
    """The first line of PATH that is neither empty nor a comment."""
    try:
        text = path.read_text()
    except OSError as e:
        raise UsageError(
            f"cannot read the broker URL from {path}", e.strerror or str(e),
            hint="the file holds one line: amqps://USER:PASSWORD@HOST:5671/VHOST",
        ) from None
    for raw in text.splitlines():
        url = raw.strip()
        if url and not url.startswith("#"):
            return url
    raise UsageError(f"no broker URL in {path}", "the file holds no line other than blanks and comments")
