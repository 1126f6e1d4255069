"""Driving a broker with rabbitmqctl: load a definitions document (gce.transport.provision builds
them), read the broker's definitions back, delete accounts.

Debian's /usr/sbin/rabbitmqctl, run as root, hands its arguments to ``su rabbitmq -c "..."``, a
shell: so names never go into arguments (see `_run`), and documents go through stdin.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from typing import Iterable

from gce.errors import Unavailable
from gce.transport.provision import task_endpoints

# What may be an argument of rabbitmqctl: words no shell expands or splits (see `_run`).
_SHELL_INERT = re.compile(r"^[A-Za-z0-9_.,:/=+@-]+$")
# A rabbitmqctl call costs ~1 s; an import is visible well within this (RECIPES.md).
IMPORT_TIMEOUT = 30.0


def _run(rabbitmqctl: str, args: list[str], env: dict | None, stdin: str | None = None,
         node: str | None = None) -> subprocess.CompletedProcess:
    """Run RABBITMQCTL with ARGS. Debian's /usr/sbin/rabbitmqctl, run as root, hands its arguments
    to ``su rabbitmq -c "... \"ARG\" ..."``: a shell then runs any $(...) or `...` in them, and a
    trailing backslash ends the quoting. So names (vhosts, users) never go into ARGS but into the
    definitions document on stdin, and ARGS hold only words no shell reads anything into.
    NODE: the RabbitMQ node to ask (rabbitmqctl -n), else rabbitmqctl's own default."""
    if node is not None:
        args = ["-n", node, *args]
    for arg in args:
        if not _SHELL_INERT.match(arg):
            raise ValueError(f"refusing to pass {arg!r} to rabbitmqctl: Debian's wrapper would run it as shell code")
    try:
        return subprocess.run([rabbitmqctl, *args], input=stdin, capture_output=True, text=True, env=env,
                              timeout=120, cwd="/")
    except FileNotFoundError:
        raise Unavailable(f"cannot run {rabbitmqctl}", "not found", hint="install rabbitmq-server on the broker host") from None
    except subprocess.TimeoutExpired:
        raise Unavailable(f"{rabbitmqctl} {args[0]} did not finish", "timed out after 120 s") from None


def _fail(args: list[str], proc: subprocess.CompletedProcess) -> Unavailable:
    why = (proc.stderr or proc.stdout).strip() or f"exit status {proc.returncode}"
    return Unavailable(f"rabbitmqctl {args[0]} failed", why, hint="is the broker running? try 'rabbitmqctl status'")


def _exported(rabbitmqctl: str, env: dict | None, node: str | None = None) -> dict:
    """The broker's definitions: every vhost, user, permission and topic permission."""
    args = ["export_definitions", "-", "--format", "json"]
    proc = _run(rabbitmqctl, ["-q", *args], env, node=node)
    if proc.returncode != 0:
        raise _fail(args, proc)
    return json.loads(proc.stdout or "{}")


def exported_definitions(rabbitmqctl: str = "rabbitmqctl", env: dict | None = None, node: str | None = None) -> dict:
    """The broker's definitions, for the pure functions that read them (users, grants)."""
    return _exported(rabbitmqctl, env, node)


def _in_force(defs: dict, rabbitmqctl: str, env: dict | None, node: str | None = None) -> bool:
    """True once the broker holds every user (with her new password), permission and topic permission of DEFS."""
    have = _exported(rabbitmqctl, env, node)
    fields = {"users": ("name", "password_hash"), "permissions": ("user", "vhost", "configure", "write", "read"),
              "topic_permissions": ("user", "vhost", "exchange", "write", "read")}
    for kind, keys in fields.items():
        present = {tuple(x.get(k) for k in keys) for x in have.get(kind) or []}
        if not {tuple(x[k] for k in keys) for x in defs.get(kind, [])} <= present:
            return False
    return True


