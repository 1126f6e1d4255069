"""gce broker: create least-privilege RabbitMQ accounts for an endpoint and its users.

Run on the broker host as root (``rabbitmqctl`` must reach the node). Passwords go to the
files that need them (mode 0600), never to the terminal or the command line.
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, List, Optional
from urllib.parse import unquote, urlsplit

import typer

from gce import output
from gce.commands import configured_paths
from gce.config.paths import gce_home
from gce.errors import ConfigError, PermissionDenied, UsageError

app = typer.Typer(
    name="broker",
    help="Create the RabbitMQ accounts of endpoints and their users (run on the broker host).",
    no_args_is_help=True,
)

# The one-off account that writes users' lists of endpoints (gce.transport.directory).
DIRECTORY_WRITER_PREFIX = "gce-directory-"
DIRECTORY_WRITER = re.compile(re.escape(DIRECTORY_WRITER_PREFIX) + "[0-9a-f]{16}")

Users = Annotated[List[str], typer.Option("--user", metavar="BROKER_USER", help="A broker user who may submit "
                                          "tasks to the endpoint (repeat for several).", show_default=False)]
Host = Annotated[str, typer.Option("--host", metavar="HOST", help="The broker's host name as the endpoint and users "
                                   "reach it; a cluster's nodes separated by commas (n1,n2,n3 or n1:5671,n2:5671), "
                                   "which the URLs then list.")]
Port = Annotated[int, typer.Option("--port", metavar="PORT", help="The broker's AMQP port.")]
Vhost = Annotated[str, typer.Option("--vhost", metavar="VHOST", help="The RabbitMQ virtual host (created if missing).")]
Ctl = Annotated[str, typer.Option("--rabbitmqctl", metavar="PATH", help="The rabbitmqctl to run.")]
Nodes = Annotated[List[str], typer.Option("--node", metavar="NODE", help="A RabbitMQ node for rabbitmqctl to reach "
                                          "(rabbit@HOST; repeat for a cluster's nodes: the first that answers is "
                                          "used). Default: rabbitmqctl's own.", show_default=False)]
Credentials = Annotated[Optional[Path], typer.Option(
    "--credentials", metavar="FILE", show_default=False,
    help="Write every account's broker URL (with its password) to FILE, mode 0600.")]


def _check_users(users: list[str], endpoint_account: str) -> list[str]:
    from gce.transport.provision import BROKER_USER_RULE, check_broker_user

    for user in users:
        try:
            check_broker_user(user)
        except ValueError:
            raise UsageError(f"invalid broker user {user!r}", BROKER_USER_RULE) from None
        if user == endpoint_account:
            raise UsageError(f"invalid broker user {user!r}", "it is the endpoint's own account")
    return list(dict.fromkeys(users))


def _known_password(url: str | None, account: str) -> str | None:
    """The password in URL if URL is ACCOUNT's: re-provisioning keeps running endpoints working."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.username is None or unquote(parts.username) != account or not parts.password:
        return None
    return unquote(parts.password)


def _load_yaml(path: Path) -> tuple[str, dict]:
    import yaml

    try:
        text = path.read_text()
    except FileNotFoundError:
        return "", {}
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"cannot update {path}", "the file does not hold a YAML mapping")
    return text, data


def _lookup(path: Path, *keys: str) -> str | None:
    node: object = _load_yaml(path)[1]
    for k in keys:
        node = node.get(k) if isinstance(node, dict) else None
    return node if isinstance(node, str) else None


def _with_key(text: str, data: dict, keys: tuple[str, ...], value: str) -> str:
    """TEXT with DATA[keys] set to VALUE; a one-line edit when possible, so comments survive."""
    import yaml

    from gce.config.writer import yaml_str

    want = copy.deepcopy(data)
    node = want
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    node[keys[-1]] = value
    indent = "  " * (len(keys) - 1)
    pattern = re.compile(rf"^{indent}{re.escape(keys[-1])}:[^\n]*$", re.M)
    if len(pattern.findall(text)) == 1:
        edited = pattern.sub(lambda m: f"{indent}{keys[-1]}: {yaml_str(value)}", text)
        if yaml.safe_load(edited) == want:
            return edited
    return yaml.safe_dump(want, sort_keys=False)


