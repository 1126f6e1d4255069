"""The submitter's runtime reaches the admin's template: SDK headers -> manager -> UEP render.

Each hop is the production function: the SDK's task message, the manager's parse of its
headers, the routing that builds a new UEP's conf, and the UEP's rendering of its engine.
"""

from __future__ import annotations

import json
import platform

import gce
from gce.config.model import from_data
from gce.config.uep import UepConfig
from gce.config.paths import EndpointPaths
from gce.daemon import privileges
from gce.daemon.routing import Router
from gce.sdk.tasks import task_message
from gce.transport.message import parse_task
from gce.uep.startup import render_engine

TEMPLATE = """engine:
  type: ThreadPoolEngine
  max_workers: 1
  label: {{ user_runtime.python_version ~ "|" ~ user_runtime.gce_version ~ "|" ~ user_runtime.platform }}
"""


def test_the_submitters_versions_and_platform_reach_the_template(tmp_path):
    (tmp_path / "user_config_template.yaml.j2").write_text(TEMPLATE)
    (tmp_path / "user_config_schema.json").write_text(json.dumps({"type": "object", "properties": {}}))
    config = from_data("rt", "0" * 32, {"broker": {"url": "amqp://ep:secret@b/gce"}, "multi_user": True}, tmp_path)
    paths = EndpointPaths(name="rt", config_dir=tmp_path, state_dir=tmp_path / "state",
                          runtime_dir=tmp_path / "run", log_file=tmp_path / "endpoint.log")

    task_id, _body, props = task_message(b"cloudpickle", b"f", "a" * 64, (), {}, user="alice",
                                         reply_to="gce.results.alice.q1",
                                         user_endpoint_config={}, resource_specification={},
                                         max_payload_bytes=1000)
    th = parse_task(props.message_id, props.user_id, props.reply_to, props.headers)
    _name, conf, _stderr = Router(paths, config).templated_uep(privileges.current_target(), "{}", th)
    sent = json.dumps(conf.to_dict())  # what the UEP reads on its stdin
    template = UepConfig.from_dict(json.loads(sent)).template

    assert th.task_id == task_id
    assert template is not None and template.user_runtime.to_dict() == {
        "python_version": platform.python_version(), "gce_version": gce.__version__, "platform": platform.platform()}
    assert "secret" not in sent  # the template sees the parent config without the broker URL
    engine = render_engine(template)
    assert engine["label"] == f"{platform.python_version()}|{gce.__version__}|{platform.platform()}"
