"""gce whoami: the broker identity gce.sdk uses on this account, and what the broker lets it do."""

from __future__ import annotations

import os
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

import typer

from gce import output
from gce.errors import ConfigError, GceError, PermissionDenied, Unavailable

# What the SDK cannot know by itself: the broker does not tell a user its own permissions.
SUBMIT_TO = ("the broker's topic permission on gce.tasks decides; the SDK's settings name no endpoint "
             "(ask the broker's admin: gce broker definitions lists each user's endpoints)")
# A result queue whoami declares expires this long after it is left behind (it deletes it at once).
PROBE_EXPIRES_MS = 10_000


def _identity() -> tuple[str, str]:
    """(the broker URL the SDK would use, which setting gave it), as gce.sdk.settings resolves it."""
    from gce.sdk import settings
    from gce.sdk.errors import BrokerNotConfigured

    try:
        url = settings.resolve_broker_url()
    except BrokerNotConfigured as e:
        raise ConfigError("the SDK has no broker", str(e),
                          hint=f"put 'broker_url: amqp://USER:PASSWORD@HOST/gce' in {settings.sdk_config_path()} "
                          "(chmod 600 it)") from None
    source = f"${settings.ENV_URL}" if os.environ.get(settings.ENV_URL) else str(settings.sdk_config_path())
    return url, source


def _vhost(url: str) -> str:
    from gce.transport import urls

    path = urlsplit(urls.hosts(url)[0]).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def _connect(url: str, user: str) -> Any:
    """A blocking connection as USER; PermissionDenied when refused, Unavailable when unreachable."""
    import pika

    from gce.sdk import settings
    from gce.sdk.errors import BrokerNotConfigured
    from gce.transport import urls

    try:
        return pika.BlockingConnection(settings.connection_parameters(url, heartbeat=0, name="gce whoami"))
    except BrokerNotConfigured as e:
        raise ConfigError("the SDK's broker URL cannot be used", str(e)) from None
    except pika.exceptions.AMQPError as e:
        # pika's connection errors hold the reason of each attempt in args; their str() may be empty
        why = urls.redact_all("; ".join(str(a) or repr(a) for a in e.args) or str(e) or type(e).__name__)
        refused = isinstance(e, (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError,
                                 pika.exceptions.ProbableAccessDeniedError)) or "ACCESS_REFUSED" in str(e)
        if refused:
            raise PermissionDenied(f"the broker refused {user}", why,
                                   hint="check the user name and password of the URL with the broker's admin") from None
        where = ", ".join(urls.host_port(h) for h in urls.hosts(url))
        raise Unavailable(f"cannot reach the broker at {where}", why,
                          hint="gce diagnostic checks the network path to the broker") from None


def _declare_result_queue(conn: Any, url: str, user: str) -> None:
    """Declare, bind and delete a result queue as an Executor would; PermissionDenied if refused."""
    import uuid

    import pika

    from gce.transport import connect, names

    queue = names.result_queue(user, f"whoami-{uuid.uuid4().hex}")
    try:
        ch = conn.channel()
        ch.queue_declare(queue, durable=True, arguments=connect.result_queue_arguments(url, PROBE_EXPIRES_MS))
        ch.queue_bind(queue, names.RESULTS_EXCHANGE, routing_key=queue)
        ch.queue_delete(queue)
    except pika.exceptions.ChannelClosedByBroker as e:
        raise PermissionDenied(f"the broker does not let {user} declare its result queues",
                               f"{e.reply_code} {e.reply_text}",
                               hint=f"gce broker provision --user {user} (on the broker host) grants it") from None


def command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the identity and what it may do as JSON.")] = False,
    no_check: Annotated[bool, typer.Option(
        "--no-check", help="Show the identity only; do not connect to the broker.")] = False,
) -> None:
    """Show which broker identity gce.sdk uses here, and what the broker lets it do.

    The identity comes from $GCE_BROKER_URL, else broker_url in sdk.yaml under $GCE_HOME (default
    ~/.gce), as the SDK reads them; the password is never shown. gce whoami then connects as that
    user and declares, binds and deletes a result queue, as an Executor does. Which endpoints the
    user may submit to is the broker's topic permission, which the broker does not tell its users.

    Exit status: 0 when the broker let it connect and declare its result queues; 78 when the SDK has
    no broker URL, 77 when the broker refuses the user, 69 when the broker cannot be reached.
    """
    from gce.transport import urls

    url, source = _identity()
    user = urls.broker_user(url)
    found: dict[str, Any] = {"user": user, "vhost": _vhost(url), "url": urls.redact(url), "set_by": source,
                             "connect": None, "declare_result_queues": None, "submit_to": None, "problem": None}
    problem: GceError | None = None
    if not no_check:
        try:
            conn = _connect(url, user)
            found["connect"] = True
            try:
                _declare_result_queue(conn, url, user)
                found["declare_result_queues"] = True
            finally:
                conn.close()
        except GceError as e:
            problem = e
            found["problem"] = str(e)
            if found["connect"]:
                found["declare_result_queues"] = False
            else:
                found["connect"] = False
    if as_json:
        output.json(found)
    else:
        _show(found)
    if problem is not None:
        raise problem


def _show(found: dict[str, Any]) -> None:
    from gce.transport import names

    def said(value: Any, extra: str = "") -> str:
        return "not checked" if value is None else ("yes" + extra if value else "no")

    rows = [("broker user", found["user"]), ("vhost", found["vhost"]), ("broker URL", found["url"]),
            ("set by", found["set_by"]), ("connect", said(found["connect"])),
            ("declare its result queues", said(found["declare_result_queues"],
                                                f" ({names.result_queue(found['user'], '*')})")),
            ("submit to", SUBMIT_TO)]
    width = max(len(label) for label, _ in rows) + 1
    for label, text in rows:
        output.line(f"{label + ':':<{width}} {text}")
