"""Least-privilege broker accounts, as a RabbitMQ definitions document (DESIGN.md, "Broker topology").

Everything here is a pure function over data; gce.transport.rabbitmqctl loads the
documents into a broker and reads its definitions back. An endpoint account may only consume its own queues and publish results and
status; a user account may only publish tasks to the endpoints she was given (a topic
permission on ``gce.tasks``), read the status of those endpoints, and use her own result queues.

Queue-name regexes end in ``[^.]{1,128}`` rather than ``.*``: broker user names may
contain dots, and with ``.*`` user ``alice@uni`` would match the queues of
``alice@uni.edu``. Result-queue suffixes therefore never contain a dot (see
`names.result_queue`), exactly the ``reply_to`` an endpoint accepts from its submitter.

Two things no permission here can stop, so the endpoint and the SDK check them: a user may
declare an exchange named like her own queues (RabbitMQ's configure permission does not
tell exchanges from queues), bind ``gce.tasks`` to it and publish there with any routing
key, and a publisher's ``CC``/``BCC`` headers add routing keys that topic permissions never
see (RabbitMQ 3.10). Either way the message reaches a queue whose routing key it does not
carry or through an exchange that is not gce's, which is what the receivers look at.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Iterable
from urllib.parse import quote

from gce.transport import names

HASHING_ALGORITHM = "rabbit_password_hashing_sha256"
# No "*" or "#": a user named "*" would own the binding key "gce.results.*.client" and
# receive every user's results. The rest keeps names usable in URLs and file names.
_BROKER_USER_RE = re.compile(r"^[^\s/:#?%*\x00-\x1f\x7f]{1,128}$")
BROKER_USER_RULE = "use 1-128 characters without spaces, '/', ':', '#', '?', '%' or '*'"
# One result queue's suffix, as the endpoint accepts it in reply_to: no dot, 1-128 characters.
_SUFFIX = rf"[^.]{{1,{names.RESULT_QUEUE_SUFFIX_MAX}}}"
# Endpoint ids become regex alternatives and routing keys: accept what uuid4 gives and nothing odd.
_ENDPOINT_ID_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
# All three are topic exchanges, even where every binding key is exact: RabbitMQ checks
# topic permissions (who may bind or publish which routing key) on topic exchanges only.
EXCHANGES = ((names.TASKS_EXCHANGE, "topic"), (names.RESULTS_EXCHANGE, "topic"), (names.STATUS_EXCHANGE, "topic"),
             (names.FUNCTIONS_EXCHANGE, "topic"), (names.DIRECTORY_EXCHANGE, "topic"))
# A registered function's id: a sha256 in hex, exactly (gce.transport.payload.function_id_of).
_FUNCTION_ID = "[0-9a-f]{64}"


@dataclass(frozen=True)
class Account:
    """A broker account to create or update: its name, its new password (plain text, kept in
    memory only), or None to keep the password it has."""

    name: str
    password: str | None = field(repr=False)


def hash_password(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + utf8 password))."""
    salt = secrets.token_bytes(4) if salt is None else salt
    digest = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def generate_password() -> str:
    return secrets.token_urlsafe(24)


def amqp_url(user: str, password: str, host: str = "127.0.0.1", port: int = 5672, vhost: str = names.DEFAULT_VHOST) -> str:
    """An amqp:// URL pika understands; user, password and vhost are percent-encoded.

    HOST may list a cluster's nodes separated by commas ("n1,n2,n3" or "n1:5671,n2:5671"):
    each without a port of its own gets PORT, and the URL lists them all (gce.transport.urls)."""
    nodes = []
    for one in host.split(","):
        one = one.strip()
        if one.startswith("[") and "]:" in one or one.count(":") == 1:
            nodes.append(one)  # [v6]:PORT or NAME:PORT
        elif ":" in one and not one.startswith("["):
            nodes.append(f"[{one}]:{port}")
        else:
            nodes.append(f"{one}:{port}")
    return f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@{','.join(nodes)}/{quote(vhost, safe='')}"


