"""gce/config/model.py: an invalid config.yaml is explained without quoting any secret in it.

Each config below plants the same password where an admin could put it by mistake; the
error must say what is wrong and where, and the password (or any piece of it) never.
"""

from __future__ import annotations

import json

import pytest

from gce.config import model
from gce.config.paths import endpoint_paths
from gce.errors import ConfigError

PASSWORD = "Pl4nted-s3cret"
PIECES = ("Pl4nted", "s3cret", "918273645")  # what must not show: the password, any half of it, a numeric one
ENGINE = "engine: {type: ThreadPoolEngine}\n"

# (config.yaml text, the error's why) -- "where" of each is config.yaml's path
PLANTED = [
    # the wrong type of broker.url, holding the password
    (f'broker: {{url: ["amqp://ep:{PASSWORD}@127.0.0.1/gce"]}}\n' + ENGINE,
     "broker.url: a list is not of type 'string'"),
    ("broker: {url: 918273645}\n" + ENGINE, "broker.url: a number is not of type 'string'"),
    (f"broker: {{url: {{password: {PASSWORD}}}}}\n" + ENGINE, "broker.url: a mapping is not of type 'string'"),
    (f'broker: "amqp://ep:{PASSWORD}@127.0.0.1/gce"\n' + ENGINE,
     "broker: 'amqp://ep:***@127.0.0.1/gce' is not of type 'object'"),
    # a malformed URL with a password
    (f'broker: {{url: "http://ep:{PASSWORD}@127.0.0.1/gce"}}\n' + ENGINE,
     "broker.url: 'http://ep:***@127.0.0.1/gce' does not match '^amqps?://'"),
    (f"broker: {{url: {PASSWORD}}}\n" + ENGINE, "broker.url: a string does not match '^amqps?://'"),
    ('broker: {url: "amqp://ep:Pl4nted/s3cret@127.0.0.1/gce"}\n' + ENGINE,
     "broker.url: its user name or password holds a '/', '?' or '#': percent-encode it (%2F, %3F, %23)"),
    (f'broker: {{url: "amqp://127.0.0.1:{PASSWORD}/gce"}}\n' + ENGINE,
     "broker.url: its port is not a number from 0 to 65535"),
    # a cluster's URL lists its nodes separated by commas: each is checked
    (f'broker: {{url: "amqps://ep:{PASSWORD}@n1:5671,n2:{PASSWORD}/gce"}}\n' + ENGINE,
     "broker.url: its port is not a number from 0 to 65535 (host 2 of the 2 it lists, separated by commas)"),
    (f'broker: {{url: "amqp://ep:{PASSWORD}@[::1/gce"}}\n' + ENGINE,
     "broker.url: it is not a URL gce can read: a '[' or ']' is out of place (percent-encode one in a password: "
     "%5B, %5D)"),
    (f'broker: {{url: "amqp://ep:{PASSWORD} x@127.0.0.1/gce"}}\n' + ENGINE,
     "broker.url: it contains a space or a control character (percent-encode them, e.g. %20)"),
    (f'broker: {{url: "amqp://ep@127.0.0.1/gce", management_url: "https://ep:{PASSWORD}@h:15672/ x"}}\n'
     + ENGINE, "broker.management_url: 'https://ep:***@h:15672/ x' does not match '^https?://[^/\\\\s]+[^\\\\s]*$'"),
    # an unknown key next to the URL
    (f'broker: {{url: "amqp://ep:{PASSWORD}@127.0.0.1/gce", passwd: {PASSWORD}}}\n' + ENGINE,
     "broker: Additional properties are not allowed ('passwd' was unexpected) "
     "(allowed keys: heartbeat, management_url, prefetch, queue_type, url)"),
    # the password under other keys, secret-looking or not
    (f'broker: {{url: "amqp://ep:{PASSWORD}@127.0.0.1/gce"}}\ndisplay_name: {{token: {PASSWORD}}}\n' + ENGINE,
     "display_name: a mapping is not of type 'string'"),
    (f'broker: {{url: "amqp://127.0.0.1/gce"}}\nengine: {{type: ThreadPoolEngine, max_workers: "password={PASSWORD}"}}\n',
     "engine.max_workers: a string is not of type 'integer'"),
    ('broker: {url: "amqp://127.0.0.1/gce"}\nengine: {type: HighThroughputEngine, max_workers: 2, '
     f'provider: {{type: LocalProvider, worker_init: "export SITE_TOKEN={PASSWORD}"}}}}\n',
     "engine.max_workers: this key is not allowed for this engine type"),
    ('broker: {url: "amqp://127.0.0.1/gce"}\nengine: {type: ThreadPoolEngine, '
     f'provider: {{type: LocalProvider, worker_init: "export SITE_TOKEN={PASSWORD}"}}}}\n',
     "engine.provider: this key is not allowed for this engine type"),
]

