"""gce restart: stop an endpoint if it runs, then start it in the background."""

from __future__ import annotations

from typing import Annotated

import typer

from gce import output
from gce.commands import DEFAULT_NAME, DefaultNameArg, configured_paths
from gce.commands.start import start_detached
from gce.commands.stop import stop_endpoint
from gce.errors import ConfigError, Unavailable


def check_login(name: str, url: str) -> None:
    """Log in to the broker as the endpoint will, with gce diagnostic's own probe; raise if that
    fails, so that a wrong password or an unreachable broker stops nothing."""
    import pika
    from pika import exceptions as px

    from gce.commands.diagnostic import network, probes

    target, params = network.Target.of(url), pika.URLParameters(url)
    for step in (network.dns, network.tcp, lambda t: network.tls(t, params)):  # each says why better than pika
        result = step(target)
        if result.status == "FAIL":
            raise Unavailable(f"cannot restart endpoint {name!r}", f"{result.reason}; nothing was stopped",
                              hint=result.hint)
    result, conn = network.login(target, params)
    if conn is None:
        # A refused login is the config's mistake; no AMQP session at all may be the network's.
        error = ConfigError if "refused" in result.reason else Unavailable
        raise error(f"cannot restart endpoint {name!r}", f"{result.reason}; nothing was stopped", hint=result.hint)
    with probes.deadline(conn, network.CLOSE_TIMEOUT):
        try:
            conn.close()
        except (px.AMQPError, OSError, probes.Expired):
            pass  # the login is what counted


def command(
    name: DefaultNameArg = DEFAULT_NAME,
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
    The configuration is checked first (engine and provider options too) and the broker login
    tried, so a mistake in either leaves the running endpoint alone.
    Then the endpoint is stopped (if it runs) and started as with gce start NAME --detach.
    """
    from gce.config import model

    with output.spinner(f"checking the configuration of endpoint {name}") as step:
        paths = configured_paths(name)
        config = model.load(paths, engine_options=True)  # a key parsl would refuse, before anything stops
        model.check_broker_account(config, str(paths.config_file))
        step("logging in to the broker")
        check_login(name, config.broker_url)
        step(f"stopping endpoint {name}")
        stop_endpoint(name, timeout=30.0)
        step(f"starting endpoint {name}")
        start_detached(name, timeout)
