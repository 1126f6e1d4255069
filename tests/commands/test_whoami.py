"""gce whoami: the broker identity the SDK uses, where it was set, and what the broker lets it do,
tried for real against the session's broker."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from gce.transport import urls


@pytest.fixture(scope="module")
def account(broker):
    """(the user's URL, the endpoint id the user may submit to)."""
    endpoint_id = str(uuid.uuid4())
    _, user_urls = broker.provision(endpoint_id, users=["whoami@uni.edu"])
    return user_urls["whoami@uni.edu"], endpoint_id


def lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines()]


def test_the_identity_from_the_environment_and_what_it_may_do(gce_bin, account):
    url, _ = account
    proc = gce_bin("whoami", env={"GCE_BROKER_URL": url})
    assert proc.returncode == 0, proc.stderr
    vhost = url.rsplit("/", 1)[1]
    assert lines(proc.stdout)[:7] == [
        "broker user: whoami@uni.edu",
        f"vhost: {vhost}",
        f"broker URL: {urls.redact(url)}",
        "set by: $GCE_BROKER_URL",
        "connect: yes",
        "declare its result queues: yes (gce.results.whoami@uni.edu.*)",
        "submit to: the broker's topic permission on gce.tasks decides; the SDK's settings name no endpoint "
        "(ask the broker's admin: gce broker definitions lists each user's endpoints)",
    ]
    assert ":" + url.split(":")[2].split("@")[0] + "@" not in proc.stdout  # the password is not shown


def test_the_identity_from_sdk_yaml_as_json(gce_bin, account, home: Path):
    url, _ = account
    sdk = home / "sdk.yaml"
    sdk.write_text(f"broker_url: {url}\n")
    sdk.chmod(0o600)
    proc = gce_bin("whoami", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data == {"user": "whoami@uni.edu", "vhost": url.rsplit("/", 1)[1], "url": urls.redact(url),
                    "set_by": str(sdk), "connect": True, "declare_result_queues": True, "submit_to": None,
                    "problem": None}


def test_a_wrong_password_is_refused_with_77(gce_bin, account):
    url, _ = account
    user, rest = url.split("//", 1)[1].split(":", 1)
    wrong = "amqp://" + user + ":not-the-password@" + rest.split("@", 1)[1]
    proc = gce_bin("whoami", env={"GCE_BROKER_URL": wrong})
    assert proc.returncode == 77, proc.stdout + proc.stderr
    assert "connect: no" in lines(proc.stdout)
    assert proc.stderr.startswith("error: the broker refused whoami@uni.edu: ")
    assert "not-the-password" not in proc.stdout + proc.stderr


def test_an_unreachable_broker_is_69(gce_bin):
    proc = gce_bin("whoami", env={"GCE_BROKER_URL": "amqp://bob:pw@127.0.0.1:1/gce"})
    assert proc.returncode == 69, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: cannot reach the broker at 127.0.0.1:1: ")


def test_no_broker_configured_is_78(gce_bin, home: Path):
    proc = gce_bin("whoami")
    assert proc.returncode == 78, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: the SDK has no broker: ")
    assert str(home / "sdk.yaml") in proc.stderr


def test_no_check_shows_the_identity_without_connecting(gce):
    result = gce("whoami", "--no-check", env={"GCE_BROKER_URL": "amqps://carol%40uni.edu:pw@127.0.0.1:1/"})
    assert result.exit_code == 0, result.stderr
    assert lines(result.stdout)[:6] == [
        "broker user: carol@uni.edu", "vhost: /", "broker URL: amqps://carol%40uni.edu:***@127.0.0.1:1/",
        "set by: $GCE_BROKER_URL", "connect: not checked", "declare its result queues: not checked"]