# (config.yaml text, the error's why) of YAML syntax errors on the line holding the password
PLANTED_YAML = [
    (f'broker:\n  url: "amqp://ep:{PASSWORD}@127.0.0.1/gce\n' + ENGINE,
     "YAML error at line 4, column 1: found unexpected end of stream"),
    (f"broker:\n  url: amqp://ep:{PASSWORD}@127.0.0.1/gce: x\n" + ENGINE,
     "YAML error at line 2, column 46: mapping values are not allowed here"),
    (f"broker:\n  url: *{PASSWORD}\n" + ENGINE, "YAML error at line 2, column 8: found undefined alias '***'"),
    (f"broker:\n  url: !{PASSWORD} x\n" + ENGINE,
     "YAML error at line 2, column 8: could not determine a constructor for the tag '***'"),
    (f"broker:\n  url: !{PASSWORD}!x y\n" + ENGINE, "YAML error at line 2, column 8: found undefined tag handle '***'"),
    (f'broker:\n  url: "amqp://ep:{PASSWORD}@127.0.0.1/gce" trailing\n' + ENGINE,
     "YAML error at line 2, column 49: expected <block end>, but found '<scalar>'"),
    (f"broker:\n  url: \x07{PASSWORD}\n" + ENGINE, "YAML error: a special character at position 15 is not allowed"),
    (f"broker:\n  url: {{password: {PASSWORD}\n" + ENGINE,
     "YAML error at line 3, column 7: expected ',' or '}', but got ':'"),
]


def _write(text: str):
    paths = endpoint_paths("planted")
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(text)
    paths.endpoint_json.write_text(json.dumps({"endpoint_id": "00000000-0000-4000-8000-0000000000aa"}))
    return paths


@pytest.mark.parametrize("text, why", PLANTED + PLANTED_YAML)
def test_config_errors_say_what_is_wrong_and_never_quote_the_password(gce_home, text, why):
    paths = _write(text)
    with pytest.raises(ConfigError) as err:
        model.load(paths)
    shown = f"{err.value}\n{err.value.hint}\n{err.value!r}"
    for piece in PIECES:
        assert piece not in shown
    assert err.value.why == why


def test_a_loaded_config_keeps_its_broker_url_out_of_its_repr(gce_home):
    paths = _write(f'broker: {{url: "amqp://ep:{PASSWORD}@127.0.0.1/gce"}}\n' + ENGINE)
    config = model.load(paths)
    assert config.broker_url == f"amqp://ep:{PASSWORD}@127.0.0.1/gce"
    assert PASSWORD not in repr(config)


@pytest.mark.parametrize("url", [
    "amqp://ep:p%40ss%2Fw0rd@broker.example.org:5671/gce?heartbeat=5",
    "amqps://broker.example.org/gce", "amqp://ep:@[::1]:5672/gce", "amqp://ep:pw@h",
    "amqps://ep:pw@n1.example.org:5671,n2.example.org:5671,n3.example.org:5671/gce"])
def test_usable_urls_pass(url):
    model.validate({"broker": {"url": url}, "engine": {"type": "ThreadPoolEngine"}}, "t")
