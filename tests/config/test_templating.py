"""Users' values are checked against the schema, rendered in a sandbox, and cannot inject YAML."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import yaml

from gce.config import template_vars, templating, user_schema
from gce.config.user_schema import TemplateRenderError, UserConfigInvalid
from gce.errors import ConfigError

IDENTITY = {"local": {"uname": "alice", "uid": 1001, "gid": 1001, "groups": ["alice", "hpc"], "gids": [1001, 50],
                      "home": "/home/alice", "shell": "/bin/bash"}}
RUNTIME = {"python_version": "3.11.2", "gce_version": "0.1.0", "platform": "Linux-6.1-x86_64"}
PARENT = {"display_name": "Lab", "broker": {"url": "amqps://ep:s3cret@broker/gce", "queue_type": "quorum"},
          "multi_user": True, "idle_timeout": 60}
HTEX = """engine:
  type: HighThroughputEngine
  provider:
    type: LocalProvider
    worker_init: {{ value }}
"""
PACKAGED = resources.files("gce").joinpath("templates", "multi_user")

# Text that would change the document's structure if it reached the YAML unquoted.
NASTY = [
    "x\nengine: {type: ThreadPoolEngine}",
    "a: b",
    "'",
    '"',
    "{",
    "}",
    "[",
    "- item",
    "&anchor",
    "*alias",
    "!!python/object:os.system",
    "!!python/object/apply:os.system ['true']",
    "# comment",
    "x # not a comment",
    "key: value\n  nested: 1",
    "---\nengine: {type: ThreadPoolEngine}",
    "...",
    "? complex key",
    "| block",
    "> folded",
    "%YAML 1.1",
    "@reserved `backtick`",
    "yes",
    "null",
    "~",
    "0x1F",
    "01:30:00",
    "1e3",
    "",
    " leading and trailing ",
    "tab\tbell\x07nul\x00del\x7f",
    "nel\x85ls\u2028ps\u2029bom\ufeff",
    "\\ back\\slash \\n",
    "{{ 7*7 }}",
    "{% raw %}{{ 7*7 }}",
    "\u00e9\u2713\U0001f600",
]


def write(tmp_path: Path, text: str, name: str = "user_config_template.yaml.j2") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def render(template: Path, values: dict, **kw):
    args = dict(parent_config=PARENT, user_runtime=RUNTIME, mapped_identity=IDENTITY)
    return templating.render_user_config(template, values, **{**args, **kw})


def render_text(tmp_path: Path, text: str, values: dict):
    """The template TEXT rendered with VALUES, parsed: for checks of YAML structure alone."""
    template = write(tmp_path, text, "t.j2")
    return yaml.safe_load(templating.render_text(template, {**values, "mapped_identity": IDENTITY}))


# -- YAML injection --------------------------------------------------------------------------------

@pytest.mark.parametrize("value", NASTY)
def test_a_value_stays_one_string(tmp_path, value):
    config = render(write(tmp_path, HTEX), {"value": value})
    assert config == {"engine": {"type": "HighThroughputEngine",
                                 "provider": {"type": "LocalProvider", "worker_init": value}}}


@pytest.mark.parametrize("value", NASTY)
@pytest.mark.parametrize("text, parse", [
    ("key: {{ v }}\nafter: 1\n", lambda d, v: d == {"key": v, "after": 1}),
    ("flow: {a: {{ v }}, b: 2}\n", lambda d, v: d == {"flow": {"a": v, "b": 2}}),
    ("seq: [{{ v }}, 2]\n", lambda d, v: d == {"seq": [v, 2]}),
    ("list:\n  - {{ v }}\n  - 2\n", lambda d, v: d == {"list": [v, 2]}),
    ("{{ v }}: 1\nafter: 2\n", lambda d, v: d == {v: 1, "after": 2}),
    ("joined: {{ 'pre ' ~ v ~ ' post' }}\n", lambda d, v: d == {"joined": f"pre {v} post"}),
    ("upper: {{ v | upper }}\n", lambda d, v: d == {"upper": v.upper()}),
    ("# a comment with {{ v }}\nafter: 1\n", lambda d, v: d == {"after": 1}),
])
def test_a_value_cannot_change_the_structure_wherever_it_goes(tmp_path, value, text, parse):
    data = render_text(tmp_path, text, {"v": value})
    assert parse(data, value), data


@pytest.mark.parametrize("key", ["a: 1\nb", "x\nengine: {type: ThreadPoolEngine}", "- k", "&a", "*a", "!!str",
                                 "{k}", "", "'", "? q", "k #c"])
def test_keys_of_a_user_mapping_stay_one_key(tmp_path, key):
    extra = {key: "value", "plain": [1, {key: None}]}
    template = "{% for k, v in extra.items() %}\n{{ k }}: {{ v }}\n{% endfor %}\nwhole: {{ extra }}\n"
    data = render_text(tmp_path, template, {"extra": extra})
    assert data == {key: "value", "plain": [1, {key: None}], "whole": extra}


def test_numbers_booleans_and_null_render_as_themselves(tmp_path):
    values = {"i": 3, "f": 0.5, "t": True, "n": None, "big": 10**30, "inf": float("inf"), "neg": -2}
    text = "".join(f"{k}: {{{{ {k} }}}}\n" for k in values)
    assert render_text(tmp_path, text, values) == values
    nan = render_text(tmp_path, "x: {{ x }}\n", {"x": float("nan")})["x"]
    assert nan != nan


def test_a_value_that_looks_like_jinja_is_not_evaluated(tmp_path):
    config = render(write(tmp_path, HTEX), {"value": "{{ 7*7 }} {% if true %}x{% endif %}"})
    assert config["engine"]["provider"]["worker_init"] == "{{ 7*7 }} {% if true %}x{% endif %}"


def test_template_text_outside_expressions_is_kept_as_written(tmp_path):
    text = "{% set t = 'ThreadPoolEngine' %}\nengine:\n  type: {{ t }}\n  max_workers: {{ 2 * n }}\n"
    assert render(write(tmp_path, text), {"n": 2}) == {"engine": {"type": "ThreadPoolEngine", "max_workers": 4}}


def test_shell_escape_quotes_a_value_for_the_shell(tmp_path):
    value = "it's; rm -rf ~ $(id) `id` \"q\"\nnext"
    text = HTEX.replace("{{ value }}", "{{ 'echo ' ~ (value | shell_escape) }}")
    init = render(write(tmp_path, text), {"value": value})["engine"]["provider"]["worker_init"]
    assert shlex.split(init) == ["echo", value]


# -- the sandbox -----------------------------------------------------------------------------------

@pytest.mark.parametrize("expression, reason", [
    ("''.__class__.__mro__[1].__subclasses__()", "access to attribute '__class__' of 'str' object is unsafe."),
    ("cycler.__init__.__globals__", "access to attribute '__init__' of 'type' object is unsafe."),
    ("self._TemplateReference__context", "access to attribute '_TemplateReference__context' of "
                                         "'TemplateReference' object is unsafe."),
    ("self.__init__.__globals__", "access to attribute '__init__' of 'TemplateReference' object is unsafe."),
    ("lipsum.__globals__['os']", "access to attribute '__globals__' of 'function' object is unsafe."),
    ("range.__globals__", "access to attribute '__globals__' of 'function' object is unsafe."),
    ("value | attr('__class__')", "access to attribute '__class__' of 'str' object is unsafe."),
    ("mapped_identity.local.groups.append('wheel')", "access to attribute 'append' of 'list' object is unsafe."),
    ("parent_config.update({})", "access to attribute 'update' of 'dict' object is unsafe."),
    ("'{0.__class__}'.format(value)", "access to attribute '__class__' of 'str' object is unsafe."),
])
def test_sandbox_escapes_are_refused(tmp_path, expression, reason):
    template = write(tmp_path, f"engine:\n  type: ThreadPoolEngine\nx: {{{{ {expression} }}}}\n")
    with pytest.raises(TemplateRenderError) as err:
        render(template, {"value": "v"})
    assert err.value.why == f"line 3 of {template}: refused by the sandbox: {reason}"
    assert err.value.code == "USER_CONFIG_TEMPLATE_ERROR"
    assert err.value.exit_code == 78


def test_self_renders_as_text_only(tmp_path):
    assert render_text(tmp_path, "x: {{ self }}\n", {}) == {"x": "<TemplateReference 't.j2'>"}


def test_an_undefined_variable_is_an_error_naming_it_and_its_line(tmp_path):
    template = write(tmp_path, "engine:\n  type: ThreadPoolEngine\n  max_workers: {{ workers }}\n")
    with pytest.raises(TemplateRenderError) as err:
        render(template, {})
    assert str(err.value) == (
        f"cannot render the user config template {template}: line 3 of {template}: 'workers' is undefined "
        "(give it a value, or use `is defined` or `| default(...)` in the template)")
    assert err.value.hint == "fix it, then check it offline with: gce render-user-config ENDPOINT --user-config FILE.json"


def test_undefined_can_be_tested_and_defaulted(tmp_path):
    text = ("engine:\n  type: ThreadPoolEngine\n  max_workers: {{ workers | default(3) }}\n"
            "{% if debug is defined %}\n  boom: {{ debug }}\n{% endif %}\n")
    assert render(write(tmp_path, text), {}) == {"engine": {"type": "ThreadPoolEngine", "max_workers": 3}}


def test_a_syntax_error_names_its_line(tmp_path):
    template = write(tmp_path, "engine:\n  type: {{ x \n")
    with pytest.raises(TemplateRenderError) as err:
        render(template, {"x": 1})
    assert err.value.why.startswith(f"line 2 of {template}: syntax error: ")


def test_a_python_error_in_an_expression_names_its_line(tmp_path):
    template = write(tmp_path, "engine:\n  max_workers: {{ 1 // n }}\n")
    with pytest.raises(TemplateRenderError) as err:
        render(template, {"n": 0})
    assert err.value.why == f"line 2 of {template}: ZeroDivisionError: integer division or modulo by zero"


# -- include and extends ---------------------------------------------------------------------------

def test_include_extends_macros_and_super_next_to_the_template(tmp_path):
    write(tmp_path, "engine:\n{% block engine %}\n  type: ThreadPoolEngine\n{% endblock %}\n", "base.yaml.j2")
    write(tmp_path, "{% macro provider(kind) %}\n  provider:\n    type: {{ kind }}\n{% endmacro %}\n",
          "macros.j2")
    (tmp_path / "parts").mkdir()
    write(tmp_path, "  max_workers_per_node: {{ workers }}\n", "parts/workers.j2")
    template = write(tmp_path, (
        '{% extends "base.yaml.j2" %}\n{% import "macros.j2" as m %}\n'
        '{% block engine %}\n{{ super() | replace("ThreadPoolEngine", "HighThroughputEngine") }}'
        '{{ super().replace("x", "y") }}'
        '{% include "parts/workers.j2" %}\n{{ m.provider(kind) }}{% endblock %}\n'))
    with pytest.raises(TemplateRenderError):
        render(template, {"workers": 2, "kind": "LocalProvider"})  # a filtered super() is a string: quoted
    template.write_text(
        '{% extends "base.yaml.j2" %}\n{% import "macros.j2" as m %}\n'
        '{% block engine %}\n  type: HighThroughputEngine\n{% include "parts/workers.j2" %}\n'
        '{{ m.provider(kind) }}{% endblock %}\n')
    assert render(template, {"workers": 2, "kind": "LocalProvider"}) == {
        "engine": {"type": "HighThroughputEngine", "max_workers_per_node": 2, "provider": {"type": "LocalProvider"}}}
    template.write_text('{% extends "base.yaml.j2" %}\n{% block engine %}{{ super() }}  max_workers: 2\n'
                        '{% endblock %}\n')
    assert render(template, {}) == {"engine": {"type": "ThreadPoolEngine", "max_workers": 2}}


def test_a_macro_quotes_the_values_it_writes(tmp_path):
    text = ("{% macro kv(k, v) %}\n{{ k }}: {{ v }}\n{% endmacro %}\n"
            "{% macro wrap(k) %}\n{{ k }}: {{ caller() }}\n{% endmacro %}\n"
            "{{ kv('a', value) }}{% call wrap('c') %}{{ value }}{% endcall %}")
    assert render_text(tmp_path, text, {"value": "x\nc: 2"}) == {"a": "x\nc: 2", "c": "x\nc: 2"}


@pytest.mark.parametrize("name", ["../etc/passwd", "/etc/passwd", "parts/../../secret.j2", "..\\secret"])
def test_include_outside_the_templates_directory_is_refused(tmp_path, name):
    (tmp_path / "secret.j2").write_text("leak: 1\n")
    folder = tmp_path / "templates"
    folder.mkdir()
    template = write(folder, f'engine: {{type: ThreadPoolEngine}}\n{{% include {json.dumps(name)} %}}\n')
    with pytest.raises(TemplateRenderError) as err:
        render(template, {})
    assert err.value.why == (f"line 2 of {template}: cannot load {name!r}: only files next to the template can be "
                             "included (no absolute paths, no '..')")


def test_include_of_a_user_chosen_name_is_held_to_the_same_directory(tmp_path):
    template = write(tmp_path, "engine: {type: ThreadPoolEngine}\n{% include part %}\n")
    with pytest.raises(TemplateRenderError, match="only files next to the template"):
        render(template, {"part": "../../../etc/passwd"})


def test_a_missing_include_and_a_missing_template(tmp_path):
    template = write(tmp_path, '{% include "nope.j2" %}\n')
    with pytest.raises(TemplateRenderError) as err:
        render(template, {})
    assert err.value.why == f"line 1 of {template}: cannot load 'nope.j2': no such file next to the template"
    with pytest.raises(TemplateRenderError) as err:
        render(tmp_path / "missing.j2", {})
    assert str(err.value) == f"cannot read the user config template {tmp_path}/missing.j2: no such file"


# -- the rendered result ---------------------------------------------------------------------------

def test_reserved_variables(tmp_path):
    text = "parent: {{ parent_config }}\nruntime: {{ user_runtime }}\nidentity: {{ mapped_identity }}\n"
    template = write(tmp_path, text, "t.j2")
    data = yaml.safe_load(templating.render_text(template, {
        "parent_config": user_schema.parent_view(PARENT), "user_runtime": RUNTIME, "mapped_identity": IDENTITY}))
    assert data == {"parent": {"display_name": "Lab", "broker": {"queue_type": "quorum"}, "multi_user": True,
                               "idle_timeout": 60},
                    "runtime": RUNTIME, "identity": IDENTITY}
    assert PARENT["broker"]["url"] == "amqps://ep:s3cret@broker/gce"  # a copy was changed, not the config


def test_the_broker_url_never_reaches_the_template(tmp_path):
    template = write(tmp_path, "engine: {type: ThreadPoolEngine}\n{{ parent_config.broker.url }}\n")
    with pytest.raises(TemplateRenderError, match="has no attribute 'url'"):
        render(template, {})


@pytest.mark.parametrize("name", ["parent_config", "user_runtime", "mapped_identity", "range", "self", "loop"])
def test_user_keys_may_not_shadow_reserved_names(tmp_path, name):
    template = write(tmp_path, "engine: {type: ThreadPoolEngine}\n")
    with pytest.raises(UserConfigInvalid) as err:
        render(template, {name: {"local": {"uname": "root", "uid": 0}}})
    assert err.value.why == f"{name}: this name is reserved for the template's own variables"
    assert err.value.code == "USER_CONFIG_INVALID"
    with pytest.raises(UserConfigInvalid):
        user_schema.validate_user_config({}, {name: 1}, "test")


@pytest.mark.parametrize("text, why", [
    ("engine: [\n", "expected the node content, but found '<stream end>' at line 2, column 1 of the output ('')"),
    ("engine: {type: ThreadPoolEngine}\nengine: x: y\n",
     "mapping values are not allowed here at line 2, column 10 of the output ('engine: x: y')"),
])
def test_invalid_yaml_output_is_an_error(tmp_path, text, why):
    template = write(tmp_path, text)
    with pytest.raises(TemplateRenderError) as err:
        render(template, {})
    assert err.value.what == f"the user config template {template} made invalid YAML"
    assert err.value.why == why


@pytest.mark.parametrize("text, why", [
    ("", "the rendered text is empty; it must be a mapping with an engine section"),
    ("- engine\n", "the rendered text is a list; it must be a mapping with an engine section"),
])
def test_output_that_is_no_mapping_is_an_error(tmp_path, text, why):
    with pytest.raises(TemplateRenderError) as err:
        render(write(tmp_path, text), {})
    assert err.value.why == why


@pytest.mark.parametrize("text, why", [
    ("x: 1\n", "(top level): 'engine' is a required property (schema: required) (and 1 more problem)"),
    ("engine: {type: ThreadPoolEngine}\nbroker: {url: 'amqp://evil'}\n",
     "(top level): Additional properties are not allowed ('broker' was unexpected) (allowed keys: "
     "allowed_functions, allowed_serializers, endpoint_setup, endpoint_setup_timeout, endpoint_teardown, engine) "
     "(schema: additionalProperties)"),
    ("engine: {type: Nope}\n",
     "engine.type: 'Nope' is not one of ['HighThroughputEngine', 'ProcessPoolEngine', 'ThreadPoolEngine', "
     "'MPIEngine', 'GlobusMPIEngine'] (schema: enum)"),
    ("engine: {type: ThreadPoolEngine, max_workers: {{ n }}}\n",
     "engine.max_workers: 0 is less than the minimum of 1 (schema: minimum)"),
    ("engine: {type: HighThroughputEngine, provider: {type: SlurmProvider, walltime: {{ w }}}}\n",
     "engine.provider.walltime: '1 hour' does not match '^\\\\d+(:\\\\d{2}){0,2}$' (schema: pattern)"),
    ("engine: {type: ThreadPoolEngine, provider: {type: LocalProvider}}\n",
     "engine.provider: this key is not allowed here (schema: false)"),
])
def test_a_rendered_config_that_fails_the_engine_schema_is_an_error(tmp_path, text, why):
    template = write(tmp_path, text)
    with pytest.raises(TemplateRenderError) as err:
        render(template, {"n": 0, "w": "1 hour"})
    assert err.value.what == f"the user config template {template} made an invalid config"
    assert err.value.why == why


# -- validating the user's values ------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "workers": {"type": "integer", "minimum": 1, "maximum": 8, "default": 2},
        "queue": {"enum": ["debug", "batch"]},
        "account": {"type": "string", "pattern": "^[a-z0-9_-]+$"},
        "options": {"type": "object", "additionalProperties": False,
                    "properties": {"gpus": {"type": "integer", "maximum": 4, "default": 0}, "x": {"type": "string"}}},
    },
}


@pytest.mark.parametrize("values, why", [
    ({"workers": "4"}, "workers: '4' is not of type 'integer' (schema: type)"),
    ({"workers": 9}, "workers: 9 is greater than the maximum of 8 (schema: maximum)"),
    ({"queue": "gpu"}, "queue: 'gpu' is not one of ['debug', 'batch'] (schema: enum)"),
    ({"account": "proj\nx: 1"}, "account: 'proj\\nx: 1' does not match '^[a-z0-9_-]+$' (schema: pattern)"),
    ({"color": "red"}, "(top level): Additional properties are not allowed ('color' was unexpected) "
                       "(allowed keys: account, options, queue, workers) (schema: additionalProperties)"),
    ({"options": {"gpus": 5}}, "options.gpus: 5 is greater than the maximum of 4 (schema: maximum)"),
    ({"workers": 0, "queue": "x"}, "workers: 0 is less than the minimum of 1 (schema: minimum) (and 1 more problem)"),
    ({"options": False}, "options: False is not of type 'object' (schema: type)"),
])
def test_schema_violations_name_the_property_and_the_constraint(values, why):
    with pytest.raises(UserConfigInvalid) as err:
        user_schema.validate_user_config(SCHEMA, values, "of task 42")
    assert err.value.what == "invalid user endpoint config of task 42"
    assert err.value.why == why
    assert isinstance(err.value, ConfigError) and err.value.code == "USER_CONFIG_INVALID"


def test_values_that_fit_pass_and_defaults_fill_the_rest():
    user_schema.validate_user_config(SCHEMA, {"queue": "debug", "options": {"x": "y"}}, "t")
    values = {"queue": "debug", "options": {"x": "y"}}
    assert user_schema.apply_defaults(SCHEMA, values) == {"queue": "debug", "workers": 2,
                                                         "options": {"x": "y", "gpus": 0}}
    assert values == {"queue": "debug", "options": {"x": "y"}}


def test_user_config_must_be_an_object():
    with pytest.raises(UserConfigInvalid, match="it must be a JSON object, not list"):
        user_schema.validate_user_config(SCHEMA, [1], "t")  # type: ignore[arg-type]


def test_load_schema(tmp_path):
    good = tmp_path / "s.json"
    good.write_text(json.dumps(SCHEMA))
    assert user_schema.load_schema(good) == SCHEMA
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(TemplateRenderError, match="cannot parse the user config schema .*bad.json: not JSON"):
        user_schema.load_schema(tmp_path / "bad.json")
    (tmp_path / "wrong.json").write_text('{"type": 5}')
    with pytest.raises(TemplateRenderError, match="invalid user config schema .*wrong.json: type: 5 is not valid"):
        user_schema.load_schema(tmp_path / "wrong.json")
    with pytest.raises(TemplateRenderError, match="cannot read the user config schema .*: No such file"):
        user_schema.load_schema(tmp_path / "none.json")


def test_mapped_identity_of_a_real_account():
    me = template_vars.mapped_identity_of(os.getuid())["local"]
    assert me["uid"] == os.getuid() and me["gid"] == os.getgid()
    assert template_vars.mapped_identity_of(me["uname"])["local"] == me
    assert me["gids"] == os.getgrouplist(me["uname"], me["gid"])
    assert len(me["groups"]) == len(me["gids"]) and me["home"] and me["shell"]
    with pytest.raises(ConfigError, match="unknown local user 'no-such-user-here'"):
        template_vars.mapped_identity_of("no-such-user-here")


def test_local_runtime():
    import platform

    runtime = template_vars.local_runtime()
    assert runtime["python_version"] == platform.python_version() and set(runtime) == {
        "python_version", "gce_version", "platform"}


# -- the packaged defaults -------------------------------------------------------------------------

def packaged_schema() -> dict:
    return json.loads(PACKAGED.joinpath("user_config_schema.json").read_text())


def copy_packaged_template(tmp_path: Path, slurm: bool = False) -> Path:
    text = PACKAGED.joinpath("user_config_template.yaml.j2").read_text()
    if slurm:
        assert "{% set use_slurm = false %}" in text
        text = text.replace("{% set use_slurm = false %}", "{% set use_slurm = true %}")
    return write(tmp_path, text)


def test_the_packaged_template_renders_a_local_htex_with_the_schema_defaults(tmp_path):
    schema = packaged_schema()
    user_schema.validate_user_config(schema, {}, "t")
    config = render(copy_packaged_template(tmp_path), user_schema.apply_defaults(schema, {}))
    assert config == {"engine": {
        "type": "HighThroughputEngine", "max_workers_per_node": 2, "strategy_period": 0.5,
        "provider": {"type": "LocalProvider", "nodes_per_block": 1, "init_blocks": 1, "min_blocks": 0,
                     "max_blocks": 1, "worker_init": "cd /home/alice\n"}}}


def test_the_packaged_template_on_slurm(tmp_path):
    schema = packaged_schema()
    values = {"account": "proj-1", "walltime": "02:00:00", "worker_init": "module load python",
              "nodes_per_block": 2, "max_blocks": 3, "workers_per_node": 8}
    user_schema.validate_user_config(schema, values, "t")
    config = render(copy_packaged_template(tmp_path, slurm=True), user_schema.apply_defaults(schema, values))
    assert config["engine"]["provider"] == {
        "type": "SlurmProvider", "account": "proj-1", "partition": "debug", "walltime": "02:00:00",
        "nodes_per_block": 2, "launcher": {"type": "SrunLauncher"}, "init_blocks": 1, "min_blocks": 0,
        "max_blocks": 3, "worker_init": "cd /home/alice\nmodule load python"}
    without_account = render(copy_packaged_template(tmp_path, slurm=True), user_schema.apply_defaults(schema, {}))
    assert "account" not in without_account["engine"]["provider"]


def test_every_property_of_the_packaged_schema_is_used_by_the_template():
    text = PACKAGED.joinpath("user_config_template.yaml.j2").read_text()
    schema = packaged_schema()
    assert schema["additionalProperties"] is False
    for name, prop in schema["properties"].items():
        assert f"{{{{ {name} }}}}" in text or f" {name} " in text, name
        assert prop.get("description"), name


@pytest.mark.parametrize("values", [
    {"workers_per_node": 0}, {"workers_per_node": 65}, {"max_blocks": 5}, {"nodes_per_block": "2"},
    {"account": "my project"}, {"account": "-x"}, {"partition": "a\nb"}, {"walltime": "1 hour"},
    {"walltime": "00:99:00"}, {"worker_init": "x" * 4097}, {"queue": "x"},
])
def test_the_packaged_schema_refuses_bad_values(values):
    with pytest.raises(UserConfigInvalid):
        user_schema.validate_user_config(packaged_schema(), values, "t")


def test_the_packaged_identity_mapping_example():
    doc = json.loads(PACKAGED.joinpath("identity_mapping.json").read_text())
    assert doc == {"DATA_TYPE": "expression_identity_mapping#1.0.0",
                   "mappings": [{"source": "{username}", "match": "(.*)@example\\.org", "output": "{0}"}]}
    idmap = pytest.importorskip("gce.daemon.idmap")
    mapper = idmap.IdentityMapper(Path(str(PACKAGED.joinpath("identity_mapping.json"))))
    assert mapper.map("alice@example.org")[0] == "alice"


def test_the_packaged_user_environment_is_a_mapping_of_strings():
    data = yaml.safe_load(PACKAGED.joinpath("user_environment.yaml").read_text())
    assert data == {"LANG": "C.UTF-8"}


def test_the_reserved_jinja_globals_are_jinjas_own():
    from jinja2.defaults import DEFAULT_NAMESPACE

    assert user_schema.JINJA_GLOBALS == set(DEFAULT_NAMESPACE)


def test_checking_a_user_config_imports_no_jinja2():
    """The root manager checks every user config: that must not load Jinja2 into it."""
    code = ("import sys; from gce.config import user_schema; "
            "user_schema.validate_user_config({'type': 'object'}, {'a': 1}, 'x'); "
            "print('jinja2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- what a user's or the admin's mistake quotes back -------------------------------------------------

SECRET_SCHEMA = {"type": "object", "properties": {"api_token": {"type": "string", "minLength": 40},
                                                 "label": {"type": "string", "maxLength": 8},
                                                 "options": {"type": "object", "additionalProperties": False}}}


@pytest.mark.parametrize("values, why", [
    ({"api_token": "Pl4nted-s3cret"}, "api_token: a string is too short (schema: minLength)"),
    ({"label": "token=Pl4nted-s3cret"}, "label: a string is too long (schema: maxLength)"),
    ({"label": ["Pl4nted-s3cret"]}, "label: a list is not of type 'string' (schema: type)"),
    ({"options": {"password": "Pl4nted-s3cret"}},
     "options: Additional properties are not allowed ('password' was unexpected) (allowed keys: none) "
     "(schema: additionalProperties)"),
])
def test_a_users_invalid_values_are_not_quoted_where_they_may_be_secrets(values, why):
    """The reason goes back to the submitter and into the endpoint's status, which its admin reads."""
    with pytest.raises(UserConfigInvalid) as err:
        user_schema.validate_user_config(SECRET_SCHEMA, values, "t")
    assert err.value.why == why


def test_an_invalid_schema_is_named_without_quoting_its_values(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"type": "object", "properties": {"api_key": ["Pl4nted-s3cret"]}}))
    with pytest.raises(TemplateRenderError) as err:
        user_schema.load_schema(tmp_path / "s.json")
    assert "Pl4nted" not in str(err.value) and "properties.api_key: a list is not of type" in err.value.why
