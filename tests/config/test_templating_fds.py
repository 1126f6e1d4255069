"""Rendering through descriptors the manager opened: the template's directory (O_PATH) and the
schema (O_RDONLY), for a user who cannot reach their paths (/etc/gce is 0750 root:root)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path

import pytest

from gce.config import templating, user_schema
from gce.config.model import EndpointConfig
from gce.config.user_schema import TemplateRenderError

IDENTITY = {"local": {"uname": "alice", "uid": 1001, "gid": 1001, "groups": ["alice"], "gids": [1001],
                      "home": "/home/alice", "shell": "/bin/bash"}}
RUNTIME = {"python_version": "3.11.2", "gce_version": "0.1.0", "platform": "Linux"}
SCHEMA = {"type": "object", "properties": {"workers": {"type": "integer", "default": 2}},
          "additionalProperties": False}


@contextlib.contextmanager
def opened(path: Path, flags: int):
    fd = os.open(path, flags)
    try:
        yield fd
    finally:
        os.close(fd)


def endpoint(template: Path, schema: Path) -> EndpointConfig:
    return EndpointConfig(name="hpc", endpoint_id="", broker_url="", engine={}, multi_user=True,
                          user_config_template_path=str(template), user_config_schema_path=str(schema),
                          raw={"multi_user": True})


@pytest.fixture
def admin(tmp_path):
    """A template including a sibling and a file below it, and a schema in another directory."""
    tpl, sch = tmp_path / "hpc", tmp_path / "schemas"
    (tpl / "parts").mkdir(parents=True)
    sch.mkdir()
    (tpl / "t.yaml.j2").write_text('engine:\n  type: {% include "kind.j2" %}\n{% include "parts/workers.j2" %}\n')
    (tpl / "kind.j2").write_text("ThreadPoolEngine\n")
    (tpl / "parts" / "workers.j2").write_text("  max_workers: {{ workers }}\n")
    (sch / "s.json").write_text(json.dumps(SCHEMA))
    return tpl / "t.yaml.j2", sch / "s.json"


def test_renders_through_the_descriptors_when_the_paths_lead_nowhere(admin, tmp_path):
    template, schema = admin
    with opened(template.parent, os.O_PATH | os.O_DIRECTORY) as dir_fd, opened(schema, os.O_RDONLY) as schema_fd:
        # Root passes every permission check: moving the files away shows the paths are not read.
        template.parent.rename(tmp_path / "moved-hpc")
        schema.parent.rename(tmp_path / "moved-schemas")
        for _ in range(2):  # the schema's offset is rewound: a second read gets the whole file again
            rendered = templating.render_for_endpoint(
                endpoint(template, schema), {"workers": 3}, source="for endpoint 'hpc'", user_runtime=RUNTIME,
                mapped_identity=IDENTITY, template_dir_fd=dir_fd, schema_fd=schema_fd)
            assert rendered == {"engine": {"type": "ThreadPoolEngine", "max_workers": 3}}
        assert templating.render_for_endpoint(
            endpoint(template, schema), {}, source="", user_runtime=RUNTIME, mapped_identity=IDENTITY,
            template_dir_fd=dir_fd, schema_fd=schema_fd)["engine"]["max_workers"] == 2  # the schema's default
    with pytest.raises(TemplateRenderError, match="cannot read the user config schema"):
        templating.render_for_endpoint(endpoint(template, schema), {}, source="", user_runtime=RUNTIME,
                                       mapped_identity=IDENTITY)  # no descriptors: the paths, which are gone


def test_a_directory_opened_with_o_path_cannot_be_listed(admin):
    template, _ = admin
    with opened(template.parent, os.O_PATH | os.O_DIRECTORY) as dir_fd:
        with pytest.raises(OSError) as err:
            os.listdir(dir_fd)
        assert err.value.errno == errno.EBADF
        with pytest.raises(OSError):
            os.read(dir_fd, 1)


@pytest.mark.parametrize("name", ["../secret.j2", "/etc/passwd", "parts/../../secret.j2"])
def test_through_a_descriptor_include_stays_in_the_directory(admin, tmp_path, name):
    template, _ = admin
    (tmp_path / "secret.j2").write_text("leak: 1\n")
    template.write_text(f"engine: {{type: ThreadPoolEngine}}\n{{% include {json.dumps(name)} %}}\n")
    with opened(template.parent, os.O_PATH | os.O_DIRECTORY) as dir_fd:
        with pytest.raises(TemplateRenderError) as err:
            templating.render_user_config(template, {}, parent_config={}, user_runtime=RUNTIME,
                                          mapped_identity=IDENTITY, dir_fd=dir_fd)
    assert err.value.why == (f"line 2 of {template}: cannot load {name!r}: only files next to the template can be "
                             "included (no absolute paths, no '..')")


def test_through_a_descriptor_a_missing_file_says_so(admin):
    template, _ = admin
    template.write_text('{% include "nope.j2" %}\n')
    with opened(template.parent, os.O_PATH | os.O_DIRECTORY) as dir_fd:
        with pytest.raises(TemplateRenderError) as err:
            templating.render_text(template, {}, dir_fd=dir_fd)
        assert err.value.why == f"line 1 of {template}: cannot load 'nope.j2': no such file next to the template"
        with pytest.raises(TemplateRenderError, match="cannot read the user config template .*missing.j2"):
            templating.render_text(template.parent / "missing.j2", {}, dir_fd=dir_fd)


def test_a_schema_descriptor_that_is_not_json_names_the_path(tmp_path):
    schema = tmp_path / "s.json"
    schema.write_text("{not json")
    with opened(schema, os.O_RDONLY) as fd:
        with pytest.raises(TemplateRenderError, match=f"cannot parse the user config schema {schema}"):
            user_schema.load_schema(schema, fd)
