"""gce restart: stop an endpoint if it runs, then start it in the background."""

from __future__ import annotations

from typing import Annotated

import typer

from gce.commands import NameArg, configured_paths
from gce.commands.start import start_detached
from gce.commands.stop import stop_endpoint


def command(
    name: NameArg,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", min=1.0, metavar="SECONDS",
            help="How long to wait for the endpoint to connect to the broker and start its engine.",
        ),
    ] = 120.0,
) -> None:
    """Restart an endpoint in the background.

    Use it after editing the endpoint's config.yaml.
    The configuration is checked first, so a mistake in it leaves the running endpoint alone.
    Then the endpoint is stopped (if it runs) and started as with gce start NAME --detach.
    """
    from gce.config import model

    model.load(configured_paths(name))
    stop_endpoint(name, timeout=30.0)
    start_detached(name, timeout)
