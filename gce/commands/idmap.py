"""gce idmap test: how a multi-user endpoint maps a broker identity to a local account.

It runs the endpoint's own mapping file and policy (external programs included), so an
admin can check a rule before a user's task meets it.
"""

from __future__ import annotations

import grp
from typing import Annotated, Any

import typer

from gce import output
from gce.commands import NameArg, configured_paths
from gce.errors import ConfigError, GceError

app = typer.Typer(
    name="idmap",
    help="Check how a multi-user endpoint maps broker identities to local users.",
    no_args_is_help=True,
)

IdentityArg = Annotated[str, typer.Argument(metavar="IDENTITY", show_default=False,
                                            help="A broker user name, as in a task's user_id (e.g. alice@uni.edu).")]


def _group_names(gids: tuple[int, ...]) -> str:
    names = []
    for gid in gids:
        try:
            names.append(f"{gid}({grp.getgrgid(gid).gr_name})")
        except KeyError:
            names.append(str(gid))
    return ", ".join(names)


def _report(identity: str, endpoint: str, local: Any, rule: str, mapping_file: str, as_json: bool) -> None:
    if as_json:
        output.json({"identity": identity, "endpoint": endpoint, "allowed": True, "rule": rule,
                     "mapping_file": mapping_file,
                     "local_user": {"name": local.name, "uid": local.uid, "gid": local.gid,
                                    "groups": list(local.groups), "home": local.home, "shell": local.shell}})
        return
    output.success(f"identity {identity!r} maps to local user {local.name!r} on endpoint {endpoint!r}")
    fields = [("rule", f"{rule} in {mapping_file}"), ("uid", str(local.uid)), ("gid", _group_names((local.gid,))),
              ("groups", _group_names(local.groups)), ("home", local.home), ("shell", local.shell)]
    width = max(len(label) for label, _ in fields)
    for label, text in fields:
        output.line(f"  {label:<{width}}  {text}")


@app.command("test")
def test(
    name: NameArg,
    identity: IdentityArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Map IDENTITY as endpoint NAME would, and show the local user or why it is refused.

    Runs the endpoint's identity mapping file (external mapping programs included), then its
    policy: allowed_identities, allowed_domains, min_uid and allow_privileged_mapping.

    Exit status: 0 mapped and allowed, 1 refused, 78 configuration error.
    """
    from gce.config import model
    from gce.daemon.client import MappingRefused, map_identity, mapper_for

    paths = configured_paths(name)
    config = model.load(paths)
    if not config.multi_user:
        raise ConfigError(f"endpoint {name!r} does not map identities", "it is not a multi-user endpoint",
                          hint=f"set multi_user: true and identity_mapping_config_path in {paths.config_file}")
    mapper = mapper_for(config)
    try:
        local, rule = map_identity(mapper, identity, config)
    except MappingRefused as e:
        if as_json:
            output.json({"identity": identity, "endpoint": name, "allowed": False, "rule": e.rule,
                         "reason": str(e), "detail": e.detail, "mapping_file": str(mapper.path)})
            raise typer.Exit(e.exit_code) from None
        # The admin sees the detail a submitter would not (e.g. a mapping program's stderr).
        raise GceError(str(e), e.detail, hint=e.hint, exit_code=e.exit_code) from None
    _report(identity, name, local, rule, str(mapper.path), as_json)