def _write_secret(path: Path, text: str) -> None:
    """Replace PATH atomically with TEXT, mode 0600, keeping the owner of an existing file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        st = None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600 from the start
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if st is not None and os.geteuid() == 0:
            os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def set_yaml_key(path: Path, keys: tuple[str, ...], value: str) -> None:
    text, data = _load_yaml(path)
    try:
        _write_secret(path, _with_key(text, data, keys, value))
    except OSError as e:
        raise PermissionDenied(f"cannot write {path}", e.strerror or str(e),
                               hint="run gce broker provision as root, or as the owner of that file") from None


def _write_credentials(path: Path, urls: dict[str, str]) -> None:
    import yaml

    _write_secret(path, "# gce broker accounts: give each URL to its owner only.\n" + yaml.safe_dump(urls, sort_keys=False))


@app.command("provision")
def provision(
    endpoint: Annotated[str, typer.Option("--endpoint", metavar="NAME", help="The configured endpoint to provision.")],
    user: Users = [],  # noqa: B006 (typer needs a literal default)
    host: Host = "127.0.0.1",
    port: Port = 5672,
    vhost: Vhost = "gce",
    sdk_config: Annotated[bool, typer.Option("--sdk-config", help="Write the first user's broker URL to "
                                             "sdk.yaml in $GCE_HOME (default ~/.gce) for gce.sdk on this machine.")] = False,
    credentials: Credentials = None,
    rotate: Annotated[bool, typer.Option("--rotate", help="Give every named account a new password, "
                                         "existing ones too (whoever holds the old URL is locked out).")] = False,
    rabbitmqctl: Ctl = "rabbitmqctl",
    node: Nodes = [],  # noqa: B006
) -> None:
    """Create or update the broker accounts of endpoint NAME (ep-NAME) and of its users.

    The endpoint's account may only take its own tasks and send results and status; each
    user may only submit to the endpoints she was given (added to those she had) and read
    her own results. The endpoint's broker URL goes into its config.yaml.

    An account that exists keeps its password (only --rotate changes it): gce then knows
    its URL only if the one in config.yaml or sdk.yaml still logs in, and writes no other.
    """
    from gce.config.model import read_endpoint_id
    from gce.transport import provision as p
    from gce.transport import rabbitmqctl as rmq

    paths = configured_paths(endpoint)
    endpoint_id = read_endpoint_id(paths)
    try:
        p.check_endpoint_id(endpoint_id)
    except ValueError as e:
        raise ConfigError(f"cannot provision endpoint {endpoint!r}", f"{paths.endpoint_json}: {e}") from None
    account = p.endpoint_account(endpoint)
    users = _check_users(user, account)
    sdk_file = gce_home() / "sdk.yaml"
    known = {account: _known_password(_lookup(paths.config_file, "broker", "url"), account)}
    if sdk_config and users:
        known[users[0]] = _known_password(_lookup(sdk_file, "broker_url"), users[0])
    with output.spinner("reading the broker's accounts and grants"):
        # one call (~1 s) for both accounts and grants; a cluster's definitions are the same on every node
        reached, have = rmq.first_answering(node, rabbitmqctl)
    exists = p.existing_accounts(have)
    password = _passwords([account, *users], exists, known, rotate)
    kept = [a for a in [account, *users] if password[a] is None]
    unsaved = [u for u in (users[1:] if sdk_config else users) if password[u] is not None]
    if unsaved and credentials is None:
        raise UsageError(f"nowhere to put the password of {unsaved[0]!r}",
                         "a user's new password is written to a file, never printed",
                         hint="add --credentials FILE (or --sdk-config for the first user)")
    had = p.task_endpoints(have, vhost)
    grants = {u: sorted({*had.get(u, []), endpoint_id}) for u in users}
    defs = p.definitions(vhost, endpoints=[(p.Account(account, password[account]), endpoint_id)],
                         users=[(p.Account(u, password[u]), grants[u]) for u in users])
    # rabbitmqctl cannot publish: a short-lived account, loaded with the others, writes each user's
    # directory (the endpoints she may submit to, which Client.get_endpoints reads).
    writer = p.Account(f"{DIRECTORY_WRITER_PREFIX}{os.urandom(8).hex()}", p.generate_password()) if users else None
    for key, rows in (p.directory_writer(vhost, writer, users) if writer else {}).items():
        defs[key] += rows
    with output.spinner(f"loading the accounts of endpoint {endpoint} into the broker"):
        rmq.import_definitions(defs, rabbitmqctl, node=reached)
    if writer is not None:
        # A writer left by a provisioning killed before it deleted its own goes with this one's.
        stale = [a for a in exists if DIRECTORY_WRITER.fullmatch(a)]
        _write_directories(writer.name, str(writer.password), {u: grants[u] for u in users}, host, port, vhost,
                           rabbitmqctl, stale)
    url = {a: p.amqp_url(a, pw, host, port, vhost) for a, pw in password.items() if pw is not None}

    where = f"{host}{'' if ',' in host else f':{port}'}, vhost {vhost}"
    output.success(f"broker account {account} may serve endpoint {endpoint} ({endpoint_id}) on {where}")
    if account in url:
        set_yaml_key(paths.config_file, ("broker", "url"), url[account])
        output.line(f"  wrote broker.url to {paths.config_file} (mode 0600)")
    for u in users:
        output.success(f"broker account {u} may submit to {len(grants[u])} endpoint(s): {', '.join(grants[u])}")
    if sdk_config and users and users[0] in url:
        set_yaml_key(sdk_file, ("broker_url",), url[users[0]])
        output.line(f"  wrote the broker URL of {users[0]} to {sdk_file} (mode 0600)")
    if credentials is not None:
        written = [a for a in [account, *users] if a in url]
        _write_credentials(credentials, {a: url[a] for a in written})
        output.line(f"  wrote the broker URLs of {', '.join(written) or 'no account'} to {credentials} (mode 0600)")
    for a in [account, *users]:
        if rotate:
            output.line(f"  {a}: new password (--rotate)")
        elif a in kept:
            # We only hold a hash of it: no file can be given a URL that logs in.
            whose = "its" if a == account else "her"
            output.line(f"  {a} exists: {whose} password is unchanged; use --rotate to set a new one")
    if password[account] is not None and password[account] != known[account]:
        output.hint(f"if endpoint {endpoint} is running, restart it to use its new password: gce restart {endpoint}")


def _write_directories(writer: str, password: str, directories: dict[str, list[str]], host: str, port: int,
                       vhost: str, rabbitmqctl: str, stale: list[str]) -> None:
    """Publish each user's endpoints to her directory queue as account WRITER, then delete WRITER
    and the STALE writers of earlier runs."""
    from gce.transport import directory
    from gce.transport import provision as p
    from gce.transport import rabbitmqctl as rmq

    try:
        directory.publish(p.amqp_url(writer, password, host, port, vhost), directories)
    except Exception as e:  # the grants are in force; only the lists users read are not
        output.warning(f"the users' lists of endpoints (Client.get_endpoints) were not written: {e!r}")
        output.hint("run gce broker provision again where --host reaches the broker over AMQP")
    finally:
        rmq.delete_accounts([writer, *stale], rabbitmqctl)


def _passwords(accounts: list[str], exists: dict[str, dict], known: dict[str, str | None],
               rotate: bool) -> dict[str, str | None]:
    """Each account's password: new for a new account or with --rotate; the one known here if
    the broker's hash confirms it; None (keep the broker's) for any other existing account, so
    that provisioning never breaks a URL someone already holds."""
    from gce.transport import provision as p

    chosen: dict[str, str | None] = {}
    for a in accounts:
        mine = known.get(a)
        if a in exists and not rotate:
            chosen[a] = mine if mine and p.password_matches(exists[a], mine) else None
        else:  # a known password survives a broker that lost its accounts: running endpoints keep working
            chosen[a] = (None if rotate else mine) or p.generate_password()
    return chosen


@app.command("definitions")
def definitions(
    endpoint_id: Annotated[str, typer.Option("--endpoint-id", metavar="UUID", help="The endpoint's id "
                                             "(its endpoint.json on the endpoint's host).")],
    credentials: Annotated[Path, typer.Option("--credentials", metavar="FILE", help="Write every account's "
                                              "broker URL (with its password) to FILE, mode 0600.")],
    account: Annotated[str, typer.Option("--endpoint-account", metavar="NAME", help="The endpoint's broker "
                                         "account, e.g. ep-NAME.")],
    user: Users = [],  # noqa: B006
    host: Host = "127.0.0.1",
    port: Port = 5672,
    vhost: Vhost = "gce",
) -> None:
    """Print a RabbitMQ definitions document (JSON, passwords hashed) for an endpoint and its users.

    For administrators who load definitions themselves (rabbitmqctl import_definitions FILE,
    or the management UI). The new passwords go only to the --credentials file.
    """
    from gce.transport import provision as p

    try:
        p.check_endpoint_id(endpoint_id)
    except ValueError as e:
        raise UsageError("invalid endpoint id", str(e)) from None
    try:
        p.check_broker_user(account)
    except ValueError:
        raise UsageError(f"invalid broker account {account!r}", p.BROKER_USER_RULE) from None
    users = _check_users(user, account)
    password = {a: p.generate_password() for a in [account, *users]}
    defs = p.definitions(vhost, endpoints=[(p.Account(account, password[account]), endpoint_id)],
                         users=[(p.Account(u, password[u]), [endpoint_id]) for u in users])
    _write_credentials(credentials, {a: p.amqp_url(a, pw, host, port, vhost) for a, pw in password.items()})
    output.json(defs)
    output.hint(f"the accounts' broker URLs are in {credentials}")
