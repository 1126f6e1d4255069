"""A real endpoint whose spool disk fills up: it stops taking tasks (they wait on the broker),
says why in status, list, diagnostic and its log, survives kill -9 and a broker restart while
full, and once there is room again takes tasks by itself; every task is answered.

The spool lives on a small tmpfs mounted for the test (root only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from gce.daemon import control
from gce.transport import bundles, names
from gce.transport.message import ResultHeaders
from tests.daemon.tmpfs import fill, small_disk
from tests.endpoint import wait_until

pytestmark = pytest.mark.broker
GCE = str(Path(sys.executable).parent / "gce")
PREFETCH = 2  # messages: a bundle of tasks (at most bundles.MAX_ITEMS) is one


def square(i):
    import time

    time.sleep(0.005)
    return i * i


class Broker:
    """An administrator's view of the endpoint's vhost: the tasks waiting in its queue, and a copy
    of every result published to one executor's queue (to count answers per task). It survives
    broker restarts: a durable tap queue, and a new connection when the old one went."""

    def __init__(self, broker, endpoint_url: str, endpoint_id: str, result_queue: str) -> None:
        import uuid

        vhost = unquote(urlsplit(endpoint_url).path.lstrip("/"))
        self.url = broker.admin_url_for(vhost)
        self.conn = None
        self.tasks = names.endpoint_task_queue(endpoint_id)
        self.tap = f"tap-{uuid.uuid4().hex}"
        self._ch().queue_declare(self.tap, durable=True)
        self._ch().queue_bind(self.tap, names.RESULTS_EXCHANGE, result_queue)

    def _ch(self):
        import pika

        if self.conn is None or not self.conn.is_open:
            self.conn = pika.BlockingConnection(pika.URLParameters(self.url))
            self.channel = self.conn.channel()
        return self.channel

    def _do(self, op):
        import pika

        try:
            return op(self._ch())
        except pika.exceptions.AMQPError:  # the broker restarted under this connection
            self.conn = None
            return op(self._ch())

    def waiting(self) -> int:
        return self._do(lambda ch: ch.queue_declare(self.tasks, passive=True).method.message_count)

    def answers(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        while True:
            method, props, body = self._do(lambda ch: ch.basic_get(self.tap, auto_ack=True))
            if method is None:
                return counts
            if props.content_type == names.RESULT_BUNDLE_CONTENT_TYPE:  # several results in one message
                results, why = bundles.decode(bundles.RESULTS, body)
                assert why == ""
                tids = [ResultHeaders.from_amqp(None, headers).task_id for headers, _ in results]
            else:
                tids = [props.correlation_id]
            for tid in tids:
                counts[tid] = counts.get(tid, 0) + 1

    def close(self) -> None:
        self._do(lambda ch: ch.queue_delete(self.tap))
        self.conn.close()


def _status(ep) -> dict:
    try:
        return control.request(ep.paths, "status", timeout=5)
    except Exception:
        return {}


def _gce(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([GCE, *args], capture_output=True, text=True, timeout=60, env=os.environ)


def test_a_full_spool_disk_pauses_the_endpoint_until_there_is_room(make_endpoint, broker):
    ep = make_endpoint(engine="thread")
    ep.set(broker={"url": ep.endpoint_url, "prefetch": PREFETCH})
    with small_disk(ep.paths.spool_dir, "4m") as disk:
        ep.start()
        with ep.executor() as ex:
            b = Broker(broker, ep.endpoint_url, ep.endpoint_id, ex.result_queue)
            try:
                before = [ex.submit(square, i) for i in range(50)]
                assert [f.result(timeout=60) for f in before] == [i * i for i in range(50)]
                filler = fill(disk)
                futs = [ex.submit(square, i) for i in range(50, 250)]

                st = wait_until(lambda: _status(ep).get("state") == "degraded" and _status(ep), timeout=30)
                error = f"the spool disk is full (No space left on device) at {disk}"
                assert st["spool"]["error"] == error and st["reason"] == f"not taking tasks: {error}"
                # The rest wait on the broker (in bundles of tasks: gce.transport.bundles).
                wait_until(lambda: b.waiting() >= 1, timeout=30)
                assert len(futs) - PREFETCH * bundles.MAX_ITEMS > 0  # so some tasks cannot have come in

                status = _gce("status", ep.name)
                assert status.returncode == 150, status.stderr
                assert status.stdout.startswith(f"endpoint {ep.name} is degraded: not taking tasks: {error}\n")
                listed = _gce("list")
                assert f"{ep.name}: degraded: not taking tasks: {error}" in listed.stdout
                diag = _gce("diagnostic", "--endpoint", ep.name, "--json")
                spool = [r for r in json.loads(diag.stdout) if r["check"] == "spool"]
                assert (spool[0]["status"], spool[0]["details"]["error"]) == ("FAIL", error)

                ep.kill_manager()  # while full: what it held in memory is lost, not what the broker holds
                # The killed manager's failed write was cut back: the new one may spool a few more
                # tasks into that room before the disk is full again. Then it is paused, and stays
                # paused across a broker restart: what waits on the broker stays there.
                ep.start()
                wait_until(lambda: _status(ep).get("state") == "degraded", timeout=30)
                held = b.waiting()
                assert held > 0
                broker.restart(down=1)
                wait_until(lambda: _status(ep).get("broker", {}).get("connected"), timeout=60)
                assert _status(ep)["state"] == "degraded"
                wait_until(lambda: b.waiting() >= held, timeout=10)  # nacked deliveries are back too
                assert sum(f.done() for f in futs) < len(futs)

                filler.unlink()  # room again: it resumes by itself
                assert [f.result(timeout=90) for f in futs] == [i * i for i in range(50, 250)]
                wait_until(lambda: _status(ep).get("state") == "running", timeout=30)
                assert b.waiting() == 0
                answers = b.answers()
            finally:
                b.close()
                ex.shutdown(wait=False, cancel_futures=True)  # a failure above must not wait for them all
    ids = {f.task_id for f in before + futs}
    assert set(answers) == ids, f"{len(ids - set(answers))} task(s) never answered"
    # Tasks that ran from memory while the disk was full and were answered, then lost with the
    # killed manager, ran again from the broker: the SDK drops the second answer (by task id).
    assert max(answers.values()) <= 2
    log = ep.log()
    assert log.count(f"cannot write the task spool: {error}") == 2  # once per manager, not per retry
    assert "the task spool can be written again after" in log


def test_a_start_on_a_full_state_disk_comes_up_degraded_and_resumes(make_endpoint, tmp_path):
    """Everything of a personal endpoint (config, state file, log, spool) on one full disk."""
    import shutil

    ep = make_endpoint(engine="thread")
    saved = shutil.copytree(ep.paths.state_dir, tmp_path / "saved")
    with small_disk(ep.paths.state_dir, "4m") as disk:
        shutil.copytree(saved, disk, dirs_exist_ok=True)
        filler = fill(disk)
        try:
            ep.start()
            st = _status(ep)
            assert (st["state"], st["spool"]["error"]) == (
                "degraded", f"the spool disk is full (No space left on device) at {ep.paths.spool_dir}")
        finally:
            filler.unlink()
        wait_until(lambda: _status(ep).get("state") == "running", timeout=30)
        with ep.executor() as ex:
            assert ex.submit(square, 7).result(timeout=60) == 49
        ep.stop()
        assert "the task spool can be written again after" in ep.log()  # the log is on that disk too
