"""gce diagnostic: verdicts against a real endpoint and a real broker, JSON shape, and a bundle
that carries no secret.

Endpoints that need no broker point at a port where nothing listens, so the tests never
depend on a broker that happens to run on this machine.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import stat
import tarfile
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gce.cli import app
from gce.config.paths import endpoint_paths
from tests.daemon.conftest import make_endpoint  # noqa: F401  (a fixture)

KEYS = {"check", "endpoint", "status", "reason", "hint", "details"}
STATUSES = {"PASS", "WARN", "FAIL", "SKIP"}
HOST_CHECKS = ["gce version", "python version", "parsl version", "pika version", "os and host"]
ENDPOINT_CHECKS = ["config", "files", "disk space", "process", "control socket", "spool", "audit", "uep python",
                   "blocks",
                   "systemd unit", "broker dns", "broker tcp", "broker tls", "broker login", "broker queue",
                   "broker publish", "clock skew",
                   "identity mapping", "user template", "log"]


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def diagnose(*args: str):
    """Run gce diagnostic in-process; returns (result, {(endpoint, check): row} of --json, or None)."""
    result = CliRunner().invoke(app, ["diagnostic", *args])
    rows = None
    if "--json" in args:
        rows = {(r["endpoint"], r["check"]): r for r in json.loads(result.stdout)}
    return result, rows


def write_endpoint(name: str, config: dict | str, endpoint_id: str = "00000000-0000-4000-8000-000000000001"):
    paths = endpoint_paths(name)
    paths.config_dir.mkdir(parents=True, mode=0o700)
    text = config if isinstance(config, str) else yaml.safe_dump(config)
    paths.config_file.write_text(text)
    paths.config_file.chmod(0o600)
    paths.endpoint_json.write_text(json.dumps({"endpoint_id": endpoint_id}))
    return paths


def unreachable(name: str, **extra) -> Path:
    url = f"amqp://ep-{name}:pw-{name}-123@127.0.0.1:{unused_port()}/v"
    return write_endpoint(name, {"broker": {"url": url}, "engine": {"type": "ThreadPoolEngine", "max_workers": 1},
                                 **extra})


# -- against a real endpoint and broker -----------------------------------------------------------

@pytest.mark.broker
def test_a_healthy_running_endpoint_passes(make_endpoint):  # noqa: F811
    ep = make_endpoint(name="healthy")
    nothing_there = f"http://127.0.0.1:{unused_port()}"  # not whatever broker may run on this machine
    ep.set(broker={"url": ep.endpoint_url, "management_url": nothing_there})
    ep.start()
    started = time.monotonic()
    result, rows = diagnose("--endpoint", "healthy", "--json")
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.stdout
    assert [c for (e, c) in rows if e is None] == HOST_CHECKS
    assert [c for (e, c) in rows if e == "healthy"] == ENDPOINT_CHECKS
    verdicts = {c: r["status"] for (e, c), r in rows.items() if e == "healthy"}
    # Checks that do not apply here: no systemd in the test machine, a local broker without TLS,
    # no broker clock to compare with, not a multi-user endpoint.
    not_applicable = {"systemd unit", "broker tls", "clock skew", "identity mapping", "user template"}
    assert {c: s for c, s in verdicts.items() if c not in not_applicable} == {
        c: "PASS" for c in ENDPOINT_CHECKS if c not in not_applicable}
    assert {verdicts[c] for c in not_applicable} == {"SKIP"}
    assert rows[("healthy", "broker queue")]["details"]["consumers"] >= 1
    user = f"ep-{ep.endpoint_id}"
    assert rows[("healthy", "broker queue")]["reason"].endswith(f"; {user!r} may consume from it")
    assert rows[("healthy", "broker publish")]["reason"] == f"{user!r} may publish to exchange gce.results (confirmed)"
    assert rows[("healthy", "clock skew")]["reason"].startswith(
        f"not measured: the broker's management API at {nothing_there} does not answer")
    assert rows[("healthy", "uep python")]["reason"] == f"default: Python {platform.python_version()}"
    assert rows[("healthy", "broker login")]["details"]["user"] == f"ep-{ep.endpoint_id}"
    assert elapsed < 10


@pytest.mark.broker
def test_a_wrong_broker_password_fails_the_login_check(make_endpoint):  # noqa: F811
    ep = make_endpoint(name="wrongpw")
    right = yaml.safe_load(ep.paths.config_file.read_text())["broker"]["url"]
    wrong = re.sub(r":[^:@/]+@", ":Not-The-Password-42@", right)
    ep.set(broker={"url": wrong})
    result, rows = diagnose("--endpoint", "wrongpw", "--json")
    assert result.exit_code == 1
    login = rows[("wrongpw", "broker login")]
    assert login["status"] == "FAIL"
    assert f"'ep-{ep.endpoint_id}'" in login["reason"] and "refused" in login["reason"]
    assert rows[("wrongpw", "broker tcp")]["status"] == "PASS"
    assert rows[("wrongpw", "broker queue")]["status"] == "SKIP"
    assert "Not-The-Password-42" not in result.stdout


@pytest.mark.broker
def test_the_text_report_of_a_failed_login(make_endpoint):  # noqa: F811
    ep = make_endpoint(name="textpw")
    url = yaml.safe_load(ep.paths.config_file.read_text())["broker"]["url"]
    ep.set(broker={"url": re.sub(r":[^:@/]+@", ":Wrong-Again-77@", url)})
    result, _ = diagnose("--endpoint", "textpw")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "this host" and "endpoint textpw" in lines
    failed = [ln for ln in lines if ln.startswith("  FAIL  broker login")]
    assert len(failed) == 1 and "refused the login of user" in failed[0]
    assert lines[lines.index(failed[0]) + 1].strip().startswith("hint: check the password in broker.url")
    assert re.fullmatch(r"\d+ passed, \d+ warnings?, 1 failed, \d+ skipped", lines[-1])
    assert "Wrong-Again-77" not in result.stdout


# -- what the endpoint's broker account may do ----------------------------------------------------

def _vhost(url: str) -> str:
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(url).path[1:])


@pytest.fixture
def idle_endpoint(broker, make_endpoint):  # noqa: F811
    """make(name, read=True, write=True): an endpoint provisioned but not started, whose task queue
    the broker's admin declared (as the endpoint would), and whose account loses the read or the
    write permission on request. Returns (endpoint, an admin channel)."""
    import pika

    conns = []

    def make(name: str, read: bool = True, write: bool = True):
        from gce.transport import names, provision

        ep = make_endpoint(name=name)
        vhost = _vhost(ep.endpoint_url)
        conn = pika.BlockingConnection(pika.URLParameters(broker.admin_url_for(vhost)))
        conns.append(conn)
        ch = conn.channel()
        ch.queue_declare(names.endpoint_task_queue(ep.endpoint_id), durable=True,
                         arguments={"x-queue-type": "classic"})
        if not (read and write):
            perms, _ = provision.endpoint_permissions(f"ep-{ep.endpoint_id}", ep.endpoint_id)
            broker.ctl("set_permissions", "-p", vhost, perms["user"], perms["configure"],
                       perms["write"] if write else "^$", perms["read"] if read else "^$")
        ep.set(broker={"url": ep.endpoint_url, "management_url": f"http://127.0.0.1:{unused_port()}"})
        return ep, ch

    yield make
    for conn in conns:
        conn.close()


@pytest.mark.broker
@pytest.mark.parametrize("missing, check, other, refused", [
    ("read", "broker queue", "broker publish", "the read permission on queue gce.ep.{id}.tasks: it cannot consume "
     "its tasks"),
    ("write", "broker publish", "broker queue", "the write permission on exchange gce.results: it cannot send "
     "results"),
])
def test_an_account_without_a_permission_fails_the_check_that_needs_it(idle_endpoint, missing, check, other, refused):
    ep, _ = idle_endpoint(f"no{missing}", read=missing != "read", write=missing != "write")
    result, rows = diagnose("--endpoint", f"no{missing}", "--json")
    assert result.exit_code == 1
    row = rows[(f"no{missing}", check)]
    assert row["status"] == "FAIL"
    assert row["reason"].startswith(f"user 'ep-{ep.endpoint_id}' lacks {refused.format(id=ep.endpoint_id)} "
                                    "(ACCESS_REFUSED - ")
    assert row["hint"] == "the endpoint's broker account lacks it: gce broker provision --endpoint NAME"
    assert rows[(f"no{missing}", other)]["status"] == "PASS"  # a refusal closes only its channel


@pytest.mark.broker
def test_the_read_probe_leaves_waiting_tasks_in_the_queue(idle_endpoint):
    import pika

    ep, admin = idle_endpoint("waiting")
    queue = f"gce.ep.{ep.endpoint_id}.tasks"
    for n in range(3):
        admin.basic_publish("", queue, f"task {n}".encode(), pika.BasicProperties(delivery_mode=2))
    _, rows = diagnose("--endpoint", "waiting", "--json")
    check = rows[("waiting", "broker queue")]
    assert check["status"] == "PASS"
    assert check["reason"] == f"queue {queue}: 3 tasks waiting, 0 consumers; 'ep-{ep.endpoint_id}' may consume from it"
    # The probe consumer was cancelled and its channel closed: every task is back, in order.
    got = [admin.basic_get(queue, auto_ack=True) for _ in range(4)]
    assert [body for _, _, body in got[:3]] == [b"task 0", b"task 1", b"task 2"] and got[3] == (None, None, None)


@pytest.mark.broker
def test_a_queue_held_by_an_exclusive_consumer_counts_as_consumed(idle_endpoint):
    ep, admin = idle_endpoint("held")
    admin.basic_consume(f"gce.ep.{ep.endpoint_id}.tasks", lambda *_: None, exclusive=True)
    _, rows = diagnose("--endpoint", "held", "--json")
    check = rows[("held", "broker queue")]
    # Not started here, so whoever holds the queue is not this host's endpoint.
    assert check["status"] == "WARN"
    assert check["reason"].endswith("1 consumer; another connection consumes it exclusively although the endpoint "
                                    "does not run here")


def _frames_until_channel_open(data: bytes) -> int | None:
    """The offset of the first channel.open method frame in DATA (client to broker, after the
    8-byte protocol header), or None."""
    pos = 8
    while pos + 7 <= len(data):
        kind, size = data[pos], int.from_bytes(data[pos + 3:pos + 7], "big")
        payload = data[pos + 7:pos + 7 + size]
        if kind == 1 and payload[:4] == b"\x00\x14\x00\x0a":  # class 20 (channel), method 10 (open)
            return pos
        pos += 7 + size + 1
    return None


@pytest.fixture
def hang_after_login(broker):
    """A TCP proxy to the session broker that forwards the AMQP login, then nothing the client
    sends from its first channel.open on: a broker that stopped answering. Returns its port."""
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    socks = [server]

    def pump(src, dst, watch: bool):
        seen = b""
        try:
            while not stop.is_set():
                data = src.recv(65536)
                if not data:
                    return
                if watch:
                    seen += data
                    cut = _frames_until_channel_open(seen)
                    if cut is not None:
                        dst.sendall(data[:len(data) - (len(seen) - cut)])
                        stop.wait()  # swallow everything from here on
                        return
                dst.sendall(data)
        except OSError:
            pass

    def serve():
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", broker.port))
            socks.extend([client, upstream])
            threading.Thread(target=pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client, False), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    stop.set()
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


@pytest.mark.broker
def test_a_broker_that_hangs_after_the_login_fails_within_the_time_limit(make_endpoint, hang_after_login):  # noqa: F811
    ep = make_endpoint(name="hung")
    url = re.sub(r"@127\.0\.0\.1:\d+/", f"@127.0.0.1:{hang_after_login}/", ep.endpoint_url)
    ep.set(broker={"url": url, "management_url": f"http://127.0.0.1:{unused_port()}"})
    started = time.monotonic()
    result, rows = diagnose("--endpoint", "hung", "--json")
    elapsed = time.monotonic() - started
    assert rows[("hung", "broker login")]["status"] == "PASS"
    queue = rows[("hung", "broker queue")]
    assert (queue["status"], queue["reason"]) == ("FAIL", "the broker stopped answering: no reply within 5 s")
    assert rows[("hung", "broker publish")]["reason"] == "the broker stopped answering"
    assert result.exit_code == 1
    # bounded by the 5 s time limit, not hung (the rest of the run is slack for a loaded machine)
    assert elapsed < 5 + 10


# -- the clock skew check ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def management_broker(tmp_path_factory):
    """A broker of its own with the management plugin (it slows boot and shutdown: only here)."""
    from tests.broker import BrokerMissing, PrivateBroker

    b = PrivateBroker(tmp_path_factory.mktemp("rabbitmq-management"), management=True)
    try:
        try:
            b.start()
        except BrokerMissing as e:
            pytest.fail(str(e), pytrace=False)
        yield b
    finally:
        b.shutdown()


@pytest.mark.broker
def test_the_clock_of_a_broker_with_its_management_api_is_compared(home, management_broker):
    import uuid

    endpoint_id = str(uuid.uuid4())
    url, _ = management_broker.provision(endpoint_id)
    mgmt = f"http://127.0.0.1:{management_broker.management_port}"
    write_endpoint("timed", {"broker": {"url": url, "management_url": mgmt},
                             "engine": {"type": "ThreadPoolEngine", "max_workers": 1}}, endpoint_id)
    _, rows = diagnose("--endpoint", "timed", "--json")
    clock = rows[("timed", "clock skew")]
    assert clock["status"] == "PASS", clock
    assert re.fullmatch(rf"this host's clock and the broker host's agree within 2 s \([+-]\d+\.\d s, measured "
                        rf"through {re.escape(mgmt)}\)", clock["reason"])
    assert abs(clock["details"]["skew_seconds"]) <= 2


@pytest.fixture
def skewed_http():
    """A small HTTP server on localhost whose Date header is off by the given seconds: its URL."""
    import email.utils
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    servers = []

    def start(offset: float) -> str:
        class Handler(BaseHTTPRequestHandler):
            def date_time_string(self, timestamp=None):
                return email.utils.formatdate(time.time() + offset, usegmt=True)

            def do_GET(self):
                self.send_response(401)  # what the management API answers without credentials
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("offset, status, says", [
    (-3600, "WARN", "this host's clock is 3600.0 s ahead of the broker host's"),
    (90, "WARN", "this host's clock is 90.0 s behind the broker host's"),
    (0, "PASS", "this host's clock and the broker host's agree within 2 s"),
])
def test_a_skewed_broker_clock_warns_by_how_much(home, skewed_http, offset, status, says):
    url = skewed_http(offset)
    unreachable("skewed", broker={"url": f"amqp://u:p@127.0.0.1:{unused_port()}/v", "management_url": url})
    _, rows = diagnose("--endpoint", "skewed", "--json")
    clock = rows[("skewed", "clock skew")]
    assert clock["status"] == status
    # The Date header drops the fraction of a second: the estimate is within half a second.
    assert re.sub(r"\d+\.\d s", lambda m: f"{round(float(m.group()[:-2])):.1f} s", clock["reason"]).startswith(says)
    if status == "WARN":
        assert clock["hint"].startswith("keep the clocks in sync with NTP: systemctl status chrony")


def test_a_management_port_that_does_not_answer_skips_the_clock_check_in_time(home):
    # A listening socket that never accepts: the HTTP request waits for nothing.
    silent = socket.create_server(("127.0.0.1", 0), backlog=0)
    try:
        unreachable("noclock", broker={"url": f"amqp://u:p@127.0.0.1:{unused_port()}/v",
                                       "management_url": f"http://127.0.0.1:{silent.getsockname()[1]}"})
        started = time.monotonic()
        _, rows = diagnose("--endpoint", "noclock", "--json")
        assert time.monotonic() - started < 5
    finally:
        silent.close()
    clock = rows[("noclock", "clock skew")]
    assert clock["status"] == "SKIP"
    assert clock["reason"].startswith("not measured: the broker's management API at http://127.0.0.1:")
    assert clock["hint"] == "enable the rabbitmq_management plugin, or set broker.management_url in config.yaml"


@pytest.mark.parametrize("broker_url, override, expected", [
    ("amqp://u:p@broker.example:5672/gce", None, "http://broker.example:15672"),
    ("amqps://u:p@broker.example/gce", None, "https://broker.example:15671"),
    ("amqps://u:p@[::1]:5671/gce", None, "https://[::1]:15671"),
    ("amqps://u:p@broker.example/gce", "https://mq.example/rabbitmq", "https://mq.example/rabbitmq"),
])
def test_where_the_management_api_is_looked_for(broker_url, override, expected):
    from gce.commands.diagnostic.clock import management_url

    assert management_url(broker_url, override) == expected


@pytest.mark.parametrize("server_date, sent, received, skew", [
    ("Thu, 01 Jan 2026 10:00:00 GMT", 1767261600.0, 1767261601.0, 0.0),  # the header's second, plus half
    ("Thu, 01 Jan 2026 10:01:00 GMT", 1767261600.0, 1767261600.2, 60.4),
    ("Thu, 01 Jan 2026 09:59:00 GMT", 1767261600.0, 1767261600.0, -59.5),
])
def test_skew_is_the_server_time_against_the_midpoint_of_the_request(server_date, sent, received, skew):
    from gce.commands.diagnostic.clock import skew_of, verdict

    assert skew_of(server_date, sent, received) == pytest.approx(skew)
    assert verdict(skew, received - sent, "http://b:15672").status == ("PASS" if abs(skew) <= 2.5 else "WARN")


def test_the_config_refuses_a_management_url_that_is_not_http(home):
    unreachable("badmgmt", broker={"url": "amqp://u:p@127.0.0.1:1/v", "management_url": "ftp://b:15672"})
    _, rows = diagnose("--endpoint", "badmgmt", "--json")
    config = rows[("badmgmt", "config")]
    assert config["status"] == "FAIL" and "broker.management_url" in config["reason"]


# -- disk space ------------------------------------------------------------------------------------

@pytest.mark.parametrize("free, status, reason", [
    ({"/var/lib/gce/a": 500 << 20, "/var/log/gce": 300 << 20}, "PASS", "300 MiB free for state and logs"),
    ({"/var/lib/gce/a": 500 << 20, "/var/log/gce": 99 << 20}, "WARN", "low on space: /var/log/gce: 99 MiB free"),
    ({"/var/lib/gce/a": 100 << 20}, "PASS", "100 MiB free for state and logs"),  # the threshold is enough
    ({}, "SKIP", "the state and log directories do not exist"),
])
def test_the_disk_space_threshold(free, status, reason):
    from gce.commands.diagnostic.checks import MIN_FREE_BYTES, disk_verdict

    assert MIN_FREE_BYTES == 100 << 20
    got = disk_verdict(free)
    assert (got.status, got.reason) == (status, reason)
    if status == "WARN":
        assert got.hint == "the spool and logs need room: free some space on that file system"


# -- without a broker ------------------------------------------------------------------------------

def test_nothing_listening_fails_the_tcp_check_quickly(home):
    unreachable("closed")
    started = time.monotonic()
    result, rows = diagnose("--endpoint", "closed", "--json")
    assert time.monotonic() - started < 6
    assert result.exit_code == 1
    tcp = rows[("closed", "broker tcp")]
    assert tcp["status"] == "FAIL" and "Connection refused" in tcp["reason"]
    assert rows[("closed", "broker dns")]["status"] == "PASS"
    for later in ("broker tls", "broker login", "broker queue", "broker publish"):
        assert rows[("closed", later)]["status"] == "SKIP"
        assert rows[("closed", later)]["reason"].startswith("no TCP connection to 127.0.0.1 port")


def test_a_port_that_never_answers_fails_the_tcp_check_within_its_time_limit(home):
    # A listening socket whose accept queue is full: the kernel drops further SYNs, so a
    # connect neither succeeds nor is refused (a firewall that drops packets looks the same).
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    filler = [socket.socket() for _ in range(2)]
    try:
        for s in filler:
            s.settimeout(0.5)
            try:
                s.connect(("127.0.0.1", port))
            except socket.timeout:
                pass  # the queue was already full: what we want
        write_endpoint("silent", {"broker": {"url": f"amqp://u:p@127.0.0.1:{port}/v"},
                                  "engine": {"type": "ThreadPoolEngine", "max_workers": 1}})
        started = time.monotonic()
        _, rows = diagnose("--endpoint", "silent", "--json")
        elapsed = time.monotonic() - started
    finally:
        for s in filler:
            s.close()
        server.close()
    tcp = rows[("silent", "broker tcp")]
    assert tcp["status"] == "FAIL"
    assert tcp["reason"] == f"cannot connect to 127.0.0.1 port {port}: 127.0.0.1: no answer within 5.0 s"
    # it waited the whole 5 s, and no longer than that plus slack for the other checks on a loaded machine
    assert 4.9 < elapsed < 5 + 10


def test_a_host_that_does_not_resolve_fails_the_dns_check(home):
    write_endpoint("nowhere", {"broker": {"url": "amqp://u:p@no-such-host.invalid:5672/v"},
                               "engine": {"type": "ThreadPoolEngine", "max_workers": 1}})
    started = time.monotonic()
    _, rows = diagnose("--endpoint", "nowhere", "--json")
    assert time.monotonic() - started < 6
    dns = rows[("nowhere", "broker dns")]
    assert dns["status"] == "FAIL"
    assert dns["reason"].startswith("cannot resolve the broker's host 'no-such-host.invalid'")
    assert rows[("nowhere", "broker tcp")]["reason"] == "the broker's host name does not resolve"


@pytest.fixture
def tls_listener(tmp_path):
    """A TLS server on localhost (not AMQP) with a fresh self-signed certificate: (port, cert file, days)."""
    import ssl
    import subprocess
    import threading

    made = []

    def start(days: int):
        cert, key = tmp_path / f"cert{days}.pem", tmp_path / f"key{days}.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost", "-days", str(days), "-keyout", str(key),
                        "-out", str(cert)], check=True, capture_output=True, timeout=60)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server = socket.create_server(("127.0.0.1", 0))
        server.settimeout(0.2)
        done = threading.Event()

        def serve():
            while not done.is_set():
                try:
                    conn, _ = server.accept()
                except socket.timeout:
                    continue
                try:
                    with context.wrap_socket(conn, server_side=True) as tls:
                        tls.settimeout(2)
                        tls.recv(64)  # an AMQP client says hello; this server then hangs up
                except (OSError, ssl.SSLError):
                    pass  # the client refused the certificate, or left
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        made.append((done, thread, server))
        return server.getsockname()[1], cert

    yield start
    for done, thread, server in made:
        done.set()
        thread.join()
        server.close()


def test_an_untrusted_certificate_fails_the_tls_check(home, tls_listener):
    port, _cert = tls_listener(days=30)
    write_endpoint("selfsigned", {"broker": {"url": f"amqps://u:p@localhost:{port}/v"},
                                  "engine": {"type": "ThreadPoolEngine", "max_workers": 1}})
    result, rows = diagnose("--endpoint", "selfsigned", "--json")
    assert result.exit_code == 1
    tls = rows[("selfsigned", "broker tls")]
    assert tls["status"] == "FAIL"
    assert tls["reason"] == "the broker's certificate is not trusted: self-signed certificate"
    assert rows[("selfsigned", "broker login")]["reason"] == "the TLS handshake failed"


@pytest.mark.parametrize("days, status", [(400, "PASS"), (3, "WARN")])
def test_a_trusted_certificate_passes_and_warns_before_it_expires(home, tls_listener, monkeypatch, days, status):
    port, cert = tls_listener(days=days)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # OpenSSL's default trust store: this certificate only
    write_endpoint("trusted", {"broker": {"url": f"amqps://u:p@localhost:{port}/v"},
                               "engine": {"type": "ThreadPoolEngine", "max_workers": 1}})
    started = time.monotonic()
    _, rows = diagnose("--endpoint", "trusted", "--json")
    tls = rows[("trusted", "broker tls")]
    assert tls["status"] == status
    assert re.match(r"TLSv1\.[23], certificate for localhost valid until ", tls["reason"])
    assert tls["details"]["days_left"] in (days - 1, days)
    # not an AMQP server: the login fails, within its time limit
    login = rows[("trusted", "broker login")]
    assert login["status"] == "FAIL"
    assert login["reason"].endswith("as 'u': the server hung up during the AMQP handshake")
    assert time.monotonic() - started < 12


def test_an_invalid_config_fails_naming_the_key(home):
    write_endpoint("bad", {"broker": {"url": "amqp://u:Secret-Value-9@127.0.0.1:1/v"},
                           "engine": {"type": "ThreadPoolEngine", "max_workers": 0}})
    result, rows = diagnose("--endpoint", "bad", "--json")
    assert result.exit_code == 1
    config = rows[("bad", "config")]
    assert config["status"] == "FAIL"
    assert "engine.max_workers: 0 is less than the minimum of 1" in config["reason"]
    assert config["hint"].startswith("fix ")
    assert {rows[("bad", c)]["status"] for c in ("broker dns", "broker login", "identity mapping")} == {"SKIP"}
    assert "Secret-Value-9" not in result.stdout


def test_json_is_a_list_of_checks(home):
    unreachable("one")
    result = CliRunner().invoke(app, ["diagnostic", "--json"])
    data = json.loads(result.stdout)
    assert isinstance(data, list) and data
    for row in data:
        assert set(row) == KEYS
        assert row["status"] in STATUSES
        assert isinstance(row["reason"], str) and row["reason"]
        assert isinstance(row["hint"], str) and isinstance(row["details"], dict)
        assert row["endpoint"] in (None, "one")
    assert [r["check"] for r in data] == HOST_CHECKS + ENDPOINT_CHECKS
    assert result.exit_code == 1  # the tcp check failed
    assert result.stderr == ""


def test_warnings_alone_exit_zero(home):
    result, rows = diagnose("--json")
    assert rows[(None, "endpoints")]["status"] == "WARN"
    assert result.exit_code == 0


def test_endpoint_limits_the_checks_to_one_endpoint(home):
    unreachable("alpha")
    unreachable("beta")
    _, everything = diagnose("--json")
    assert {e for e, _ in everything} == {None, "alpha", "beta"}
    _, limited = diagnose("--endpoint", "beta", "--json")
    assert {e for e, _ in limited} == {None, "beta"}
    result, _ = diagnose("--endpoint", "gamma")
    assert result.exit_code == 78
    assert result.stderr.startswith("error: no endpoint named 'gamma'")


def test_files_check_fails_on_a_config_others_can_read(home):
    paths = unreachable("loose")
    paths.config_file.chmod(0o644)
    paths.config_dir.chmod(0o777)
    _, rows = diagnose("--endpoint", "loose", "--json")
    files = rows[("loose", "files")]
    assert files["status"] == "FAIL"
    assert f"others may write to {paths.config_dir} (mode 0777)" in files["reason"]
    assert "holds the broker password and others may read it (mode 0644)" in files["reason"]


def test_a_stopped_endpoint_warns_and_a_log_with_errors_shows_it(home):
    paths = unreachable("quiet")
    paths.log_file.write_text("2026-01-01 10:00:00,000 INFO manager[7] gce.daemon: starting\n"
                              "2026-01-01 10:00:01,000 ERROR manager[7] gce.daemon: start-up failed: boom\n")
    result, rows = diagnose("--endpoint", "quiet", "--json")
    assert rows[("quiet", "process")]["status"] == "WARN"
    assert rows[("quiet", "process")]["hint"] == "gce start quiet --detach"
    assert rows[("quiet", "control socket")]["status"] == "SKIP"
    log = rows[("quiet", "log")]
    assert log["status"] == "WARN" and log["reason"].endswith("start-up failed: boom")
    assert len(log["details"]["tail"]) == 2


# -- systemd, through a stand-in systemctl ---------------------------------------------------------

@pytest.mark.parametrize("active, enabled, status, reason", [
    ("active", "enabled", "PASS", "gce-endpoint@unit is enabled and active"),
    ("failed", "enabled", "FAIL", "gce-endpoint@unit is enabled but failed"),
    ("active", "disabled", "WARN", "gce-endpoint@unit is active but not enabled: it will not start at boot"),
    ("inactive", "not-found", "SKIP", "gce-endpoint@unit is not enabled (the endpoint is not started at boot)"),
])
def test_systemd_unit_state(home, tmp_path, monkeypatch, active, enabled, status, reason):
    from gce.commands.diagnostic import checks

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text(f"""#!/bin/sh
echo "$@" >> {tmp_path}/systemctl.calls
case "$1" in is-active) echo {active}; exit 3;; is-enabled) echo {enabled}; exit 1;; esac
""")
    fake.chmod(0o755)
    booted = tmp_path / "run-systemd-system"
    booted.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(checks, "SYSTEMD_BOOTED", booted)
    unreachable("unit")
    _, rows = diagnose("--endpoint", "unit", "--json")
    assert (rows[("unit", "systemd unit")]["status"], rows[("unit", "systemd unit")]["reason"]) == (status, reason)
    scope = "--user " if os.geteuid() else ""  # a user's endpoint is a unit of their own systemd
    assert (tmp_path / "systemctl.calls").read_text() == (
        f"{scope}is-active gce-endpoint@unit\n{scope}is-enabled gce-endpoint@unit\n")


def test_a_systemd_endpoint_shows_its_journal_in_the_log_check_and_the_bundle(home, tmp_path, monkeypatch):
    from gce.commands.diagnostic import checks, journal

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, script in {
        "systemctl": 'case "$1" in is-active) echo active;; is-enabled) echo enabled;; esac',
        "journalctl": f'echo "$@" >> {tmp_path}/journalctl.calls\n'
                      'echo "2026-01-01T10:00:00+0000 host gce[7]: INFO gce.daemon: endpoint ready"\n'
                      'echo "2026-01-01T10:00:01+0000 host gce[7]: ERROR gce.daemon: lost the broker: '
                      'amqp://ep:JournalPassMarker77@10.0.0.1/v"',
    }.items():
        (bin_dir / tool).write_text(f"#!/bin/sh\n{script}\n")
        (bin_dir / tool).chmod(0o755)
    booted = tmp_path / "run-systemd-system"
    booted.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(checks, "SYSTEMD_BOOTED", booted)
    monkeypatch.setattr(journal, "SYSTEMD_BOOTED", booted)
    unreachable("unit")
    out = tmp_path / "bundle"
    out.mkdir()
    result, rows = diagnose("--endpoint", "unit", "--json", "--log-lines", "7", "--bundle-dir", str(out))
    log = rows[("unit", "log")]
    assert log["status"] == "WARN"
    assert log["reason"] == ("1 error line among the last 2; the last: 2026-01-01T10:00:01+0000 host gce[7]: ERROR "
                             "gce.daemon: lost the broker: amqp://ep:***@10.0.0.1/v")
    assert log["details"]["unit"] == "gce-endpoint@unit.service" and len(log["details"]["tail"]) == 2
    scope = "--user " if os.geteuid() else ""
    assert log["hint"] == f"journalctl {scope}-u gce-endpoint@unit.service -n 7 --no-pager -o short-iso"
    calls = (tmp_path / "journalctl.calls").read_text().splitlines()
    assert calls == [f"{scope}-u gce-endpoint@unit.service -n 500 --no-pager -o short-iso",  # the bundle's
                     f"{scope}-u gce-endpoint@unit.service -n 7 --no-pager -o short-iso"]
    [archive] = list(out.iterdir())
    with tarfile.open(archive) as tar:
        [member] = [m for m in tar.getmembers() if m.name.endswith("/journal-gce-endpoint@unit.service.log")]
        text = tar.extractfile(member).read().decode()
    assert text.endswith("ERROR gce.daemon: lost the broker: amqp://ep:***@10.0.0.1/v\n")
    assert "JournalPassMarker77" not in result.stdout + text


def test_systemd_not_running_is_skipped(home, tmp_path, monkeypatch):
    from gce.commands.diagnostic import checks

    monkeypatch.setattr(checks, "SYSTEMD_BOOTED", tmp_path / "absent")
    unreachable("unit")
    _, rows = diagnose("--endpoint", "unit", "--json")
    assert rows[("unit", "systemd unit")]["status"] == "SKIP"
    assert rows[("unit", "systemd unit")]["reason"] == f"systemd is not running on this machine (no {tmp_path}/absent)"


# -- multi-user endpoints ---------------------------------------------------------------------------

def templated(name: str) -> Path:
    paths = write_endpoint(name, {"broker": {"url": f"amqp://ep@127.0.0.1:{unused_port()}/v"}, "multi_user": True,
                                  "identity_mapping_config_path": "identity_mapping.json"})
    d = paths.config_dir
    (d / "identity_mapping.json").write_text(json.dumps({
        "DATA_TYPE": "expression_identity_mapping#1.0.0",
        "mappings": [{"source": "{username}", "match": "(.*)@example\\.org", "output": "{0}"}]}))
    (d / "user_config_schema.json").write_text(json.dumps(
        {"type": "object", "properties": {"workers": {"type": "integer", "minimum": 1, "default": 2}}}))
    (d / "user_config_template.yaml.j2").write_text(
        "engine:\n  type: ThreadPoolEngine\n  max_workers: {{ workers }}\n")
    (d / "user_environment.yaml").write_text("LANG: C.UTF-8\n")
    return paths


def test_multi_user_mapping_and_template_checks(home):
    templated("multi")
    result, rows = diagnose("--endpoint", "multi", "--identity", "nobody@example.org", "--json")
    mapping = rows[("multi", "identity mapping")]
    assert mapping["status"] == "PASS"
    assert mapping["reason"].endswith("parses (1 rule); 'nobody@example.org' maps to nobody (uid 65534) by "
                                      "expression mapping #1")
    template = rows[("multi", "user template")]
    assert template["status"] == "PASS"
    assert template["reason"].endswith("renders with the schema's defaults (1 value): engine ThreadPoolEngine")
    assert template["details"]["values"] == {"workers": 2}

    _, rows = diagnose("--endpoint", "multi", "--identity", "nobody@elsewhere.org", "--json")
    mapping = rows[("multi", "identity mapping")]
    assert mapping["status"] == "FAIL" and "'nobody@elsewhere.org' does not map" in mapping["reason"]
    assert mapping["hint"] == "gce idmap test multi nobody@elsewhere.org explains it"


def test_multi_user_broken_files_fail_their_checks(home):
    paths = templated("broken")
    (paths.config_dir / "identity_mapping.json").write_text('{"DATA_TYPE": "expression_identity_mapping#1.0.0"}')
    (paths.config_dir / "user_config_template.yaml.j2").write_text("engine:\n  type: {{ no_such_value }}\n")
    _, rows = diagnose("--endpoint", "broken", "--json")
    mapping = rows[("broken", "identity mapping")]
    assert mapping["status"] == "FAIL" and "missing mappings" in mapping["reason"]
    template = rows[("broken", "user template")]
    assert template["status"] == "FAIL"
    assert "does not render with the schema's defaults" in template["reason"]
    assert "no_such_value" in template["reason"]


def test_single_user_endpoints_skip_the_multi_user_checks(home):
    unreachable("single")
    _, rows = diagnose("--endpoint", "single", "--json")
    for check in ("identity mapping", "user template"):
        assert rows[("single", check)]["status"] == "SKIP"
        assert rows[("single", check)]["reason"] == "not a multi-user endpoint"


# -- the bundle ------------------------------------------------------------------------------------

MARKERS = {
    "url": "UrlPassMarker7731",
    "yaml": "S3CRETyamlMarker5512",
    "schema": "SchemaApiKeyMarker0921",
    "env": "EnvTokenMarker3304",
    "env_yaml": "EnvYamlTokenMarker8817",
    "pem": "PemBodyMarker6620abcdefABCDEF0123456789",
    "log_url": "LogUrlPassMarker4478",
    "bearer": "BearerMarker9013xyz",
    "uep": "UepBasicMarker2290",
    "argv": "ArgvTokenMarker1157",
    "stderr": "StderrTokenMarker6402",
    "uep_stderr": "UepStderrMarker7719",
    "user_uep": "UserUepMarker3385",
    "linked": "LinkedFileMarker5120",
}


def plant_secrets(name: str) -> Path:
    m = MARKERS
    port = unused_port()
    paths = write_endpoint(name, f"""# a templated endpoint