def endpoint_account(endpoint_name: str) -> str:
    return f"ep-{endpoint_name}"


def check_endpoint_id(endpoint_id: str) -> str:
    if not _ENDPOINT_ID_RE.match(endpoint_id or ""):
        raise ValueError(f"not an endpoint id: {endpoint_id!r}")
    return endpoint_id


def check_broker_user(broker_user: str) -> str:
    if not isinstance(broker_user, str) or not _BROKER_USER_RE.match(broker_user):
        raise ValueError(f"not a usable broker user name: {broker_user!r} ({BROKER_USER_RULE})")
    return broker_user


def _exact(*alternatives: str) -> str:
    return "^(" + "|".join(alternatives) + ")$"


def endpoint_permissions(endpoint_account: str, endpoint_id: str) -> tuple[dict, list[dict]]:
    """Permissions and topic permissions of an endpoint account.

    Beyond RECIPES.md's table: the endpoint binds its status queue to ``gce.status``, which
    needs read on that exchange, and topic permissions pin its routing keys to its own id,
    or it could bind its queue to ``gce.tasks`` with ``#`` and receive every endpoint's
    tasks, or publish another endpoint's status.
    """
    eid = re.escape(check_endpoint_id(endpoint_id))
    own = rf"gce\.ep\.{eid}\..*"
    perms = {
        "user": endpoint_account,
        "configure": f"^{own}$",
        "write": _exact(own, re.escape(names.RESULTS_EXCHANGE), re.escape(names.STATUS_EXCHANGE)),
        "read": _exact(re.escape(names.TASKS_EXCHANGE), re.escape(names.STATUS_EXCHANGE), own),
    }
    topics = [
        {"user": endpoint_account, "exchange": names.TASKS_EXCHANGE, "write": "^$", "read": f"^{eid}$"},
        {"user": endpoint_account, "exchange": names.STATUS_EXCHANGE, "write": f"^{eid}$", "read": f"^{eid}$"},
    ]
    return perms, topics


def user_permissions(broker_user: str, allowed_endpoint_ids: Iterable[str]) -> tuple[dict, list[dict]]:
    """Permissions and topic permissions of a submitting user.

    Her read on ``gce.results`` lets her bind her result queues; the topic permission on
    that exchange limits the binding keys to her own queue names, or she could bind with
    another user's ``reply_to`` and receive copies of his results. She reads the status
    queues of the endpoints she may submit to, and of no other: a status is for the
    endpoint's users, and reading one can take it from the queue.

    Her registered functions (gce.sdk.registry) are queues of her own, one per function id,
    fed through ``gce.functions`` under their own names: she alone declares, feeds and reads
    them, and the topic permission keeps her keys (publish and bind) to her own names.

    She reads her directory queue (the endpoints she was given, which `definitions` declares and
    provisioning fills, gce.transport.directory) and may not feed it.
    """
    check_broker_user(broker_user)
    ids = sorted({check_endpoint_id(e) for e in allowed_endpoint_ids})
    mine = rf"gce\.results\.{re.escape(broker_user)}\.{_SUFFIX}"
    # An empty alternation would match the empty name only: with no endpoint, leave it out.
    alternatives = "|".join(re.escape(e) for e in ids)
    status = [rf"gce\.ep\.({alternatives})\.status"] if ids else []
    functions = rf"gce\.functions\.{re.escape(broker_user)}\.{_FUNCTION_ID}"
    perms = {
        "user": broker_user,
        "configure": _exact(mine, functions),
        "write": _exact(re.escape(names.TASKS_EXCHANGE), mine, re.escape(names.FUNCTIONS_EXCHANGE), functions),
        "read": _exact(re.escape(names.RESULTS_EXCHANGE), mine, *status, re.escape(names.FUNCTIONS_EXCHANGE),
                       functions, re.escape(names.directory_queue(broker_user))),
    }
    tasks = f"^({alternatives})$" if ids else "^$"  # "^$": nothing, said plainly
    # No wildcards in her binding keys: "*" and "#" words would match other users' queues.
    own_key = rf"^gce\.results\.{re.escape(broker_user)}\.[^.*#]{{1,{names.RESULT_QUEUE_SUFFIX_MAX}}}$"
    topics = [
        {"user": broker_user, "exchange": names.TASKS_EXCHANGE, "write": tasks, "read": "^$"},
        {"user": broker_user, "exchange": names.RESULTS_EXCHANGE, "write": "^$", "read": own_key},
        {"user": broker_user, "exchange": names.FUNCTIONS_EXCHANGE, "write": f"^{functions}$", "read": f"^{functions}$"},
    ]
    return perms, topics


