"""What the manager opens for a templated user endpoint before it starts it (gce/daemon/spawn.py):
a descriptor of the template's directory that reads and lists nothing itself, and one of the schema."""

from __future__ import annotations

import fcntl
import os

from gce.config.uep import UepConfig, UepTemplate
from gce.daemon import spawn


def conf(template_path: str | None, schema_path: str | None) -> UepConfig:
    return UepConfig(endpoint_id="1" * 32, engine={}, run_dir="/nonexistent", max_result_bytes=1000,
                     template=UepTemplate(name="hpc", template_path=template_path, schema_path=schema_path,
                                          parent_config={}, user_config={}))


def test_the_template_directory_is_opened_o_path_and_the_schema_for_reading(tmp_path):
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "t.yaml.j2").write_text("engine: {type: ThreadPoolEngine}\n")
    (tmp_path / "s.json").write_text("{}")
    opened: list[int] = []
    try:
        got = spawn._with_admin_fds(conf(str(tmp_path / "tpl" / "t.yaml.j2"), str(tmp_path / "s.json")), opened)
        assert got.template is not None
        dir_fd, schema_fd = got.template.template_dir_fd, got.template.schema_fd
        assert opened == [dir_fd, schema_fd]
        assert os.readlink(f"/proc/self/fd/{dir_fd}") == str(tmp_path / "tpl")
        assert os.readlink(f"/proc/self/fd/{schema_fd}") == str(tmp_path / "s.json")
        assert fcntl.fcntl(dir_fd, fcntl.F_GETFL) & os.O_PATH
        assert os.read(schema_fd, 10) == b"{}"
        assert not os.get_inheritable(dir_fd)  # only the UEP gets them, through pass_fds
    finally:
        for fd in opened:
            os.close(fd)


def test_a_file_that_cannot_be_opened_gets_no_descriptor_and_untemplated_gets_none(tmp_path):
    opened: list[int] = []
    got = spawn._with_admin_fds(conf(str(tmp_path / "gone" / "t.j2"), str(tmp_path / "gone.json")), opened)
    assert got.template is not None and (got.template.template_dir_fd, got.template.schema_fd) == (None, None)
    assert opened == []
    personal = UepConfig(endpoint_id="1" * 32, engine={"type": "ThreadPoolEngine"}, run_dir="/x", max_result_bytes=1)
    assert spawn._with_admin_fds(personal, opened) is personal and opened == []
