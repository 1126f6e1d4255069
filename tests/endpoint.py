"""A real endpoint for tests: configured under a tmp GCE_HOME, provisioned on the session broker,
started as a real detached manager process, stopped and checked for leftovers at the end."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator

import yaml

from gce.config.paths import endpoint_paths
from gce.daemon import launcher, pidfile

ENGINES = {
    "thread": {"type": "ThreadPoolEngine", "max_workers": 4},
    "process": {"type": "ProcessPoolEngine", "max_workers": 2},
    "htex": {
        "type": "HighThroughputEngine", "max_workers_per_node": 2, "strategy_period": 0.5,
        "provider": {"type": "LocalProvider", "init_blocks": 1, "min_blocks": 0, "max_blocks": 1},
    },
}


class Endpoint:
    def __init__(self, broker, home: Path, name: str = "ep", engine: str = "thread", user: str = "alice",
                 others: tuple[str, ...] = (), **extra) -> None:
        self.broker = broker
        self.home = home
        self.name = name
        assert os.environ.get("GCE_HOME") == str(home), "set GCE_HOME first (the endpoint fixture does)"
        self.paths = endpoint_paths(name)
        self.endpoint_id = str(uuid.uuid4())
        self.endpoint_url, self.urls = broker.provision(self.endpoint_id, users=[user, *others])
        self.user_url = self.urls[user]
        self.paths.config_dir.mkdir(parents=True, mode=0o700)
        config = {"broker": {"url": self.endpoint_url}, "engine": ENGINES[engine], "status_period": 2, **extra}
        self.paths.config_file.write_text(yaml.safe_dump(config))
        self.paths.config_file.chmod(0o600)
        self.paths.endpoint_json.write_text(json.dumps({"endpoint_id": self.endpoint_id}))

    def set(self, **config) -> None:
        data = yaml.safe_load(self.paths.config_file.read_text())
        data.update(config)
        self.paths.config_file.write_text(yaml.safe_dump(data))

    def start(self, timeout: float = 90) -> dict:
        return launcher.start_detached(self.paths, timeout=timeout)

    def stop(self) -> bool:
        return launcher.stop(self.paths, timeout=30)

    def manager_pid(self) -> int:
        return int(pidfile.read_state(self.paths)["pid"])

    def kill_manager(self) -> None:
        os.kill(self.manager_pid(), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pidfile.lock_is_held(self.paths) and time.monotonic() < deadline:
            time.sleep(0.05)

    def executor(self, **kw):
        from gce.sdk import Executor

        return Executor(endpoint_id=self.endpoint_id, broker_url=self.user_url, **kw)

    def log(self) -> str:
        try:
            return self.paths.log_file.read_text()
        except FileNotFoundError:
            return ""


def processes_under(home: Path) -> list[str]:
    """Command lines of live processes started for this GCE_HOME (managers, UEPs, workers)."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "cmdline", "environ", "status", "cwd"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            env = p.info["environ"] or {}
            cwd = p.info["cwd"] or ""
            if env.get("GCE_HOME") == str(home) or cwd.startswith(str(home)) or \
                    str(home) in " ".join(p.info["cmdline"] or []):
                if p.pid != os.getpid():
                    found.append(f"{p.pid} {' '.join(p.info['cmdline'] or [])[:120]}")
        except (psutil.Error, TypeError):
            continue
    return found


@contextlib.contextmanager
def environ(**values: str) -> Iterator[None]:
    """Set environment variables for the block (processes started in it inherit them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def wait_until(predicate, timeout: float = 30, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


__all__ = ["Endpoint", "environ", "processes_under", "wait_until", "subprocess"]


class RawClient:
    """A submitter speaking AMQP directly, to send what the SDK never would."""

    def __init__(self, url: str, endpoint_id: str, user: str = "alice") -> None:
        import pika

        from gce.transport import names

        self.pika, self.names = pika, names
        self.user, self.endpoint_id = user, endpoint_id
        self.conn = pika.BlockingConnection(pika.URLParameters(url))
        self.ch = self.conn.channel()
        self.queue = names.result_queue(user, uuid.uuid4().hex)
        self.ch.queue_declare(self.queue, durable=True, arguments={"x-expires": 600_000})
        self.ch.queue_bind(self.queue, names.RESULTS_EXCHANGE, self.queue)

    def task(self, fn, args=(), python_version: str | None = None):
        """(task_id, headers, body) of a well-formed task."""
        import platform

        from gce.sdk import serialize
        from gce.transport.message import TaskHeaders

        kind, blob = serialize.serialize_function(fn)
        tid = str(uuid.uuid4())
        th = TaskHeaders(task_id=tid, user_id=self.user, reply_to=self.queue,
                         function_id=serialize.function_id_of(kind, blob),
                         python_version=python_version or platform.python_version())
        return tid, th.amqp_headers(), serialize.pack_task(kind, blob, serialize.serialize_args(tuple(args), {}))

    def publish(self, body: bytes, message_id, headers, user_id="__me__", reply_to="__mine__") -> None:
        props = self.pika.BasicProperties(
            message_id=message_id, user_id=self.user if user_id == "__me__" else user_id,
            reply_to=self.queue if reply_to == "__mine__" else reply_to, headers=headers)
        self.ch.basic_publish(self.names.TASKS_EXCHANGE, self.endpoint_id, body, props)

    def results(self, count: int, timeout: float = 30) -> dict:
        from gce.transport.message import ResultHeaders

        got = {}
        for method, props, body in self.ch.consume(self.queue, inactivity_timeout=timeout):
            if method is None:
                break
            rh = ResultHeaders.from_amqp(props.correlation_id, props.headers)
            got[rh.task_id] = rh
            self.ch.basic_ack(method.delivery_tag)
            if len(got) >= count:
                break
        self.ch.cancel()
        return got

    def close(self) -> None:
        self.conn.close()
