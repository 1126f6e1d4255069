"""The values a user sends with a task (``user_endpoint_config``) and the admin's schema of them.

Plain JSON checks, safe where nothing may be rendered or unpickled: the root manager checks a
user's values here before it starts a user endpoint, and the user endpoint renders its
template (gce.config.templating) only after its privilege drop.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Mapping

from gce.config.model import explain
from gce.errors import ConfigError

# The template's own variables; a user's value may not take one of these names.
RESERVED = frozenset({"parent_config", "user_runtime", "mapped_identity"})
# Names Jinja2 gives a meaning to: a user's value of that name would hide it. The globals of
# jinja2.defaults.DEFAULT_NAMESPACE are spelled out (a test keeps them equal) so that the root
# manager, which checks every user config, does not import Jinja2 (5-6 MiB) to do it.
JINJA_GLOBALS = frozenset({"cycler", "dict", "joiner", "lipsum", "namespace", "range"})
_JINJA_NAMES = JINJA_GLOBALS | frozenset({
    "self", "loop", "super", "caller", "varargs", "kwargs", "true", "false", "none", "True", "False", "None",
})


class UserConfigInvalid(ConfigError):
    """The values a user sent do not fit the endpoint's schema: the user can fix them."""

    code = "USER_CONFIG_INVALID"


class TemplateRenderError(ConfigError):
    """The endpoint's template or schema failed, or made an invalid config: its admin can fix it."""

    code = "USER_CONFIG_TEMPLATE_ERROR"


# -- the values ---------------------------------------------------------------------------------

def _explain(error: Any, data: Any) -> str:
    """'<key path>: <what is wrong> (schema: <the keyword it breaks>)' for a jsonschema error in DATA.

    The message is returned to the submitter and may be shown to the admin (status, logs): a
    value is quoted as the endpoint's own config errors quote one, never under a secret-like key."""
    path, message = explain(error, data)
    return f"{path}: {message} (schema: {error.validator if error.validator is not None else 'false'})"


def describe_problem(schema: Mapping, data: Any) -> str | None:
    """The most relevant way DATA breaks SCHEMA, and how many more there are; None if it fits."""
    import jsonschema

    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(data))
    if not errors:
        return None
    best = jsonschema.exceptions.best_match(errors)
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return _explain(best, data) + more


def check_names(user_config: Mapping, source: str) -> None:
    """UserConfigInvalid if a user's key would hide one of the template's own variables."""
    clash = sorted(set(user_config) & (RESERVED | _JINJA_NAMES))
    if clash:
        raise UserConfigInvalid(
            f"invalid user endpoint config {source}".rstrip(),
            f"{clash[0]}: this name is reserved for the template's own variables",
            hint=f"rename the key; reserved names: {', '.join(sorted(RESERVED))} and Jinja2's own",
        )


def validate_user_config(schema: dict, user_config: object, source: str) -> None:
    """Raise UserConfigInvalid naming the key path and the rule of SCHEMA that USER_CONFIG breaks."""
    if not isinstance(user_config, dict):
        raise UserConfigInvalid(
            f"invalid user endpoint config {source}",
            f"it must be a JSON object, not {type(user_config).__name__}",
            hint="send a mapping of names to values, e.g. {\"account\": \"my-project\"}",
        )
    check_names(user_config, source)
    problem = describe_problem(schema, user_config)
    if problem:
        raise UserConfigInvalid(
            f"invalid user endpoint config {source}", problem,
            hint="change the values to fit the endpoint's user_config_schema.json (ask its admin for it)",
        )


def apply_defaults(schema: dict, user_config: dict) -> dict:
    """A copy of USER_CONFIG with the schema's ``default`` of every property it leaves out."""
    result = copy.deepcopy(user_config)
    for key, sub in (schema.get("properties") or {}).items():
        if not isinstance(sub, dict):
            continue
        if key not in result and "default" in sub:
            result[key] = copy.deepcopy(sub["default"])
        elif isinstance(result.get(key), dict) and sub.get("properties"):
            result[key] = apply_defaults(sub, result[key])
    return result


def _read_fd(fd: int) -> str:
    """The whole file open at FD, from its start (its offset is shared: read it again the same)."""
    os.lseek(fd, 0, os.SEEK_SET)
    with open(fd, "rb", closefd=False) as f:
        return f.read().decode()


def load_schema(path: str | os.PathLike, fd: int | None = None) -> dict:
    """The endpoint's user config schema, read from FD when given (a descriptor of PATH the manager
    opened: the user may not reach PATH itself); TemplateRenderError if unreadable or not a schema."""
    import jsonschema

    try:
        schema = json.loads(Path(path).read_text() if fd is None else _read_fd(fd))
    except OSError as e:
        raise TemplateRenderError(f"cannot read the user config schema {path}", e.strerror or str(e)) from None
    except ValueError as e:
        raise TemplateRenderError(f"cannot parse the user config schema {path}", f"not JSON: {e}") from None
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.exceptions.SchemaError as e:
        raise TemplateRenderError(f"invalid user config schema {path}", "{}: {}".format(*explain(e, schema))) from None
    if not isinstance(schema, dict):
        raise TemplateRenderError(f"invalid user config schema {path}", "it must be a JSON object")
    return schema


def parent_view(config: Mapping) -> dict:
    """The endpoint's config as a template sees it: without the broker URL (it holds the password)."""
    view = copy.deepcopy(dict(config))
    if isinstance(view.get("broker"), dict):
        view["broker"].pop("url", None)
    return view
