"""User endpoint configs of templated endpoints: check a user's values, render the admin's template.

A templated (``multi_user: true``) endpoint holds a Jinja2 template of the user endpoint's
config and a JSON schema of the values users may send with a task (``user_endpoint_config``).
``validate_user_config`` checks the values against the schema; ``render_user_config`` renders
the template with them and returns the user endpoint's config. Both are pure (files and data
in, data out) and know nothing of privileges: the user endpoint calls them after it dropped
to the mapped user, so a template can read only what that user can read.

How a user's text is kept from injecting YAML: every ``{{ expression }}`` renders as exactly
one YAML node. A string becomes a double-quoted scalar (JSON's escapes, which YAML accepts); a
number, true/false and null stay themselves; a list or a mapping becomes a flow collection
whose strings, keys included, are quoted the same way. Whatever a template does with a user's
string (prints it, joins it to other text, filters it) its characters stay inside one quoted
scalar: they cannot end it, start a key, an anchor, an alias, a tag or a document. So write
``{{ }}`` where a whole YAML value (or key) goes, and build longer strings inside it with
``~``: ``worker_init: {{ "cd " ~ (mapped_identity.local.home | shell_escape) }}``. Only the
template's own text is written as it is, and the output of its macros, ``caller()`` and
``super()`` (their expressions were quoted in turn). The template runs in Jinja2's immutable
sandbox with StrictUndefined, and can include or extend only files of its own directory.
"""

from __future__ import annotations

import copy
import grp
import json
import math
import os
import platform
import pwd
import shlex
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Mapping

import jinja2
from jinja2.runtime import BlockReference, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment

from gce.config.model import _key_path
from gce.config.schema import ENGINE
from gce.config.writer import yaml_str
from gce.errors import ConfigError

if TYPE_CHECKING:
    from gce.config.model import EndpointConfig

# The template's own variables; a user's value may not take one of these names.
RESERVED = frozenset({"parent_config", "user_runtime", "mapped_identity"})
# Names Jinja2 gives a meaning to: a user's value of that name would hide it.
_JINJA_NAMES = frozenset({
    "self", "loop", "super", "caller", "varargs", "kwargs", "true", "false", "none", "True", "False", "None",
})

# What a rendered template must be: the user endpoint's engine, and nothing the UEP would ignore.
RENDERED = {
    "type": "object",
    "required": ["engine"],
    "additionalProperties": False,
    "properties": {"engine": ENGINE},
}

_CHECK_HINT = "check it offline with: gce render-user-config ENDPOINT --user-config FILE.json"


class UserConfigInvalid(ConfigError):
    """The values a user sent do not fit the endpoint's schema: the user can fix them."""

    code = "USER_CONFIG_INVALID"


class TemplateRenderError(ConfigError):
    """The endpoint's template or schema failed, or made an invalid config: its admin can fix it."""

    code = "USER_CONFIG_TEMPLATE_ERROR"


# -- the values ---------------------------------------------------------------------------------

def _explain(error: Any, data: Any) -> str:
    """'<key path>: <what is wrong> (schema: <the keyword it breaks>)' for a jsonschema error in DATA."""
    path, message, keyword = _key_path(error), error.message, error.validator
    if keyword == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        message = f"{message} (allowed keys: {', '.join(allowed) or 'none'})"
    elif keyword is None:  # a `false` subschema: jsonschema reports the parent object's path only
        keyword, message = "false", "this key is not allowed here"
        parent = data
        for part in error.absolute_path:
            parent = parent[part]
        keys = [k for k, v in parent.items() if v is error.instance] if isinstance(parent, dict) else []
        if len(keys) == 1:
            path = f"{path}.{keys[0]}" if error.absolute_path else str(keys[0])
    return f"{path}: {message} (schema: {keyword})"


def _describe(schema: Mapping, data: Any) -> str | None:
    """The most relevant way DATA breaks SCHEMA, and how many more there are; None if it fits."""
    import jsonschema

    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(data))
    if not errors:
        return None
    best = jsonschema.exceptions.best_match(errors)
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return _explain(best, data) + more


def _check_names(user_config: Mapping, source: str) -> None:
    """UserConfigInvalid if a user's key would hide one of the template's own variables."""
    clash = sorted(set(user_config) & (RESERVED | _JINJA_NAMES | set(jinja2.defaults.DEFAULT_NAMESPACE)))
    if clash:
        raise UserConfigInvalid(
            f"invalid user endpoint config {source}".rstrip(),
            f"{clash[0]}: this name is reserved for the template's own variables",
            hint=f"rename the key; reserved names: {', '.join(sorted(RESERVED))} and Jinja2's own",
        )