# This file holds the broker password: keep it private.
broker:
  url: "amqp://ep-{name}:{m['url']}@127.0.0.1:{port}/v"   # the endpoint's own account
multi_user: true
identity_mapping_config_path: identity_mapping.json
""")
    d = paths.config_dir
    (d / "user_config_template.yaml.j2").write_text(
        "engine:\n  type: ThreadPoolEngine\n  max_workers: {{ workers }}\n"
        f"# the site's scheduler API\nclient_secret: {m['yaml']}\n")
    (d / "user_config_schema.json").write_text(json.dumps(
        {"type": "object", "properties": {"workers": {"type": "integer", "default": 2},
                                          "api_key": {"type": "string", "default": m["schema"]}}}, indent=2))
    (d / "identity_mapping.json").write_text(json.dumps(
        [{"DATA_TYPE": "external_identity_mapping#1.0.0", "command": ["/usr/bin/true", "--token", m["argv"]]}]))
    (d / "user_environment.yaml").write_text(
        f"# site settings\nLANG: C.UTF-8\nTOKEN={m['env']}\nSITE_API_TOKEN: {m['env_yaml']}\n")
    paths.log_file.write_text(
        "2026-01-01 10:00:00,000 INFO manager[7] gce.daemon: starting\n"
        f"2026-01-01 10:00:00,100 INFO manager[7] pika: connecting to amqp://ep-{name}:{m['log_url']}@10.0.0.1/v\n"
        "-----BEGIN OPENSSH PRIVATE KEY-----\n"
        f"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW{m['pem']}\n"
        "QyNTUxOQAAACBbOCQa2uIxJuqI0zZxBOtTmETCW6WfIbb9f7OqW8GTGAAAAJgAAAAA\n"
        "-----END OPENSSH PRIVATE KEY-----\n"
        f"2026-01-01 10:00:02,000 ERROR manager[7] gce.daemon: HTTP 401 with Authorization: Bearer {m['bearer']}\n"
        f"2026-01-01 10:00:03,000 INFO manager[7] gce.daemon: the password was {m['url']} all along\n")
    paths.log_file.with_name("endpoint.log.stderr").write_text(
        f"Traceback (most recent call last):\nRuntimeError: login failed: token={m['stderr']}\n")
    paths.uep_log_dir.mkdir()
    (paths.uep_log_dir / "default.log").write_text(
        f"worker: GET /api with header Authorization: Basic {m['uep']}\n")
    (paths.uep_log_dir / "0123456789abcdef.stderr").write_text(f"export SITE_PASSWORD={m['uep_stderr']}\n")
    return paths


@pytest.fixture
def local_user(tmp_path):
    """A real local account with a home directory (root only); removed afterwards."""
    import pwd
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("creates a local account: run as root")
    name = f"gcediag{os.getpid() % 100000}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True, capture_output=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", "--remove", name], capture_output=True)


def plant_user_uep_logs(user, endpoint: str, secret_file: Path) -> None:
    """A multi-user endpoint's UEP log in USER's home (gce/daemon/routing.py), owned by USER,
    beside a symlink to SECRET_FILE and a root-owned file, which a bundle must not take."""
    d = Path(user.pw_dir, ".gce", "uep-logs", endpoint)
    d.mkdir(parents=True)
    log = d / "fedcba9876543210.log"
    log.write_text(f"2026-01-01 10:00:00,000 INFO uep: using api_key: {MARKERS['user_uep']}\n")
    (d / "stolen.log").symlink_to(secret_file)
    (d / "planted.log").write_text(f"root's {MARKERS['linked']}\n")
    for p in [Path(user.pw_dir, ".gce"), *Path(user.pw_dir, ".gce").rglob("*")]:
        if p.name != "planted.log":
            os.lchown(p, user.pw_uid, user.pw_gid)


def test_bundle_holds_the_configs_and_logs_without_any_secret(home, tmp_path, monkeypatch, local_user):
    plant_secrets("secretive")
    secret_file = tmp_path / "root-only"
    secret_file.write_text(f"{MARKERS['linked']}\n")
    secret_file.chmod(0o600)
    plant_user_uep_logs(local_user, "secretive", secret_file)
    out = tmp_path / "bundles"
    out.mkdir()
    result, rows = diagnose("--endpoint", "secretive", "--json", "--bundle-dir", str(out))
    assert re.fullmatch(r"bundle written: .*\n", result.stderr)
    [archive] = list(out.iterdir())
    assert re.fullmatch(rf"gce-diagnostic-{re.escape(socket.gethostname())}-\d{{8}}T\d{{6}}Z\.tar\.gz", archive.name)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    with tarfile.open(archive) as tar:
        members = {m.name.split("/", 1)[1]: tar.extractfile(m).read().decode() for m in tar.getmembers()}
    top = archive.name[: -len(".tar.gz")]
    assert set(members) == {
        "endpoints/secretive/config/config.yaml", "endpoints/secretive/config/endpoint.json",
        "endpoints/secretive/config/user_config_template.yaml.j2",
        "endpoints/secretive/config/user_config_schema.json", "endpoints/secretive/config/identity_mapping.json",
        "endpoints/secretive/config/user_environment.yaml", "endpoints/secretive/logs/endpoint.log",
        "endpoints/secretive/logs/uep/default.log", "endpoints/secretive/logs/endpoint.log.stderr",
        "endpoints/secretive/logs/uep/0123456789abcdef.stderr",
        f"endpoints/secretive/logs/uep/{local_user.pw_name}/fedcba9876543210.log", "report.txt", "report.json",
        "versions.txt"}
    everything = {"stdout": result.stdout, **members}
    for where, text in everything.items():
        for what, marker in MARKERS.items():
            assert marker not in text, f"the {what} secret is in {where}"
    # Redacted as text: comments and layout stay, values go.
    config = members["endpoints/secretive/config/config.yaml"]
    assert "# This file holds the broker password: keep it private.\n" in config
    assert 'url: "amqp://ep-secretive:***@127.0.0.1:' in config and "# the endpoint's own account" in config
    template = members["endpoints/secretive/config/user_config_template.yaml.j2"]
    assert "# the site's scheduler API\nclient_secret: ***\n" in template
    assert "max_workers: {{ workers }}" in template
    env = members["endpoints/secretive/config/user_environment.yaml"]
    assert env == "# site settings\nLANG: C.UTF-8\nTOKEN=***\nSITE_API_TOKEN: ***\n"
    assert json.loads(members["endpoints/secretive/config/user_config_schema.json"])[
        "properties"]["api_key"]["default"] == "***"
    assert json.loads(members["endpoints/secretive/config/identity_mapping.json"])[0]["command"] == [
        "/usr/bin/true", "--token", "***"]
    log = members["endpoints/secretive/logs/endpoint.log"]
    assert "-----BEGIN OPENSSH PRIVATE KEY-----\n***\n-----END OPENSSH PRIVATE KEY-----" in log
    assert "Authorization: ***" in log and "the password was *** all along" in log
    assert members["endpoints/secretive/logs/endpoint.log.stderr"].endswith("RuntimeError: login failed: token=***\n")
    assert members[f"endpoints/secretive/logs/uep/{local_user.pw_name}/fedcba9876543210.log"] == (
        "2026-01-01 10:00:00,000 INFO uep: using api_key: ***\n")
    assert json.loads(members["report.json"]) == json.loads(result.stdout)
    assert members["report.txt"].startswith("this host\n")
    assert top.startswith("gce-diagnostic-")
    assert rows[("secretive", "config")]["status"] == "PASS"


def test_bundle_goes_to_the_current_directory_and_text_output_is_redacted(home, tmp_path, monkeypatch):
    plant_secrets("secretive")
    monkeypatch.chdir(tmp_path)
    result, _ = diagnose("--endpoint", "secretive", "--bundle", "--log-lines", "50")
    [archive] = list(tmp_path.glob("gce-diagnostic-*.tar.gz"))
    assert result.stdout.splitlines()[-1] == f"bundle written: {archive}"
    for what, marker in MARKERS.items():
        assert marker not in result.stdout, what
    # the log check warns (an ERROR line) and shows the redacted tail
    assert "  | -----BEGIN OPENSSH PRIVATE KEY-----" in result.stdout


# -- the redaction rules, one by one ---------------------------------------------------------------

@pytest.mark.parametrize("line, redacted", [
    ("  url: amqps://ep:pa@ss/w0rd@broker.example:5671/gce  # ours",
     "  url: amqps://ep:***@broker.example:5671/gce  # ours"),
    ("client_secret: abc123  # from the portal", "client_secret: ***  # from the portal"),
    ('{"api_key": "abc123", "n": 1, "private_key": null}', '{"api_key": "***", "n": 1, "private_key": null}'),
    ("export DB_PASSWORD='x y z'", "export DB_PASSWORD='***'"),
    ("TOKEN=abc", "TOKEN=***"),
    ("curl -H 'Authorization: Bearer eyJhbGciOi.x.y'", "curl -H 'Authorization: ***"),
    ("sent Bearer eyJhbGciOiJIUzI1NiJ9 upstream", "sent Bearer *** upstream"),
    ('["/opt/map", "--token", "abc123", "--password=pw"]', '["/opt/map", "--token", "***", "--password=***"]'),
    # prose and ordinary keys stay
    ("# This file holds the broker password: keep it private.",
     "# This file holds the broker password: keep it private."),
    ("allowed keys: engine, broker", "allowed keys: engine, broker"),
    ("max_workers: 4", "max_workers: 4"),
])
def test_redaction_of_one_line(line, redacted):
    from gce.commands.diagnostic.redact import Redactor

    assert Redactor().redact(line) == redacted


def test_redaction_of_blocks_and_remembered_secrets():
    from gce.commands.diagnostic.redact import Redactor

    r = Redactor()
    config = "credentials:\n  user: bob\n  password: hunter2hunter2\n  keys:\n  - k1\n  - k2\nnext: 1\n"
    log = ("QUFBQUFBQUFBQUFBQUFB\n-----END RSA PRIVATE KEY-----\nok\n"  # a tail that starts inside a key
           "-----BEGIN EC PRIVATE KEY-----\nQkJCQkJCQkJCQkJC\n")  # ... and one cut at its end
    r.learn(config)
    r.learn(log)
    assert r.redact(config) == "credentials:\n  user: ***\n  password: ***\n  keys:\n  - ***\n  - ***\nnext: 1\n"
    assert r.redact(log) == ("***\n-----END RSA PRIVATE KEY-----\nok\n-----BEGIN EC PRIVATE KEY-----\n***\n")
    assert r.redact("login with hunter2hunter2 failed") == "login with *** failed"
    assert "bob" not in r.secrets  # a user name under credentials: is not a secret elsewhere


# -- key/value secrets in log lines: every form of password, passwd, secret, token, key, credential ---------

LOG = "2026-01-01 10:00:00,000 INFO manager[7] gce.daemon: "


@pytest.mark.parametrize("line, redacted", [
    # key=value, as loggers, shells and logfmt write it: the value ends at a space
    (LOG + "login password=hunter2xyz ok", LOG + "login password=*** ok"),
    (LOG + "a=1 PASSWORD=hunter2xyz token=abcdef123456 b=2", LOG + "a=1 PASSWORD=*** token=*** b=2"),
    (LOG + "connect(password='hunter2 xyz', host=x)", LOG + "connect(password='***', host=x)"),
    (LOG + "error: 'password=hunter2xyz'", LOG + "error: 'password=***'"),
    (LOG + "args=passwd=hunter2xyz", LOG + "args=passwd=***"),
    (LOG + "opts:password=hunter2xyz,retry=3", LOG + "opts:password=***"),  # a comma may be part of it
    (LOG + "x|secret=abcdef123456", LOG + "x|secret=***"),
    (LOG + "kwargs password = hunter2xyz, user = bob", LOG + "kwargs password = ***, user = bob"),
    ("export DB_PASSWD=abcdef123456", "export DB_PASSWD=***"),
    ("FOO_SECRET=abcdef123456", "FOO_SECRET=***"),
    ("AWS_SECRET_ACCESS_KEY=abc/def+ghi", "AWS_SECRET_ACCESS_KEY=***"),
    ("ssh_key=AAAAB3NzaC1yc2E", "ssh_key=***"),
    ("GET /cb?access_token=abcdef123456&state=1", "GET /cb?access_token=***&state=1"),
    # key: value, as YAML and most log messages write it: the value runs to the end of the line
    (LOG + "token: abcdef123456", LOG + "token: ***"),
    (LOG + "[token: abc123456]", LOG + "[token: ***]"),
    (LOG + 'msg="Token: abcdef123456"', LOG + 'msg="Token: ***"'),
    (LOG + "TOKEN : abcdef123456", LOG + "TOKEN : ***"),
    (LOG + "client_secret:abcdef123456", LOG + "client_secret:***"),
    ("api_key: ABCDEF9999", "api_key: ***"),
    ("credentials: s3cr3tcreds", "credentials: ***"),
    ("X-Api-Key: abcdef123456", "X-Api-Key: ***"),
    ("Passphrase: correct horse battery", "Passphrase: ***"),
    ("key: 3", "key: ***"),  # "key" alone is a secret's name too: err on the side of hiding
    # quoted keys: JSON and Python reprs
    ('{"password": "hunter2xyz", "user": "bob"}', '{"password": "***", "user": "bob"}'),
    ('{"Credential":"abc"}', '{"Credential":"***"}'),
    (LOG + "got {'token': 'abcdef123456', 'x': 1}", LOG + "got {'token': '***', 'x': 1}"),
    # a secret's name, a space and a quoted or credential-looking value
    (LOG + 'user password "hunter2xyz" rejected', LOG + 'user password "***" rejected'),
    (LOG + "refused: token abcdef123456 expired", LOG + "refused: token *** expired"),
    ("<password>hunter2xyz</password>", "<password>***</password>"),
    # command lines
    ("curl -u bob:hunter2xyz https://x", "curl -u bob:*** https://x"),
    ("curl --user=bob:hunter2xyz https://x", "curl --user=bob:*** https://x"),
    ("mysql -p hunter2xyz db", "mysql -p *** db"),
    ("--password hunter2xyz --token=abcdef", "--password *** --token=***"),
    # a URL key whose value is no URL may be the password itself; a URL keeps all but its password
    ("  url: 918273645", "  url: ***"),
    ('{"broker_url": "s3cr3tvalue"}', '{"broker_url": "***"}'),
    ("  url: amqp://ep:hunter2@h/gce", "  url: amqp://ep:***@h/gce"),
    # what stays
    ("2026-01-01 10:00:00,000 INFO keys: 3 monkey: 4", "2026-01-01 10:00:00,000 INFO keys: 3 monkey: 4"),
    (LOG + "the secret is out", LOG + "the secret is out"),
    (LOG + "token expired for user bob", LOG + "token expired for user bob"),
    ("max_workers: 4", "max_workers: 4"),
])
def test_redaction_of_key_value_forms_in_any_case(line, redacted):
    from gce.commands.diagnostic.redact import Redactor

    r = Redactor()
    assert r.redact(line) == redacted
    r.learn(line)
    assert r.redact(line) == redacted  # what it learned from the line changes nothing there


def test_a_bundle_hides_key_value_secrets_of_log_lines(home, tmp_path):
    paths = unreachable("keyvalue")
    secrets = {"password": "pw-hunter2xyz", "token": "tk-abcdef123456", "key": "ky-0987654321",
               "credential": "cr-5647382910", "secret": "sc-1029384756", "passwd": "pd-6655443322"}
    paths.log_file.write_text("".join(  # as exception reprs and bracketed fields quote them
        f"{LOG}RuntimeError('login failed: {name.upper() if i % 2 else name}={value}')\n{LOG}[{name.title()}: {value}]\n"
        for i, (name, value) in enumerate(secrets.items())))
    out = tmp_path / "bundles"
    out.mkdir()
    result, _ = diagnose("--endpoint", "keyvalue", "--bundle-dir", str(out), "--log-lines", "50")
    [archive] = list(out.iterdir())
    with tarfile.open(archive) as tar:
        log = tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("/logs/endpoint.log"))).read().decode()
    for value in secrets.values():
        assert value not in result.stdout and value not in log
    assert f"{LOG}RuntimeError('login failed: PASSWD=***')\n{LOG}[Passwd: ***]\n" in log
