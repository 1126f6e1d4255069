"""gce render-user-config: show the user endpoint config a templated endpoint would make."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from gce import output
from gce.commands import DEFAULT_NAME, complete_name, resolve_name
from gce.config.paths import endpoint_paths
from gce.errors import ConfigError, UsageError


def describe(path: Path | None) -> str:
    """Where the user config comes from, as error messages name it."""
    if path is None:
        return "{} (no --user-config)"
    return "from standard input" if str(path) == "-" else str(path)


def read_user_config(path: Path) -> Any:
    """The JSON value in PATH ('-': standard input)."""
    from gce.config.user_schema import UserConfigInvalid
    from gce.transport import limits

    source = describe(path)
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as e:
        raise UsageError(f"cannot read the user config {source}", e.strerror or str(e)) from None
    try:
        return limits.loads(text)
    except limits.TooDeep as e:  # the endpoint refuses such a config too, before parsing it
        raise UserConfigInvalid(f"invalid user endpoint config {source}", str(e),
                                hint="a user endpoint config is a shallow JSON object of settings") from None
    except ValueError as e:
        raise UserConfigInvalid(
            f"invalid user endpoint config {source}", f"not JSON: {e}",
            hint='the file holds one JSON object, e.g. {"account": "my-project"}',
        ) from None


def to_yaml(data: Any) -> str:
    """DATA as block YAML; a multi-line string (a worker_init script) as a literal block."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> Any:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _identity(user: str | None) -> dict:
    from gce.config.template_vars import mapped_identity_of

    if user is None:
        return mapped_identity_of(os.getuid())
    try:
        return mapped_identity_of(int(user) if user.isdigit() else user)
    except ConfigError as e:
        raise UsageError(f"unknown user {user!r} for --as", e.why, hint="give a local account name or uid") from None


def command(
    name: Annotated[str, typer.Argument(metavar="[NAME]", show_default=False,
                                        help="The templated endpoint (name or id); default: default.",
                                        autocompletion=complete_name, callback=resolve_name)] = DEFAULT_NAME,
    user_config: Annotated[
        Optional[Path],
        typer.Option(
            "--user-config", metavar="FILE.json", show_default=False,
            help="The values a user would send (the SDK's user_endpoint_config), as a JSON object; "
            "'-' reads standard input. Default: {} (the schema's defaults).",
        ),
    ] = None,
    as_user: Annotated[
        Optional[str],
        typer.Option(
            "--as", metavar="USER", show_default=False,
            help="The local account whose mapped_identity.local the template sees; default: you.",
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the config as JSON.")] = False,
) -> None:
    """Render a user endpoint config offline, as a task would, and show it.

    Checks the values of --user-config against the endpoint's user_config_schema.json, fills in
    the schema's defaults, renders user_config_template.yaml.j2 and checks that it makes a valid
    engine. Use it to try a change of the template or the schema before users meet it.

    It works offline: it does not contact the broker, map an identity or change user. --as only
    fills mapped_identity; when the endpoint runs, the template is rendered by the mapped user
    itself, so files it includes must be readable by that user. user_runtime describes this machine.
    """
    from gce.config import model
    from gce.config.templating import render_here
    from gce.config.user_schema import UserConfigInvalid

    paths = endpoint_paths(name)
    config = model.load(paths)
    values = read_user_config(user_config) if user_config is not None else {}
    source = describe(user_config)
    identity = _identity(as_user)
    try:
        rendered = render_here(config, values, source=source, mapped_identity=identity)
    except UserConfigInvalid as e:
        if config.user_config_schema_path:
            e.hint = f"the values must fit the schema {config.user_config_schema_path}"
        raise
    local = identity["local"]
    if json_output:
        output.json({"endpoint": name, "user": local["uname"], "template": config.user_config_template_path,
                     "config": rendered})
        return
    output.line(f"# user endpoint config of {name} for {local['uname']} (uid {local['uid']}), "
                f"from {config.user_config_template_path}")
    sys.stdout.write(to_yaml(rendered))
    sys.stdout.flush()