def owned_queues(broker_user: str, queue_names: Iterable[str]) -> list[str]:
    """Those of QUEUE_NAMES that are BROKER_USER's own, in their order: her result and function
    queues (the names her permissions let her declare, and no other user's: see the module's
    note on dots) and her directory queue."""
    check_broker_user(broker_user)
    user = re.escape(broker_user)
    mine = re.compile(_exact(rf"gce\.results\.{user}\.{_SUFFIX}", rf"gce\.functions\.{user}\.{_FUNCTION_ID}",
                             re.escape(names.directory_queue(broker_user))), re.DOTALL)
    return [q for q in queue_names if mine.match(q)]


def _exchange(name: str, kind: str, vhost: str) -> dict:
    return {"name": name, "vhost": vhost, "type": kind, "durable": True, "auto_delete": False,
            "internal": False, "arguments": {}}


def definitions(
    vhost: str,
    endpoints: Iterable[tuple[Account, str]] = (),
    users: Iterable[tuple[Account, Iterable[str]]] = (),
) -> dict:
    """A definitions document for ``rabbitmqctl import_definitions``.

    ENDPOINTS holds (account, endpoint id) pairs; USERS holds (account, endpoint ids she
    may submit to) pairs. Passwords appear only as salted hashes; an account whose password
    is None gets its permissions only, so the broker keeps its password and tags.
    """
    doc: dict = {
        "vhosts": [{"name": vhost}],
        "users": [],
        "permissions": [],
        "topic_permissions": [],
        "exchanges": [_exchange(name, kind, vhost) for name, kind in EXCHANGES],
        "queues": [],
        "bindings": [],
    }
    given = [(acct, list(eids)) for acct, eids in users]
    grants = [(acct, endpoint_permissions(acct.name, eid)) for acct, eid in endpoints]
    grants += [(acct, user_permissions(acct.name, eids)) for acct, eids in given]
    for acct, (perms, topics) in grants:
        if acct.password is not None:
            doc["users"].append({"name": acct.name, "password_hash": hash_password(acct.password),
                                 "hashing_algorithm": HASHING_ALGORITHM, "tags": []})
        doc["permissions"].append({**perms, "vhost": vhost})
        doc["topic_permissions"] += [{**topic, "vhost": vhost} for topic in topics]
    for acct, _eids in given:  # her directory: declared here, filled by provisioning (gce.transport.directory)
        queue = names.directory_queue(acct.name)
        doc["queues"].append({"name": queue, "vhost": vhost, "durable": True, "auto_delete": False,
                              "arguments": {"x-max-length": 1}})
        doc["bindings"].append({"source": names.DIRECTORY_EXCHANGE, "vhost": vhost, "destination": queue,
                                "destination_type": "queue", "routing_key": acct.name, "arguments": {}})
    return doc


