"""gce start: run an endpoint in the foreground, or start it in the background with --detach."""

from __future__ import annotations

from typing import Annotated

import typer

from gce import output
from gce.commands import DEFAULT_NAME, DefaultNameArg, configured_paths
from gce.config.paths import EndpointPaths
from gce.errors import GceError


def warn_if_others_may_read(paths: EndpointPaths) -> None:
    """Say so when the config holds the broker password and others may read it, as gce
    diagnostic does; the endpoint starts all the same (the password has been readable anyway)."""
    from gce.config import model

    try:
        exposed = model.password_exposed(paths.config_file, model.load(paths).broker_url)
    except (OSError, GceError):
        return  # starting reports what is wrong with the config itself
    if not exposed:
        return
    output.warning(exposed)
    output.hint(f"chmod go-rwx {paths.config_dir} {paths.config_file}")


def start_detached(name: str, timeout: float) -> None:
    """Start NAME in the background and say where it runs; shared with gce restart."""
    from gce.daemon.client import EndpointClient

    paths = configured_paths(name)
    warn_if_others_may_read(paths)
    info = EndpointClient(paths).start_detached(timeout=timeout)
    output.success(f"endpoint {name} started (pid {info['pid']}, id {info['endpoint_id']}); logs: {info['log_file']}")
    output.line(f"see it with: gce status {name}; stop it with: gce stop {name}")


def command(
    name: DefaultNameArg = DEFAULT_NAME,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach", "-d",
            help="Run in the background; return once the endpoint is connected and ready, or say why it failed.",
        ),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", min=1.0, metavar="SECONDS",
            help="With --detach: how long to wait for the endpoint to connect to the broker and start its engine.",
        ),
    ] = 120.0,
) -> None:
    """Start an endpoint.

    Without --detach the endpoint runs in this terminal and logs here until Ctrl-C (or SIGTERM)
    stops it; this is also how a service manager such as systemd runs it. Run detached or by
    systemd, SIGHUP (systemctl reload) makes it read its configuration again in place; in a
    terminal, SIGHUP (the terminal closing) stops it.
    """
    if detach:
        with output.spinner(f"starting endpoint {name}"):  # shown on a terminal, after half a second
            start_detached(name, timeout)
        return
    from gce.daemon.client import EndpointClient

    paths = configured_paths(name)
    warn_if_others_may_read(paths)
    raise typer.Exit(EndpointClient(paths).run_foreground())
