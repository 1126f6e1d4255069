"""gce resume: user endpoints whose blocks kept failing start afresh and submit blocks again."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from gce import output
from gce.commands import DEFAULT_NAME, DefaultNameArg
from gce.commands.blocks import running_client
from gce.errors import PermissionDenied, UsageError


def command(
    name: DefaultNameArg = DEFAULT_NAME,
    user: Annotated[Optional[str], typer.Option(
        "--user", metavar="USER", help="Only the user endpoints of this local user (a multi-user endpoint).",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was resumed as JSON.")] = False,
) -> None:
    """Submit blocks again after they kept failing.

    When the last blocks of a user endpoint fail one after the other (engine.block_failure_limit
    of them: a worker_init that exits, a wrong partition or account), it stops submitting blocks
    and answers every task BLOCKS_FAILING; gce status and gce list say "blocks failing" and why.
    Fix the cause first (the last block's output is in gce status NAME), then resume: the user
    endpoint starts afresh from its config, and the tasks it already answered never run. A change
    of the config the user endpoint was started from resumes it by itself.

    Root and the endpoint's owner resume every such user endpoint (--user: that local user's
    only); a local user of a multi-user endpoint resumes their own.

    \b
    Example:
      gce status cluster            # user endpoint alice/3f2a: blocks failing: ...
      gce resume cluster --user alice
    """
    from gce.daemon.client import ManagerError

    _paths, client = running_client(name)  # a local user's own, on a multi-user endpoint of root's too
    try:
        resumed = client.resume(user)
    except PermissionDenied as e:  # another user's user endpoints
        raise PermissionDenied(f"cannot resume endpoint {name}", e.why, hint=f"gce resume {name} resumes your own") \
            from None
    except ManagerError as e:
        if e.code == "NOT_FOUND":
            raise UsageError(f"cannot resume endpoint {name}", e.why, hint=f"gce status {name} names each user "
                           "endpoint as USER/..., USER being the local user") from None
        raise
    if as_json:
        output.json({"name": name, "resumed": resumed})
        return
    if not resumed:
        output.line(f"nothing to resume: no user endpoint of {name}" + (f" of {user}" if user else "")
                    + " has failing blocks")
        return
    for r in resumed:
        output.success(f"resumed user endpoint {r.get('uep')} of {name} (its blocks had failed: {r.get('reason')})")