def directory_writer(vhost: str, account: Account, users: Iterable[str]) -> dict:
    """Definitions of a short-lived ACCOUNT that may only publish USERS' directories (the endpoints
    each was given) to ``gce.directory``: rabbitmqctl cannot publish a message, so provisioning
    loads this account with the others, publishes as it, and deletes it (gce broker provision)."""
    keys = "|".join(re.escape(check_broker_user(u)) for u in users) or "(?!)"  # (?!): no key at all
    return {
        "users": [{"name": account.name, "password_hash": hash_password(account.password or ""),
                   "hashing_algorithm": HASHING_ALGORITHM, "tags": []}],
        "permissions": [{"user": account.name, "vhost": vhost, "configure": "^$",
                         "write": f"^{re.escape(names.DIRECTORY_EXCHANGE)}$", "read": "^$"}],
        "topic_permissions": [{"user": account.name, "vhost": vhost, "exchange": names.DIRECTORY_EXCHANGE,
                               "write": f"^({keys})$", "read": "^$"}],
    }


def existing_accounts(exported: dict) -> dict[str, dict]:
    """The broker's users in its definitions EXPORTED: name -> record, with the password hash."""
    return {u["name"]: u for u in exported.get("users") or [] if "name" in u}


def password_matches(record: dict, password: str) -> bool:
    """True if PASSWORD is the one whose hash the broker holds in RECORD (see `hash_password`)."""
    if record.get("hashing_algorithm", HASHING_ALGORITHM) != HASHING_ALGORITHM:
        return False  # another algorithm: we cannot tell, so the password counts as unknown
    try:
        salt = base64.b64decode(record.get("password_hash") or "", validate=True)[:4]
    except ValueError:
        return False
    return len(salt) == 4 and secrets.compare_digest(hash_password(password, salt), record["password_hash"])


def task_endpoints(exported: dict, vhost: str) -> dict[str, list[str]]:
    """The endpoint ids each user of VHOST may submit to, read back from her topic permission in
    the definitions EXPORTED (gce.transport.rabbitmqctl.current_task_endpoints)."""
    found: dict[str, list[str]] = {}
    for row in exported.get("topic_permissions") or []:
        if row.get("vhost") == vhost and row.get("exchange") == names.TASKS_EXCHANGE:
            found[row["user"]] = parse_topic_alternatives(row.get("write", ""))
    return found


def parse_topic_alternatives(regex: str) -> list[str]:
    """The inverse of `user_permissions`' topic regex: ``^(a|b)$`` -> [a, b]."""
    m = re.fullmatch(r"\^\((.*)\)\$", regex)
    if not m:
        return []
    ids = [re.sub(r"\\(.)", r"\1", alt) for alt in m.group(1).split("|")]
    return [i for i in ids if _ENDPOINT_ID_RE.match(i)]


def served_endpoint(exported: dict, vhost: str, endpoint_account: str) -> str | None:
    """The endpoint id ENDPOINT_ACCOUNT serves in VHOST, read back from its topic permission."""
    for row in exported.get("topic_permissions") or []:
        if (row.get("user"), row.get("vhost"), row.get("exchange")) == (endpoint_account, vhost, names.TASKS_EXCHANGE):
            m = re.fullmatch(r"\^(.*)\$", row.get("read", ""))
            eid = re.sub(r"\\(.)", r"\1", m.group(1)) if m else ""
            return eid if _ENDPOINT_ID_RE.match(eid) else None
    return None


def without_endpoint(exported: dict, vhost: str, endpoint_id: str) -> dict[str, list[str]]:
    """The users of VHOST who may submit to ENDPOINT_ID, each with the endpoint ids she keeps."""
    kept: dict[str, list[str]] = {}
    for row in exported.get("topic_permissions") or []:
        if row.get("vhost") == vhost and row.get("exchange") == names.TASKS_EXCHANGE:
            ids = parse_topic_alternatives(row.get("write", ""))
            if endpoint_id in ids:
                kept[row["user"]] = [i for i in ids if i != endpoint_id]
    return kept
