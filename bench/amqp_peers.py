"""Peers on the same broker as gce, beside bench.py: Celery and a bare pika echo.

- celery-rtt / celery-throughput: Celery 5 (installed on first use into bench/.peers/celery,
  ignored by git), prefork with as many worker processes as gce's endpoint, the rpc result backend,
  on bench.py's private RabbitMQ (vhost gce, as its administrator). Its client runs in Celery's venv
  (bench/celery_peer.py, driven over a pipe); gce's and Celery's round trips alternate one by one,
  each timed by its own client. Targets: round trip ≤ 1.0x Celery, 10,000 no-op throughput ≥ 2x.
- pika-echo: the transport floor. One pika client publishes a small message to a queue that an echo
  process (pika, a consumer acking each message after its answer) answers on the client's reply
  queue: two AMQP legs, no task. A reference row: gce's no-op round trip beside it, no target.

bench.py runs these with its rtt and throughput rows (or --only celery-rtt,celery-throughput,pika-echo).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

NAMES = ("celery-rtt", "celery-throughput", "pika-echo")
SELECTED_BY = {"rtt", "throughput", *NAMES}
HERE = Path(__file__).resolve().parent
CELERY_VENV = HERE / ".peers" / "celery"
ECHO_QUEUE = "bench-echo"


def noop():
    return None


def celery_venv() -> Path:
    python = CELERY_VENV / "bin" / "python"
    if not (CELERY_VENV / "bin" / "celery").exists():
        print("installing the peer Celery into bench/.peers/celery ...", flush=True)
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(CELERY_VENV)], check=True)
        subprocess.run([str(CELERY_VENV / "bin" / "pip"), "install", "-q", "celery>=5,<6"], check=True)
    return python


class CeleryPeer:
    """A Celery prefork worker of WORKERS processes and a driver of Celery's client, both children."""

    def __init__(self, broker_url: str, workers: int) -> None:
        python = celery_venv()
        env = dict(os.environ, BENCH_CELERY_BROKER=broker_url, PYTHONPATH=str(HERE))
        self.worker = subprocess.Popen(
            [str(python), "-m", "celery", "-A", "celery_peer", "worker", "--pool", "prefork",
             "--concurrency", str(workers), "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--loglevel", "WARNING"],
            env=env, cwd=HERE, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.driver = subprocess.Popen([str(python), str(HERE / "celery_peer.py"), "drive"], env=env, cwd=HERE,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self._line() != "ready":
            self.close()
            raise RuntimeError("the Celery driver did not start: see its stderr above")

    def _line(self) -> str:
        return self.driver.stdout.readline().strip()

    def ask(self, command: str) -> float:
        self.driver.stdin.write(command + "\n")
        self.driver.stdin.flush()
        return float(self._line())

    def close(self) -> None:
        if self.driver.poll() is None:
            self.driver.stdin.write("quit\n")
            self.driver.stdin.close()
        self.driver.wait(timeout=30)
        try:  # warm shutdown of the worker, then its whole session (the prefork children)
            os.kill(self.worker.pid, signal.SIGTERM)
            self.worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.worker.wait(timeout=30)


def echo_server(url: str) -> int:
    """The echo process: answer each message on ECHO_QUEUE with its body on its reply_to."""
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.queue_declare(ECHO_QUEUE, auto_delete=True)
    ch.basic_qos(prefetch_count=100)

    def answer(ch, method, props, body):
        ch.basic_publish("", props.reply_to, body, pika.BasicProperties(correlation_id=props.correlation_id))
        ch.basic_ack(method.delivery_tag)

    ch.basic_consume(ECHO_QUEUE, answer)
    print("ready", flush=True)
    try:
        ch.start_consuming()
    except KeyboardInterrupt:
        pass
    return 0


class EchoClient:
    """The echo process started, and a client of it in this process."""

    def __init__(self, url: str) -> None:
        import pika

        self.server = subprocess.Popen([sys.executable, __file__, "echo"], env=dict(os.environ, BENCH_ECHO_URL=url),
                                       stdout=subprocess.PIPE, text=True)
        if self.server.stdout.readline().strip() != "ready":
            raise RuntimeError("the pika echo process did not start")
        self.conn = pika.BlockingConnection(pika.URLParameters(url))
        self.ch = self.conn.channel()
        self.reply_queue = self.ch.queue_declare("", exclusive=True).method.queue
        self.answer: str | None = None
        self.ch.basic_consume(self.reply_queue, self._on_reply, auto_ack=True)

    def _on_reply(self, _ch, _method, props, _body) -> None:
        self.answer = props.correlation_id

    def rtt(self) -> float:
        import pika

        wanted = str(uuid.uuid4())
        t = time.perf_counter()
        self.ch.basic_publish("", ECHO_QUEUE, b"x" * 32,
                              pika.BasicProperties(reply_to=self.reply_queue, correlation_id=wanted))
        while self.answer != wanted:
            self.conn.process_data_events(time_limit=None)
        return time.perf_counter() - t

    def close(self) -> None:
        self.conn.close()
        self.server.send_signal(signal.SIGINT)
        try:
            self.server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()


def bench_rtt(rounds: int, s, celery: CeleryPeer) -> tuple[list, list]:
    ours, peer = [], []
    with s.executor() as ex:
        ex.submit(noop).result(timeout=60)
        for _ in range(rounds * 20):
            t = time.perf_counter()
            ex.submit(noop).result(timeout=60)
            ours.append(time.perf_counter() - t)
            peer.append(celery.ask("rtt"))
    return ours, peer


def bench_throughput(rounds: int, s, celery: CeleryPeer, n: int = 10_000) -> tuple[list, list]:
    import concurrent.futures as cf

    ours, peer = [], []
    for _ in range(rounds):
        with s.executor() as ex:
            t = time.perf_counter()
            futs = [ex.submit(noop) for _ in range(n)]
            cf.wait(futs, timeout=600)
            assert all(f.done() and f.exception() is None for f in futs)
            ours.append(n / (time.perf_counter() - t))
        peer.append(celery.ask(f"throughput {n}"))
    return ours, peer


def bench_echo(rounds: int, s, echo: EchoClient) -> tuple[list, list]:
    ours, floor = [], []
    with s.executor() as ex:
        ex.submit(noop).result(timeout=60)
        echo.rtt()
        for _ in range(rounds * 20):
            t = time.perf_counter()
            ex.submit(noop).result(timeout=60)
            ours.append(time.perf_counter() - t)
            floor.append(echo.rtt())
    return ours, floor


def run(only: set[str], rounds: int, s, workers: int, ratio_row, rows: list) -> None:
    """Add the Celery and pika echo rows that ONLY selects, on bench.py's setup S (broker and endpoint)."""
    if not only & SELECTED_BY:
        return
    import statistics

    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import bench/
    if only & {"rtt", "throughput", "celery-rtt", "celery-throughput"}:
        celery = CeleryPeer(s.broker.admin_url, workers)
        try:
            if only & {"rtt", "celery-rtt"}:
                ratio_row("no-op round trip (vs Celery, prefork, rpc backend)", "s", *bench_rtt(rounds, s, celery),
                          1.0, False)
            if only & {"throughput", "celery-throughput"}:
                ratio_row("10,000 no-op tasks throughput (vs Celery)", "tasks/s",
                          *bench_throughput(max(1, rounds // 2), s, celery), 2.0, True)
        finally:
            celery.close()
    if only & {"rtt", "pika-echo"}:
        echo = EchoClient(s.broker.admin_url)
        try:
            ours, floor = bench_echo(rounds, s, echo)
        finally:
            echo.close()
        mo, mf = statistics.median(ours), statistics.median(floor)
        rows.append(("no-op round trip (vs bare pika echo, the transport floor)", f"{mo * 1000:,.2f} ms",
                     f"{mf * 1000:,.2f} ms", f"{mo / mf:.1f}x", "reference", True))


if __name__ == "__main__" and sys.argv[1:] == ["echo"]:
    sys.exit(echo_server(os.environ["BENCH_ECHO_URL"]))
