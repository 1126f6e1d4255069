"""gce/transport/urls.py: a URL is printed without any password in it, and a URL pika could not
use is refused with a reason that quotes none of it."""

from __future__ import annotations

import pytest

from gce.transport import urls


@pytest.mark.parametrize("url, redacted", [
    ("amqps://ep:s3cret@host:5671/gce", "amqps://ep:***@host:5671/gce"),
    ("amqp://ep:p@ss:w/rd@host/gce", "amqp://ep:***@host/gce"),
    ("amqp://host:5672/gce", "amqp://host:5672/gce"),
    ("amqp://[::1]:5672/gce", "amqp://[::1]:5672/gce"),
    # "USER:" or "@HOST" left out: the password stands where the port goes
    ("amqp://alice:s3cret/gce", "amqp://alice:***/gce"),
    # pika's TLS options in the query may carry a key's passphrase
    ("amqps://ep:pw@h/gce?ssl_options={'certfile':'/c.pem','keyfile':'/k.pem','password':'s3cret'}",
     "amqps://ep:***@h/gce?ssl_options={'certfile':'/c.pem','keyfile':'/k.pem','password':'***'}"),
    ("amqp://h/gce?heartbeat=30&token=s3cret", "amqp://h/gce?heartbeat=30&token=***"),
])
def test_redact(url, redacted):
    assert urls.redact(url) == redacted
    if "'" not in url:  # in a text, a URL ends at a quote
        assert urls.redact_all(f"connecting to {url} now") == f"connecting to {redacted} now"


@pytest.mark.parametrize("url, why", [
    ("amqp://ep:s3cret@h/gce", None),
    ("amqps://ep:p%2Fss@h:5671/gce?heartbeat=5", None),
    ("amqp://[::1]:5672/gce", None),
    ("http://ep:s3cret@h/gce", "it must start with amqp:// or amqps://"),
    ("amqp://ep:s3/cret@h/gce", "its user name or password holds a '/', '?' or '#': percent-encode it (%2F, %3F, %23)"),
    ("amqp://ep:s3#cret@h/gce", "its user name or password holds a '/', '?' or '#': percent-encode it (%2F, %3F, %23)"),
    ("amqp://h:s3cret/gce", "its port is not a number from 0 to 65535"),
    ("amqp://h:99999/gce", "its port is not a number from 0 to 65535"),
    ("amqp://ep:s3cret@[::1/gce", "it is not a URL gce can read: a '[' or ']' is out of place (percent-encode one "
                                  "in a password: %5B, %5D)"),
    ("amqp://ep:s3 cret@h/gce", "it contains a space or a control character (percent-encode them, e.g. %20)"),
    ("amqp:///gce", "it names no host"),
])
def test_problem_says_why_without_quoting(url, why):
    assert urls.problem(url) == why
    if why:
        assert "s3" not in why and "cret" not in why


def test_broker_user_of_an_unreadable_url():
    assert urls.broker_user("amqp://ali%40ce:s3cret@[::1/gce") == "ali@ce"
    assert urls.broker_user("amqp://h/gce") == "guest"


def test_a_port_followed_by_a_texts_punctuation_stays():
    text = "measured through http://127.0.0.1:42675), then (http://h:15672/api)."
    assert urls.redact_all(text) == text


@pytest.mark.parametrize("url, why", [
    ("amqp://alice@h/gce", "it names a user but no password"),
    ("amqp://alice%40uni.edu@h:5672/gce", "it names a user but no password"),
    ("amqp://alice:@h/gce", None),  # an empty password is a password
    ("amqp://alice:pw@h/gce", None),
    ("amqp://h/gce", None),  # no user: RabbitMQ's guest
])
def test_no_password(url, why):
    assert urls.no_password(url) == (None if why is None else
                                     "it names a user but no password: write amqp://USER:PASSWORD@HOST/VHOST "
                                     "(percent-encoded)")


# A cluster: one URL, its hosts separated by commas, sharing the account, the vhost and the options.
def test_a_cluster_url_is_one_url_per_host():
    assert urls.hosts("amqps://ep:s3cret@h1:5671,h2:5671,h3/gce?heartbeat=5") == [
        "amqps://ep:s3cret@h1:5671/gce?heartbeat=5", "amqps://ep:s3cret@h2:5671/gce?heartbeat=5",
        "amqps://ep:s3cret@h3/gce?heartbeat=5"]
    assert urls.hosts("amqp://h1,[::1]:5673/gce") == ["amqp://h1/gce", "amqp://[::1]:5673/gce"]
    assert urls.hosts("amqp://ep:a,b@h/gce") == ["amqp://ep:a,b@h/gce"]  # a comma in the password is no host
    assert urls.hosts("amqp://ep:pw@h:5672/gce") == ["amqp://ep:pw@h:5672/gce"]
    assert [urls.host_port(u) for u in urls.hosts("amqps://h1,h2:5000/gce")] == ["h1:5671", "h2:5000"]


@pytest.mark.parametrize("url, redacted", [
    ("amqps://ep:s3cret@h1:5671,h2:5671,h3:5671/gce", "amqps://ep:***@h1:5671,h2:5671,h3:5671/gce"),
    ("amqp://ep:s3,cr@t@h1,h2/gce", "amqp://ep:***@h1,h2/gce"),
    ("amqp://h1:5672,h2:5672/gce", "amqp://h1:5672,h2:5672/gce"),  # no password: nothing hidden
    ("amqp://h1:5672,[::1]:5673", "amqp://h1:5672,[::1]:5673"),
    ("amqp://alice:s3cret/gce", "amqp://alice:***/gce"),
])
def test_redact_a_cluster_url(url, redacted):
    assert urls.redact(url) == redacted
    assert urls.redact_all(f"connecting to {url} now") == f"connecting to {redacted} now"


@pytest.mark.parametrize("url, why", [
    ("amqps://ep:s3cret@h1:5671,h2:5671,h3:5671/gce", None),
    ("amqp://ep:s3cret@h1,,h3/gce", "it names no host (host 2 of the 3 it lists, separated by commas)"),
    ("amqp://ep:s3cret@h1:5672,h2:s3cret/gce",
     "its port is not a number from 0 to 65535 (host 2 of the 2 it lists, separated by commas)"),
])
def test_each_host_of_a_cluster_url_is_checked(url, why):
    assert urls.problem(url) == why
