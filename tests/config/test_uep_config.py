"""The user endpoint's config: what the manager writes to a UEP's stdin, read back field by field.

Pure: a round trip through JSON (as it travels) and one refusal per kind of bad field, each naming
the field, so a manager and a UEP that disagree say where.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from gce.config.uep import UepConfig, UepConfigError, UepIdentity, UepTemplate, UserRuntime

PERSONAL = {"endpoint_id": "0" * 32, "engine": {"type": "ThreadPoolEngine", "max_workers": 1},
            "run_dir": "/state/uep", "max_result_bytes": 1 << 20, "allowed_functions": None,
            "log_file": "/logs/default.log", "debug": False}


def templated() -> UepConfig:
    return UepConfig(
        endpoint_id="1" * 32, engine={}, run_dir="/home/a/.gce/uep/mu/abc", max_result_bytes=1000,
        allowed_functions=("f" * 64,), log_file="/home/a/.gce/uep-logs/mu/abc.log", debug=True,
        identity=UepIdentity(uid=1001, gid=1001, groups=(27, 1001)), home="/home/a",
        template=UepTemplate(name="mu", template_path="/etc/gce/mu/t.yaml.j2", schema_path="/etc/gce/mu/s.json",
                             parent_config={"engine": {"type": "x"}}, user_config={"workers": 2},
                             user_runtime=UserRuntime(python_version="3.11.2", gce_version="0.1.0",
                                                      platform="Linux-x86_64")),
    )


def through_json(conf: UepConfig) -> UepConfig:
    return UepConfig.from_dict(json.loads(json.dumps(conf.to_dict())))


def test_a_templated_config_comes_back_equal_through_json():
    conf = templated()
    assert through_json(conf) == conf
    assert conf.to_dict()["identity"] == {"uid": 1001, "gid": 1001, "groups": [27, 1001]}
    assert conf.to_dict()["template"]["user_runtime"] == {"python_version": "3.11.2", "gce_version": "0.1.0",
                                                          "platform": "Linux-x86_64"}


def test_the_descriptors_of_the_admin_files_come_back_and_default_to_none():
    conf = templated()
    assert conf.template is not None and (conf.template.template_dir_fd, conf.template.schema_fd) == (None, None)
    with_fds = dataclasses.replace(conf, template=dataclasses.replace(conf.template, template_dir_fd=5, schema_fd=6))
    assert through_json(with_fds) == with_fds and through_json(with_fds).template.schema_fd == 6
    data = conf.to_dict()
    del data["template"]["template_dir_fd"], data["template"]["schema_fd"]  # a manager that passes none
    assert UepConfig.from_dict(data) == conf


def test_a_personal_config_reads_with_its_optional_fields_left_out():
    conf = UepConfig.from_dict({k: v for k, v in PERSONAL.items() if k not in ("log_file", "debug")})
    assert conf == UepConfig(endpoint_id="0" * 32, engine={"type": "ThreadPoolEngine", "max_workers": 1},
                             run_dir="/state/uep", max_result_bytes=1 << 20)
    assert conf.identity is None and conf.template is None and conf.home is None and conf.log_file is None
    assert through_json(conf) == conf


def test_an_empty_allowed_list_stays_empty_and_none_allows_all():
    assert UepConfig.from_dict({**PERSONAL, "allowed_functions": []}).allowed_functions == ()
    assert UepConfig.from_dict(PERSONAL).allowed_functions is None


def test_unknown_fields_from_a_newer_manager_are_ignored():
    conf = UepConfig.from_dict({**PERSONAL, "future": 1, "template": None})
    assert conf == UepConfig.from_dict(PERSONAL)
    data = templated().to_dict()
    data["template"]["user_runtime"]["future"] = "x"
    data["identity"]["future"] = 2
    assert UepConfig.from_dict(data) == templated()


def test_the_submitters_missing_runtime_values_read_as_empty():
    data = templated().to_dict()
    data["template"]["user_runtime"] = {"python_version": None, "gce_version": ""}
    assert UepConfig.from_dict(data).template.user_runtime == UserRuntime()


@pytest.mark.parametrize("change, field, why", [
    ({"endpoint_id": None}, "endpoint_id", "a string"),
    ({"engine": "ThreadPoolEngine"}, "engine", "a JSON object"),
    ({"run_dir": 3}, "run_dir", "a string"),
    ({"max_result_bytes": "10"}, "max_result_bytes", "an integer"),
    ({"max_result_bytes": True}, "max_result_bytes", "an integer"),
    ({"allowed_functions": "abc"}, "allowed_functions", "a list of strings"),
    ({"allowed_functions": [1]}, "allowed_functions", "a list of strings"),
    ({"debug": "yes"}, "debug", "true or false"),
    ({"log_file": []}, "log_file", "a string"),
    ({"identity": {"uid": 1, "gid": 1}}, "identity.groups", "missing"),
    ({"identity": {"uid": "0", "gid": 1, "groups": []}}, "identity.uid", "an integer"),
    ({"identity": {"uid": 1, "gid": 1, "groups": ["wheel"]}}, "identity.groups", "a list of integers"),
    ({"template": []}, "template", "a JSON object"),
])
def test_a_bad_field_is_refused_by_name(change, field, why):
    with pytest.raises(UepConfigError) as e:
        UepConfig.from_dict({**PERSONAL, **change})
    assert f"field {field!r}" in str(e.value) and why in str(e.value)
    assert str(e.value).startswith("the user endpoint's config is invalid: ")


@pytest.mark.parametrize("field", ["endpoint_id", "engine", "run_dir", "max_result_bytes"])
def test_a_missing_required_field_is_refused_by_name(field):
    with pytest.raises(UepConfigError, match=f"field '{field}' is missing"):
        UepConfig.from_dict({k: v for k, v in PERSONAL.items() if k != field})


@pytest.mark.parametrize("path, value, field", [
    (("name",), None, "template.name"),
    (("user_config",), [], "template.user_config"),
    (("parent_config",), None, "template.parent_config"),
    (("user_runtime",), "3.11", "template.user_runtime"),
    (("user_runtime", "platform"), 3, "template.user_runtime.platform"),
    (("template_path",), 1, "template.template_path"),
    (("template_dir_fd",), "5", "template.template_dir_fd"),
    (("schema_fd",), True, "template.schema_fd"),
])
def test_a_bad_template_field_is_refused_with_its_path(path, value, field):
    data = templated().to_dict()
    at = data["template"]
    for key in path[:-1]:
        at = at[key]
    at[path[-1]] = value
    with pytest.raises(UepConfigError, match=f"field '{field}'"):
        UepConfig.from_dict(data)


def test_what_is_not_an_object_is_refused():
    with pytest.raises(UepConfigError, match="not a JSON object"):
        UepConfig.from_dict([])  # type: ignore[arg-type]
