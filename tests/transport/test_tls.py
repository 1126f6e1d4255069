"""Both links over TLS, end to end: an endpoint and an Executor reach the session's broker through
its amqps listener (a certificate of a CA of its own, trusted through SSL_CERT_FILE), run tasks and
carry a result of megabytes, which the TLS socket takes in pieces. The broker is asked whether the
connections really are TLS. Sites run amqps; every other test speaks plain amqp."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from gce.sdk import Executor
from gce.sdk.errors import BrokerUnavailable
from tests.endpoint import Endpoint


def tls_endpoint(broker, home: Path, user: str = "tls-user") -> Endpoint:
    """Endpoint "tls" (a process pool) and a submitter USER, provisioned; its URL amqps."""
    ep = Endpoint(broker, home, name="tls", engine="process", user=user)
    ep.set(broker={"url": broker.tls_url(ep.endpoint_url)})
    return ep


def gce(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The installed gce as a real process."""
    return subprocess.run([str(Path(sys.executable).parent / "gce"), *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def test_an_endpoint_and_an_executor_over_tls(broker, gce_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(broker.ca_file))  # the endpoint started below inherits it
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    ep = tls_endpoint(broker, gce_home)
    endpoint_id = ep.endpoint_id
    ep.start()
    try:
        with Executor(endpoint_id=endpoint_id, broker_url=broker.tls_url(ep.user_url)) as ex:
            futures = [ex.submit(pow, i, 2) for i in range(200)]
            assert [f.result(timeout=60) for f in futures] == [i * i for i in range(200)]
            assert ex.submit(bytes, 3_000_000).result(timeout=60) == bytes(3_000_000)
            connections = broker.ctl("-q", "list_connections", "user", "ssl").stdout
        rows = diagnose()  # the way to the broker over TLS, as support staff check it
    finally:
        ep.stop()
    mine = [line.split() for line in connections.splitlines() if endpoint_id in line or "tls-user" in line]
    assert {user for user, _ in mine} == {f"ep-{endpoint_id}", "tls-user"}, connections
    assert all(tls == "true" for _, tls in mine), connections
    assert rows["broker tls"]["status"] == "PASS", rows["broker tls"]
    assert rows["broker tls"]["reason"].startswith("TLSv1.3, certificate for localhost valid until ")
    assert {c: rows[c]["status"] for c in ("broker login", "broker queue", "broker publish")} == \
        dict.fromkeys(("broker login", "broker queue", "broker publish"), "PASS"), rows


def test_a_certificate_the_submitter_does_not_trust_is_a_clear_error(broker, gce_home: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the CA, the Executor refuses the broker's certificate and says so: not a hang, not a
    bare SSL error, and never the password."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    endpoint_id = str(uuid.uuid4())
    _, users = broker.provision(endpoint_id, users=["tls-stranger"])
    url = broker.tls_url(users["tls-stranger"])
    with pytest.raises(BrokerUnavailable) as e:
        Executor(endpoint_id=endpoint_id, broker_url=url)
    said = str(e.value)
    assert "the broker's TLS certificate is not trusted here (self-signed certificate in certificate chain): " \
           "give this machine the CA certificate that signed it" in said, said
    assert "SSL_CERT_FILE" in said
    assert url.split(":")[2].split("@")[0] not in said  # the password


def test_an_endpoint_that_does_not_trust_the_certificate_fails_its_start_saying_what_to_do(
        broker, gce_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    tls_endpoint(broker, gce_home)
    run = gce("start", "tls", "--detach", "--timeout", "30", NO_COLOR="1")
    lines = run.stderr.splitlines()
    assert run.returncode == 69, run.stderr
    assert lines[0].startswith("error: endpoint 'tls' failed to start: cannot connect to the broker at amqps://")
    assert "the broker's TLS certificate is not trusted here (self-signed certificate in certificate chain)" \
        in lines[0]
    assert lines[-1].startswith("hint: the endpoint trusts the CAs of the system's store, or of SSL_CERT_FILE")


def test_amqps_to_a_plain_port_says_so(broker, gce_home: Path) -> None:
    endpoint_id = str(uuid.uuid4())
    _, users = broker.provision(endpoint_id, users=["tls-plain"])
    url = broker.tls_url(users["tls-plain"]).replace(f":{broker.tls_port}/", f":{broker.port}/")
    with pytest.raises(BrokerUnavailable, match=r"TLS with the broker failed: WRONG_VERSION_NUMBER \(is the port "
                                                r"one where the broker speaks TLS, 5671 by default"):
        Executor(endpoint_id=endpoint_id, broker_url=url)


def diagnose() -> dict[str, dict]:
    """`gce diagnostic --endpoint tls --json`, as a real process: its rows by check."""
    run = gce("diagnostic", "--endpoint", "tls", "--json")
    return {row["check"]: row for row in json.loads(run.stdout) if row.get("endpoint") == "tls"}


def test_the_diagnostic_without_the_ca_fails_the_tls_check_saying_why(broker, gce_home: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    tls_endpoint(broker, gce_home)
    rows = diagnose()
    assert (rows["broker tls"]["status"], rows["broker tls"]["reason"]) == \
        ("FAIL", "the broker's certificate is not trusted: self-signed certificate in certificate chain")
    assert rows["broker login"]["status"] == "SKIP"


@pytest.mark.parametrize("given, said", [
    ("missing.pem", "which cannot be read (No such file or directory)"),
    ("key.txt", "which holds no PEM certificate"),
])
def test_an_ssl_cert_file_that_gives_no_ca_is_named(broker, gce_home: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch, given: str, said: str) -> None:
    """OpenSSL skips an SSL_CERT_FILE it cannot use without a word: the error says which it is."""
    (tmp_path / "key.txt").write_text("not a certificate\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / given))
    endpoint_id = str(uuid.uuid4())
    _, users = broker.provision(endpoint_id, users=["tls-misled"])
    with pytest.raises(BrokerUnavailable) as e:
        Executor(endpoint_id=endpoint_id, broker_url=broker.tls_url(users["tls-misled"]))
    assert str(e.value).endswith(f"; SSL_CERT_FILE is set to {tmp_path / given}, {said}"), str(e.value)