def validate_user_config(schema: dict, user_config: dict, source: str) -> None:
    """Raise UserConfigInvalid naming the key path and the rule of SCHEMA that USER_CONFIG breaks."""
    if not isinstance(user_config, dict):
        raise UserConfigInvalid(
            f"invalid user endpoint config {source}",
            f"it must be a JSON object, not {type(user_config).__name__}",
            hint="send a mapping of names to values, e.g. {\"account\": \"my-project\"}",
        )
    _check_names(user_config, source)
    problem = _describe(schema, user_config)
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


def load_schema(path: str | os.PathLike) -> dict:
    """The endpoint's user config schema; TemplateRenderError if it is unreadable or not a schema."""
    import jsonschema

    try:
        schema = json.loads(Path(path).read_text())
    except OSError as e:
        raise TemplateRenderError(f"cannot read the user config schema {path}", e.strerror or str(e)) from None
    except ValueError as e:
        raise TemplateRenderError(f"cannot parse the user config schema {path}", f"not JSON: {e}") from None
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.exceptions.SchemaError as e:
        raise TemplateRenderError(f"invalid user config schema {path}", f"{_key_path(e)}: {e.message}") from None
    if not isinstance(schema, dict):
        raise TemplateRenderError(f"invalid user config schema {path}", "it must be a JSON object")
    return schema


# -- the reserved variables ---------------------------------------------------------------------

def parent_view(config: Mapping) -> dict:
    """The endpoint's config as a template sees it: without the broker URL (it holds the password)."""
    view = copy.deepcopy(dict(config))
    if isinstance(view.get("broker"), dict):
        view["broker"].pop("url", None)
    return view


def local_runtime() -> dict:
    """This machine's ``user_runtime`` (the UEP gets the submitter's from the task instead)."""
    import gce

    return {"python_version": platform.python_version(), "gce_version": gce.__version__,
            "platform": platform.platform()}


def mapped_identity_of(user: str | int) -> dict:
    """``mapped_identity`` for local account USER (name or uid), resolved through NSS."""
    try:
        pw = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"unknown local user {user!r}", "no such account on this machine") from None
    gids = os.getgrouplist(pw.pw_name, pw.pw_gid)
    names = []
    for gid in gids:
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            names.append(str(gid))
    return {"local": {"uname": pw.pw_name, "uid": pw.pw_uid, "gid": pw.pw_gid, "groups": names,
                      "gids": gids, "home": pw.pw_dir, "shell": pw.pw_shell}}


# -- rendering ----------------------------------------------------------------------------------

class _Rendered(str):
    """Output of the template's own macros and blocks: written as it is."""


