"""The user endpoint renders its engine through the descriptors its manager passed, then closes
them, whether the rendering worked or not: no task may read the admin's files through them."""

from __future__ import annotations

import json
import os

import pytest

from gce.config.uep import UepTemplate
from gce.uep.startup import Refusal, render_engine

SCHEMA = {"type": "object", "properties": {"workers": {"type": "integer", "maximum": 4}},
          "additionalProperties": False}


def passed(tmp_path, user_config: dict) -> UepTemplate:
    """A template spec as the manager makes it, with fresh descriptors of the files under TMP_PATH."""
    (tmp_path / "t").mkdir(exist_ok=True)
    template = tmp_path / "t" / "t.yaml.j2"
    template.write_text('engine:\n  type: ThreadPoolEngine\n{% include "w.j2" %}\n')
    (tmp_path / "t" / "w.j2").write_text("  max_workers: {{ workers }}\n")
    (tmp_path / "s.json").write_text(json.dumps(SCHEMA))
    return UepTemplate(name="hpc", template_path=str(template), schema_path=str(tmp_path / "s.json"),
                       parent_config={}, user_config=user_config,
                       template_dir_fd=os.open(tmp_path / "t", os.O_PATH | os.O_DIRECTORY),
                       schema_fd=os.open(tmp_path / "s.json", os.O_RDONLY))


def closed(fd: int | None) -> bool:
    assert fd is not None
    try:
        os.fstat(fd)
    except OSError:
        return True
    os.close(fd)  # leave nothing open when the check fails
    return False


def test_rendered_through_the_descriptors_which_are_then_closed(tmp_path):
    template = passed(tmp_path, {"workers": 3})
    os.rename(tmp_path / "t", tmp_path / "elsewhere")  # only the descriptors still lead there
    os.rename(tmp_path / "s.json", tmp_path / "elsewhere.json")
    assert render_engine(template) == {"type": "ThreadPoolEngine", "max_workers": 3}
    assert closed(template.template_dir_fd) and closed(template.schema_fd)


def test_a_refused_user_config_closes_them_too(tmp_path):
    template = passed(tmp_path, {"workers": 99})
    with pytest.raises(Refusal, match="workers: .*maximum") as err:
        render_engine(template)
    assert err.value.code == "USER_CONFIG_INVALID"
    assert closed(template.template_dir_fd) and closed(template.schema_fd)
