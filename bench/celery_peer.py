"""Celery's side of bench/amqp_peers.py: run inside bench/.peers/celery's venv, never gce's.

As the worker's app: ``celery -A celery_peer worker ...`` imports this module for `noop`.
As the driver: ``python celery_peer.py drive`` reads one command a line from stdin and answers
one line on stdout, so bench.py (another interpreter, without Celery) can alternate Celery with gce
round trip by round trip while the clock runs here, next to Celery's own client:

    rtt            -> seconds of one noop.delay().get()
    throughput N   -> tasks/s of N noop.delay() then every result read
    quit

The broker URL comes in $BENCH_CELERY_BROKER (the environment, not argv: it holds a password).
"""

from __future__ import annotations

import os
import sys
import time

from celery import Celery
from celery.result import ResultSet

app = Celery("bench", broker=os.environ["BENCH_CELERY_BROKER"], backend="rpc://")
app.conf.update(task_default_queue="bench-celery", broker_connection_retry_on_startup=True,
                worker_hijack_root_logger=False)  # json, Celery's default: a worker run as root refuses pickle


@app.task(name="bench.noop")  # one name whether this file is imported or run
def noop():
    return None


def drive() -> int:
    noop.delay().get(timeout=120)  # the connection, the reply queue and the workers warm
    print("ready", flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "rtt":
            t = time.perf_counter()
            noop.delay().get(timeout=60)
            print(time.perf_counter() - t, flush=True)
        elif cmd == "throughput":
            n = int(args[0])
            t = time.perf_counter()
            ResultSet([noop.delay() for _ in range(n)]).join_native(timeout=600)
            print(n / (time.perf_counter() - t), flush=True)
        elif cmd == "quit":
            break
    return 0


if __name__ == "__main__" and sys.argv[1:] == ["drive"]:
    sys.exit(drive())
