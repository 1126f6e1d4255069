"""Whether the config a user endpoint was made from changed: config.yaml's engine section for a
personal endpoint, the user config template and schema for a multi-user one (real files)."""

from __future__ import annotations

import json

import yaml

from gce.config import model
from gce.config.paths import endpoint_paths
from gce.daemon import freshness

ENGINE = {"type": "HighThroughputEngine", "provider": {"type": "LocalProvider", "worker_init": "exit 1"}}


def _personal(gce_home):
    paths = endpoint_paths("fr")
    paths.config_dir.mkdir(parents=True, mode=0o700)
    paths.config_file.write_text(yaml.safe_dump({"broker": {"url": "amqp://u:p@localhost/gce"}, "engine": ENGINE}))
    paths.endpoint_json.write_text(json.dumps({"endpoint_id": "6f1c1f0e-0000-4000-8000-000000000001"}))
    return paths, model.load(paths)


def test_a_personal_endpoint_compares_the_engine_section_only(gce_home):
    paths, config = _personal(gce_home)
    watch = freshness.Watch(paths, config)
    made = freshness.started_from(config, config.engine)
    assert watch.changed("default", made) is None
    data = yaml.safe_load(paths.config_file.read_text())
    data["display_name"] = "another name"  # not what the user endpoint is made from
    paths.config_file.write_text(yaml.safe_dump(data))
    assert watch.changed("default", made) is None
    data["engine"]["provider"]["worker_init"] = "module load python"
    paths.config_file.write_text(yaml.safe_dump(data))
    digest, engine = watch.changed("default", made)
    assert engine == data["engine"] and digest == freshness.engine_digest(data["engine"]) != made
    assert watch.changed("default", made) is None  # the files did not change since this look


def test_a_config_yaml_that_is_invalid_now_changes_nothing(gce_home):
    paths, config = _personal(gce_home)
    made = freshness.started_from(config, config.engine)
    paths.config_file.write_text("engine: [not, a, mapping\n")
    assert freshness.Watch(paths, config).changed("default", made) is None


def test_a_multi_user_endpoint_compares_the_template_and_the_schema(gce_home, tmp_path):
    template, schema = tmp_path / "t.yaml.j2", tmp_path / "s.json"
    template.write_text("engine: {type: ThreadPoolEngine}\n")
    schema.write_text("{}")
    config = model.EndpointConfig(name="mu", endpoint_id="e", broker_url="amqp://x", engine={}, multi_user=True,
                                  user_config_template_path=str(template), user_config_schema_path=str(schema))
    watch = freshness.Watch(endpoint_paths("mu"), config)
    made = freshness.started_from(config)
    assert made is not None and watch.changed("alice/1", made) is None
    schema.write_text('{"type": "object"}')
    digest, engine = watch.changed("alice/1", made)
    assert engine is None and digest != made
    template.unlink()
    assert freshness.template_digest(config) is None and watch.changed("alice/1", digest) is None
