"""sd_notify: the wire format on a real datagram socket, then a real manager talking to one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from gce.daemon.notify import Notifier, journal_stderr, status_text
from tests.endpoint import wait_until


def add(a, b):
    return a + b


class Listener:
    """What systemd does: a bound AF_UNIX datagram socket; collects every message."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.2)
        self.messages: list[dict[str, str]] = []

    def drain(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, BlockingIOError):
                return self.messages
            self.messages.append(dict(line.split("=", 1) for line in data.decode().split("\n")))

    def wait_for(self, key: str, value: str | None = None, timeout: float = 30) -> dict[str, str]:
        def seen():
            for m in self.drain():
                if key in m and (value is None or value in m[key]):
                    return m
            return None

        return wait_until(seen, timeout=timeout)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener(tmp_path):
    lst = Listener(str(tmp_path / "notify.sock"))
    yield lst
    lst.close()


def test_a_path_socket_gets_key_value_lines(listener):
    n = Notifier({"NOTIFY_SOCKET": listener.sock.getsockname()})
    assert n.enabled and n.watchdog_interval is None
    assert n.send(READY="1", STATUS="two\nlines")
    assert listener.drain() == [{"READY": "1", "STATUS": "two lines"}]
    n.close()


def test_an_abstract_socket_is_named_with_an_at_sign():
    name = f"gce-test-{uuid.uuid4().hex}"
    lst = Listener("\0" + name)
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.send(STOPPING="1")
        assert lst.drain() == [{"STOPPING": "1"}]
    finally:
        lst.close()


def test_no_socket_means_no_notifications_and_no_errors(tmp_path):
    assert not Notifier({}).send(READY="1")
    assert not Notifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled
    # systemd gone (a socket path nobody listens on): sending fails quietly, as sd_notify does.
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).send(READY="1")


def test_the_watchdog_is_armed_only_for_this_process():
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "3000000"}
    assert Notifier(env).watchdog_interval == 1.5
    assert Notifier({**env, "WATCHDOG_PID": str(os.getpid())}).watchdog_interval == 1.5
    assert Notifier({**env, "WATCHDOG_PID": "1"}).watchdog_interval is None
    assert Notifier({"WATCHDOG_USEC": "3000000"}).watchdog_interval is None


def test_from_environment_keeps_the_variables_from_child_processes(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "@x")
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    n = Notifier.from_environment()
    assert n.enabled and n.watchdog_interval == 0.5
    assert "NOTIFY_SOCKET" not in os.environ and "WATCHDOG_USEC" not in os.environ


def test_journal_stderr_compares_the_stream_with_stderr(tmp_path):
    st = os.fstat(2)
    assert journal_stderr({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert not journal_stderr({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
    assert not journal_stderr({"JOURNAL_STREAM": "garbage"}) and not journal_stderr({})


def test_status_text_from_a_manager_status():
    status = {"tasks": {"received": 5, "completed": 3, "failed": 1, "in_flight": 1},
              "user_endpoints": [{"state": "running"}, {"state": "fatal"}], "broker": {"connected": True}}
    assert status_text(status) == ("5 tasks received, 3 completed, 1 failed, 1 in flight; "
                                   "user endpoints: 1 running of 2; broker connected")
    status.update(state="degraded", reason="not taking tasks: the spool disk is full (No space left on device) at /x")
    assert status_text(status).startswith("degraded: not taking tasks: the spool disk is full (No space left on "
                                          "device) at /x; 5 tasks received")


@pytest.mark.broker
def test_a_real_manager_notifies_ready_status_watchdog_and_stopping(make_endpoint, listener, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", listener.sock.getsockname())
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    ep = make_endpoint(engine="thread")
    # The launcher sends stderr to this file: make it "the journal" for the manager.
    stderr = ep.paths.log_file.with_name(ep.paths.log_file.name + ".stderr")
    stderr.parent.mkdir(parents=True, exist_ok=True)
    stderr.touch()
    monkeypatch.setenv("JOURNAL_STREAM", f"{stderr.stat().st_dev}:{stderr.stat().st_ino}")

    ep.start()
    ready = listener.wait_for("READY", "1", timeout=30)
    ready_seen = time.monotonic()
    assert "0 tasks received" in ready["STATUS"] and "broker connected" in ready["STATUS"]
    before = listener.messages[:listener.messages.index(ready)]
    # Before READY=1 ("connected, engine up") only start-up progress, for `systemctl status`.
    assert all(list(m) == ["STATUS"] and m["STATUS"].startswith("starting: broker ") for m in before), before

    with ep.executor() as ex:
        assert ex.submit(add, 2, 3).result(timeout=60) == 5
    listener.wait_for("STATUS", "1 tasks received, 1 completed, 0 failed, 0 in flight", timeout=10)
    # One ping per half interval (0.5 s) from READY on, and they go on: wait for four of them
    # (2 s), then hold the count to a third of what the time since READY asks for (a busy
    # machine). Whole pings only: a span shorter than one interval asks for none.
    def pings():
        return [m for m in listener.drain() if m.get("WATCHDOG") == "1"]

    assert wait_until(lambda: len(pings()) >= 4, timeout=20)
    assert len(pings()) >= int((time.monotonic() - ready_seen) / 0.5 / 3)

    assert ep.stop()
    assert listener.wait_for("STOPPING", "1", timeout=5)
    journal = stderr.read_text()
    assert f"<6>INFO gce.daemon: endpoint {ep.name} ({ep.endpoint_id}) is ready" in journal
    assert "<6>INFO gce.daemon: stopping" in journal
    assert f"endpoint {ep.name} ({ep.endpoint_id}) is ready" in ep.log()  # a user endpoint keeps its file


@pytest.mark.broker
def test_a_manager_waiting_for_its_broker_says_so_until_stopped(make_endpoint, listener, monkeypatch, free_port):
    monkeypatch.setenv("NOTIFY_SOCKET", listener.sock.getsockname())
    ep = make_endpoint(engine="thread")
    ep.set(broker={"url": f"amqp://alice:pw@127.0.0.1:{free_port}/gce"})
    # In the foreground, as systemd runs it: it retries the broker instead of failing.
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "gce"), "start", ep.name],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        waiting = listener.wait_for("STATUS", "starting: broker connecting (last error: ", timeout=20)
        assert "user endpoint" in waiting["STATUS"]
        assert not any("READY" in m for m in listener.messages)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    listener.wait_for("STOPPING", "1", timeout=5)
