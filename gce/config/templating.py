"""User endpoint configs of templated endpoints: render the admin's template with a user's values.

A templated (``multi_user: true``) endpoint holds a Jinja2 template of the user endpoint's
config and a JSON schema of the values users may send with a task (``user_endpoint_config``).
``gce.config.user_schema.validate_user_config`` checks the values against the schema;
``render_user_config`` renders the template with them and returns the user endpoint's config. Both are pure (files and data
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
import math
import os
import shlex
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Mapping

import jinja2
from jinja2.runtime import BlockReference, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment

from gce.config import redaction
from gce.config.model import yaml_problem
from gce.config.schema import ENGINE, SETUP_TEARDOWN, TEMPLATE_POLICY
from gce.config.template_vars import local_runtime, mapped_identity_of, runtime_variables
from gce.config.user_schema import (TemplateRenderError, apply_defaults, check_names, describe_problem,
                                    load_schema, parent_view, validate_user_config)
from gce.config.writer import yaml_str
from gce.errors import ConfigError

if TYPE_CHECKING:
    from gce.config.model import EndpointConfig

# What a rendered template must be: the user endpoint's engine, and nothing the UEP would ignore.
RENDERED = {
    "type": "object",
    "required": ["engine"],
    "additionalProperties": False,
    "properties": {"engine": ENGINE, **SETUP_TEARDOWN, **TEMPLATE_POLICY},
}

_CHECK_HINT = "check it offline with: gce render-user-config ENDPOINT --user-config FILE.json"


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
    """Templates of one directory (and below): no absolute names, no '..'.

    With DIR_FD (a descriptor of that directory the manager opened as root) each file is opened
    relative to it: openat(2) needs search permission on that directory alone, not on the ones
    above it, which the user may not enter (/etc/gce is 0750)."""

    def __init__(self, searchpath: str, dir_fd: int | None = None) -> None:
        super().__init__(searchpath)
        self.dir_fd = dir_fd

    def get_source(self, environment: jinja2.Environment, template: str) -> Any:
        parts = PurePosixPath(template).parts
        if template.startswith("/") or "\\" in template or ".." in parts:
            raise jinja2.TemplateNotFound(
                template, f"cannot load {template!r}: only files next to the template can be included "
                          "(no absolute paths, no '..')")
        try:
            if self.dir_fd is not None:
                return self._source_at(template)
            return super().get_source(environment, template)
        except jinja2.TemplateNotFound:
            raise jinja2.TemplateNotFound(template, f"cannot load {template!r}: no such file next to the template")

    def _source_at(self, template: str) -> tuple[str, str, Any]:
        assert self.dir_fd is not None
        path = os.path.join(self.searchpath[0], template)
        try:
            fd = os.open(template, os.O_RDONLY, dir_fd=self.dir_fd)
        except FileNotFoundError:
            raise jinja2.TemplateNotFound(template) from None
        except OSError as e:  # named by its full path, as a path-based read names it
            raise type(e)(e.errno, e.strerror, path) from None
        with open(fd, "rb") as f:
            text = f.read().decode(self.encoding)
        return text, path, lambda: True


class _Sandbox(ImmutableSandboxedEnvironment):
    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (jinja2's names)
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(__obj, (Macro, BlockReference)) and isinstance(result, str):
            return _Rendered(result)
        return result


def environment(template_dir: str | os.PathLike, dir_fd: int | None = None) -> jinja2.Environment:
    """The sandboxed environment templates of TEMPLATE_DIR (read through DIR_FD if given) render in."""
    env = _Sandbox(
        loader=_SiblingLoader(str(template_dir), dir_fd),
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


def render_text(template_path: str | os.PathLike, variables: Mapping[str, Any], dir_fd: int | None = None) -> str:
    """The text of the template at TEMPLATE_PATH rendered with VARIABLES (no checks on the result);
    DIR_FD: a descriptor of its directory to read it and its siblings through."""
    path = Path(template_path).absolute()
    env = environment(path.parent, dir_fd)
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
        problem = yaml_problem(e)
        where = ""
        if mark is not None:
            lines = text.splitlines()
            shown = redaction.hide(lines[mark.line][:200]) if mark.line < len(lines) else ""
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
    dir_fd: int | None = None,
) -> dict:
    """Render the template with USER_CONFIG's values; return the user endpoint's config.

    The values are top-level variables of the template, next to the reserved ``parent_config``
    (the endpoint's config without the broker URL), ``user_runtime`` and ``mapped_identity``.
    Validate USER_CONFIG first (``validate_user_config``); the result's ``engine`` is checked here.
    """
    path = Path(template_path).absolute()
    check_names(user_config, "")
    variables = {**copy.deepcopy(dict(user_config)), "parent_config": parent_view(parent_config),
                 "user_runtime": runtime_variables(user_runtime),
                 "mapped_identity": copy.deepcopy(dict(mapped_identity))}
    text = render_text(path, variables, dir_fd)
    data = _parse(text, path)
    if not isinstance(data, dict):
        raise TemplateRenderError(
            f"the user config template {path} made no mapping",
            f"the rendered text is {'empty' if data is None else 'a ' + type(data).__name__}; "
            "it must be a mapping with an engine section", hint=_CHECK_HINT,
        )
    problem = describe_problem(RENDERED, data)
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
    template_dir_fd: int | None = None,
    schema_fd: int | None = None,
) -> dict:
    """Validate USER_CONFIG against CONFIG's schema, fill in its defaults, render CONFIG's template
    (each read through its descriptor when given: see gce.config.uep.UepTemplate)."""
    if not config.multi_user or not config.user_config_template_path or not config.user_config_schema_path:
        raise ConfigError(
            f"endpoint {config.name!r} is not templated", "its config.yaml does not say multi_user: true",
            hint=f"set multi_user: true in {config.name}'s config.yaml, or create a templated endpoint "
            "with: gce configure NEW-NAME --multi-user",
        )
    schema = load_schema(config.user_config_schema_path, schema_fd)
    validate_user_config(schema, user_config, source)
    values = apply_defaults(schema, dict(user_config))
    return render_user_config(
        config.user_config_template_path, values, parent_config=config.raw,
        user_runtime=user_runtime, mapped_identity=mapped_identity, dir_fd=template_dir_fd,
    )


def render_here(config: EndpointConfig, user_config: Mapping[str, Any], *, source: str,
                mapped_identity: Mapping[str, Any] | None = None) -> dict:
    """render_for_endpoint as a template is checked before any task: with this machine's
    user_runtime and, unless given, the mapped_identity of whoever runs this (the diagnostic,
    gce import, gce render-user-config). A user endpoint renders with the submitter's runtime."""
    return render_for_endpoint(config, user_config, source=source, user_runtime=local_runtime(),
                               mapped_identity=mapped_identity_of(os.geteuid()) if mapped_identity is None
                               else mapped_identity)