def import_definitions(defs: dict, rabbitmqctl: str = "rabbitmqctl", env: dict | None = None,
                       timeout: float = IMPORT_TIMEOUT, node: str | None = None) -> None:
    """Load DEFS into the broker and wait until its permissions are in force.

    The document goes through stdin, never argv or a file: Debian's rabbitmqctl wrapper
    runs the CLI as the ``rabbitmq`` user, which could not read a root-owned 0600 file.
    rabbitmqctl only starts the import ("This process is asynchronous"), hence the
    bounded poll.
    """
    args = ["import_definitions", "--format", "json"]  # no path: the document comes on stdin
    proc = _run(rabbitmqctl, ["-q", *args], env, stdin=json.dumps(defs), node=node)
    if proc.returncode != 0:
        raise _fail(args, proc)
    deadline = time.monotonic() + timeout
    while not _in_force(defs, rabbitmqctl, env, node):
        if time.monotonic() > deadline:
            raise Unavailable("rabbitmqctl import_definitions failed",
                              f"the accounts did not appear within {timeout:.0f} s",
                              hint="look at the broker's log")
        time.sleep(0.2)


def current_task_endpoints(vhost: str, rabbitmqctl: str = "rabbitmqctl", env: dict | None = None) -> dict[str, list[str]]:
    """The endpoint ids each user may submit to now, read back from her topic permission.

    Read from the whole export rather than ``list_topic_permissions -p VHOST``: the vhost, a
    name, must not be an argument of rabbitmqctl (see `_run`)."""
    return task_endpoints(_exported(rabbitmqctl, env), vhost)


def check_deletable(account: str) -> str:
    """ACCOUNT if it may be an argument of ``rabbitmqctl delete_user``, else a ValueError.

    RabbitMQ deletes users only by name on rabbitmqctl's command line (a definitions import
    cannot delete), so the name must be a word no shell reads anything into (see `_run`), and
    must not start with '-', or rabbitmqctl would take it for an option."""
    if account.startswith("-") or not _SHELL_INERT.match(account):
        raise ValueError(f"its name cannot be passed to rabbitmqctl safely (Debian's wrapper would run it as shell "
                         f"code); use only letters, digits and {'_.,:/=+@-'!r}, not first '-'")
    return account


def delete_accounts(accounts: Iterable[str], rabbitmqctl: str = "rabbitmqctl", env: dict | None = None) -> None:
    """Delete broker users (in every vhost: a RabbitMQ user is broker-wide)."""
    for account in accounts:
        args = ["delete_user", check_deletable(account)]
        proc = _run(rabbitmqctl, ["-q", *args], env)
        if proc.returncode != 0:
            raise _fail(args, proc)


def queues(vhost: str, rabbitmqctl: str = "rabbitmqctl", env: dict | None = None) -> list[str]:
    """The names of VHOST's queues (JSON: a queue's name may hold a newline). VHOST goes on the
    command line, so it must be a word no shell reads anything into (ValueError otherwise)."""
    args = ["list_queues", "-p", vhost, "name", "--formatter", "json"]
    proc = _run(rabbitmqctl, ["-q", *args], env)
    if proc.returncode != 0:
        raise _fail(args, proc)
    listed = json.loads(proc.stdout or "[]")
    return [q["name"] for q in listed if isinstance(q, dict) and isinstance(q.get("name"), str)]


def delete_queue(vhost: str, queue: str, rabbitmqctl: str = "rabbitmqctl", env: dict | None = None) -> bool:
    """Delete QUEUE of VHOST; False if it was gone already. Both go on the command line (ValueError
    for a name a shell would read anything into)."""
    args = ["delete_queue", "-p", vhost, queue]
    proc = _run(rabbitmqctl, ["-q", *args], env)
    if proc.returncode != 0:
        said = proc.stderr + proc.stdout
        if "not_found" in said or "not found" in said:
            return False
        raise _fail(args, proc)
    return True


def first_answering(nodes: list[str], rabbitmqctl: str = "rabbitmqctl", env: dict | None = None) -> tuple[str | None, dict]:
    """(the first of a cluster's NODES whose rabbitmqctl answers, its definitions); definitions
    are cluster-wide, so one node is enough. No NODES: rabbitmqctl's default node. Unavailable
    naming every node and why when none answers."""
    failures = []
    tried: list[str | None] = list(nodes) or [None]
    for node in tried:
        try:
            return node, _exported(rabbitmqctl, env, node)
        except Unavailable as e:
            failures.append(f"{node or 'the default node'}: {e.why}")
    raise Unavailable("no RabbitMQ node answered rabbitmqctl", "; ".join(failures),
                      hint="start a node of the cluster, or name one that runs with --node NODE")
