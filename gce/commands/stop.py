"""gce stop: stop a running endpoint and everything it started."""

from __future__ import annotations

from typing import Annotated

import typer

from gce import output
from gce.commands import DEFAULT_NAME, DefaultNameArg, configured_paths


def stop_endpoint(name: str, timeout: float) -> None:
    """Stop NAME and say so; shared with gce restart."""
    from gce.daemon.client import EndpointClient

    if EndpointClient(configured_paths(name)).stop_all(timeout=timeout):
        output.success(f"endpoint {name} stopped")
    else:
        output.line(f"endpoint {name} is not running")


def command(
    name: DefaultNameArg = DEFAULT_NAME,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", min=0.0, metavar="SECONDS",
            help="How long to wait for a clean shutdown before the endpoint's processes are killed.",
        ),
    ] = 30.0,
) -> None:
    """Stop a running endpoint.

    Its user endpoints, workers and blocks stop with it.
    Tasks that were accepted but not finished stay in the endpoint's spool and run again at the
    next start. Stopping an endpoint that is not running is not an error.
    """
    stop_endpoint(name, timeout)
