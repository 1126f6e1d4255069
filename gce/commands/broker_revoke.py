"""gce broker revoke: delete broker accounts, and every user's grant to the endpoints that go."""

from __future__ import annotations

from typing import Annotated, List

import typer

from gce import output
from gce.commands.broker import Ctl, _check_users
from gce.errors import ConfigError, Unavailable, UsageError


def revoke(
    user: Annotated[List[str], typer.Option("--user", metavar="BROKER_USER", help="A broker user to delete "
                                            "(repeat for several).", show_default=False)] = [],  # noqa: B006
    endpoint: Annotated[List[str], typer.Option("--endpoint", metavar="NAME", help="An endpoint whose account "
                                                "(ep-NAME) to delete (repeat for several).", show_default=False)] = [],  # noqa: B006
    vhost: Annotated[str, typer.Option("--vhost", metavar="VHOST", help="The RabbitMQ virtual host whose "
                                       "users lose their grants to the endpoints.")] = "gce",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    rabbitmqctl: Ctl = "rabbitmqctl",
) -> None:
    """Delete broker accounts: users, and endpoints' accounts with every user's grant to them.

    A deleted account can no longer log in, in any virtual host. A deleted user's own
    queues in the virtual host (her results, registered functions and endpoint list) are
    deleted too. Each endpoint's id is also taken from the topic permission of every user
    who could submit to it. Nothing
    on the endpoint's host changes. Without --yes, gce asks for confirmation, and refuses
    when it cannot ask (no terminal).
    """
    import sys
    from shlex import quote

    from gce.config.paths import validate_name
    from gce.transport import provision as p
    from gce.transport import rabbitmqctl as rmq

    if not user and not endpoint:
        raise UsageError("nothing to revoke", "name a --user or an --endpoint", hint="gce broker revoke --help")
    accounts = [*map(p.endpoint_account, map(validate_name, endpoint)), *_check_users(user, "")]
    for a in accounts:
        try:
            rmq.check_deletable(a)
        except ValueError as e:
            raise UsageError(f"cannot delete broker account {a!r}", str(e)) from None
    if not yes and not sys.stdin.isatty():  # before asking the broker anything
        again = " ".join([*(f"--user {quote(u)}" for u in user), *(f"--endpoint {e}" for e in endpoint)])
        raise UsageError("not revoking without confirmation", "gce cannot ask for it: standard input is not a terminal",
                         hint=f"gce broker revoke {again} --vhost {quote(vhost)} --yes")
    have = rmq.exported_definitions(rabbitmqctl)
    present = {u.get("name") for u in have.get("users") or []}
    for a in accounts:
        if a not in present:
            raise ConfigError(f"no broker account {a!r}", "the broker has no such user",
                              hint="see the broker's users with: rabbitmqctl list_users")
    regrants, dropped = _grants_without(have, vhost, endpoint, accounts)
    if not yes:
        also = f" and take {len(dropped)} grant(s) from {', '.join(sorted(regrants))}" if regrants else ""
        if not typer.confirm(f"Delete broker account(s) {', '.join(accounts)}{also}?"):
            output.line("nothing was revoked")
            raise typer.Exit(1)
    if regrants:  # first: a user must never be left granted an endpoint whose account could come back
        rmq.import_definitions(p.definitions(vhost, users=[(p.Account(u, None), ids) for u, ids in regrants.items()]),
                               rabbitmqctl)
    for u, eid in dropped:
        output.success(f"{u} may no longer submit to endpoint {eid}")
    rmq.delete_accounts(accounts, rabbitmqctl)
    for a in accounts:
        output.success(f"broker account {a} deleted")
    _delete_queues_of(user, vhost, rabbitmqctl)


def _delete_queues_of(users: list[str], vhost: str, rabbitmqctl: str) -> None:
    """Delete the deleted USERS' own queues (results, registered functions, directory): else
    whoever is given one of their names later would find them waiting. After the accounts go, so
    that no connection of theirs declares one anew meanwhile."""
    from gce.transport import provision as p
    from gce.transport import rabbitmqctl as rmq

    if not users:
        return
    by_hand = "delete them with: rabbitmqctl list_queues -p VHOST name, then rabbitmqctl delete_queue -p VHOST NAME"
    try:
        present = rmq.queues(vhost, rabbitmqctl)
    except (ValueError, Unavailable) as e:
        output.warning(f"the queues of {', '.join(users)} are left on the broker: {e}; {by_hand}")
        return
    for u in users:
        deleted, kept = 0, []
        for queue in p.owned_queues(u, present):
            try:
                deleted += rmq.delete_queue(vhost, queue, rabbitmqctl)
            except (ValueError, Unavailable) as e:
                kept.append(f"{queue!r} ({e})")
        output.success(f"{deleted} queue(s) of {u} deleted")
        if kept:
            output.warning(f"queue(s) of {u} left on the broker: {'; '.join(kept)}; {by_hand}")


def _grants_without(have: dict, vhost: str, endpoints: list[str],
                    deleted: list[str]) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """({user: the endpoint ids she keeps}, [(user, endpoint id she loses)]) once ENDPOINTS go,
    for the users of VHOST in the broker's definitions HAVE who are not DELETED themselves."""
    from gce.transport import provision as p

    keep: dict[str, list[str]] = {}
    dropped: list[tuple[str, str]] = []
    for name in endpoints:
        eid = p.served_endpoint(have, vhost, p.endpoint_account(name))
        if not eid:
            continue
        for u, ids in p.without_endpoint(have, vhost, eid).items():
            if u not in deleted:
                keep[u] = sorted(set(keep.get(u, ids)) & set(ids))
                dropped.append((u, eid))
    return keep, dropped