def _node(value: Any) -> str:
    """VALUE as one YAML flow node whose strings cannot break out of their quotes."""
    if isinstance(value, _Rendered):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        return repr(value) if math.isfinite(value) else (".inf" if value > 0 else "-.inf")
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_node(str(k))}: {_node(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_node(v) for v in value) + "]"
    return yaml_str(str(value))  # str() raises for a StrictUndefined: that is the error we want


class _SiblingLoader(jinja2.FileSystemLoader):
    """Templates of one directory (and below): no absolute names, no '..'."""

    def get_source(self, environment: jinja2.Environment, template: str) -> Any:
        parts = PurePosixPath(template).parts
        if template.startswith("/") or "\\" in template or ".." in parts:
            raise jinja2.TemplateNotFound(
                template, f"cannot load {template!r}: only files next to the template can be included "
                          "(no absolute paths, no '..')")
        try:
            return super().get_source(environment, template)
        except jinja2.TemplateNotFound:
            raise jinja2.TemplateNotFound(template, f"cannot load {template!r}: no such file next to the template")


class _Sandbox(ImmutableSandboxedEnvironment):
    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (jinja2's names)
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(__obj, (Macro, BlockReference)) and isinstance(result, str):
            return _Rendered(result)
        return result


def environment(template_dir: str | os.PathLike) -> jinja2.Environment:
    """The sandboxed environment templates of TEMPLATE_DIR render in."""
    env = _Sandbox(
        loader=_SiblingLoader(str(template_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        finalize=_node,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["shell_escape"] = lambda value: shlex.quote(str(value))
    return env


def _location(exc: BaseException, template_dir: Path, default: Path) -> tuple[str, int | None]:
    """The template file and line EXC was raised at (jinja2 rewrites tracebacks to template lines)."""
    lineno = getattr(exc, "lineno", None)
    filename = getattr(exc, "filename", None)
    if lineno is not None:
        return filename or str(default), lineno
    where: tuple[str, int | None] = (str(default), None)
    tb = exc.__traceback__
    prefix = str(template_dir).rstrip(os.sep) + os.sep
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name.startswith(prefix):
            where = (name, tb.tb_lineno)
        tb = tb.tb_next
    return where


def _reason(exc: BaseException) -> str:
    if isinstance(exc, jinja2.TemplateNotFound):
        return exc.message or f"cannot load {exc.name!r}"
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return f"refused by the sandbox: {exc}"
    if isinstance(exc, jinja2.UndefinedError):
        return f"{exc.message} (give it a value, or use `is defined` or `| default(...)` in the template)"
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"syntax error: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def render_text(template_path: str | os.PathLike, variables: Mapping[str, Any]) -> str:
    """The text of the template at TEMPLATE_PATH rendered with VARIABLES (no checks on the result)."""
    path = Path(template_path).absolute()
    env = environment(path.parent)
    try:
        return env.get_template(path.name).render(dict(variables))
    except Exception as exc:  # a template may fail in any way a Python expression can
        filename, lineno = _location(exc, path.parent, path)
        at = f"line {lineno} of {filename}" if lineno else filename
        if isinstance(exc, jinja2.TemplateNotFound) and exc.name == path.name:
            raise TemplateRenderError(f"cannot read the user config template {path}", "no such file") from None
        raise TemplateRenderError(
            f"cannot render the user config template {path}", f"{at}: {_reason(exc)}", hint=f"fix it, then {_CHECK_HINT}"
        ) from None


def _parse(text: str, path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        where = ""
        if mark is not None:
            lines = text.splitlines()
            shown = lines[mark.line][:200] if mark.line < len(lines) else ""
            where = f" at line {mark.line + 1}, column {mark.column + 1} of the output ({shown!r})"
        raise TemplateRenderError(
            f"the user config template {path} made invalid YAML", f"{problem}{where}",
            hint=f"write each {{{{ }}}} where a whole YAML value goes; {_CHECK_HINT}",
        ) from None


def render_user_config(
    template_path: str | os.PathLike,
    user_config: Mapping[str, Any],
    *,
    parent_config: Mapping[str, Any],
    user_runtime: Mapping[str, Any],
    mapped_identity: Mapping[str, Any],
) -> dict:
    """Render the template with USER_CONFIG's values; return the user endpoint's config.

    The values are top-level variables of the template, next to the reserved ``parent_config``
    (the endpoint's config without the broker URL), ``user_runtime`` and ``mapped_identity``.
    Validate USER_CONFIG first (``validate_user_config``); the result's ``engine`` is checked here.
    """
    path = Path(template_path).absolute()
    _check_names(user_config, "")
    variables = {**copy.deepcopy(dict(user_config)), "parent_config": parent_view(parent_config),
                 "user_runtime": copy.deepcopy(dict(user_runtime)),
                 "mapped_identity": copy.deepcopy(dict(mapped_identity))}
    text = render_text(path, variables)
    data = _parse(text, path)
    if not isinstance(data, dict):
        raise TemplateRenderError(
            f"the user config template {path} made no mapping",
            f"the rendered text is {'empty' if data is None else 'a ' + type(data).__name__}; "
            "it must be a mapping with an engine section", hint=_CHECK_HINT,
        )
    problem = _describe(RENDERED, data)
    if problem:
        raise TemplateRenderError(
            f"the user config template {path} made an invalid config", problem,
            hint=f"fix the template (or the schema, so that it refuses such values); {_CHECK_HINT}",
        )
    return data


def render_for_endpoint(
    config: EndpointConfig,
    user_config: Mapping[str, Any],
    *,
    source: str,
    user_runtime: Mapping[str, Any],
    mapped_identity: Mapping[str, Any],
) -> dict:
    """Validate USER_CONFIG against CONFIG's schema, fill in its defaults, render CONFIG's template."""
    if not config.multi_user or not config.user_config_template_path or not config.user_config_schema_path:
        raise ConfigError(
            f"endpoint {config.name!r} is not templated", "its config.yaml does not say multi_user: true",
            hint=f"set multi_user: true in {config.name}'s config.yaml, or create a templated endpoint "
            "with: gce configure NEW-NAME --multi-user",
        )
    schema = load_schema(config.user_config_schema_path)
    validate_user_config(schema, user_config, source)  # type: ignore[arg-type]  (it checks the type)
    values = apply_defaults(schema, dict(user_config))
    return render_user_config(
        config.user_config_template_path, values, parent_config=config.raw,
        user_runtime=user_runtime, mapped_identity=mapped_identity,
    )
