"""A backlog far larger than what a user endpoint's workers can take stays in the manager's spool,
on disk: the user endpoint holds at most its window (gce.uep.pools.WINDOW_PER_SLOT times its
workers, MIN_WINDOW at least) and is sent more as results come back. A real endpoint, a real
broker and a real process pool of two slow workers, held until a backlog has built up in the spool."""

from __future__ import annotations

import threading
import time

from gce.daemon.client import EndpointClient
from gce.uep.pools import MIN_WINDOW, WINDOW_PER_SLOT
from tests.endpoint import wait_until
from tests.rendezvous import wait_for

TASKS = 20_000


def slow(i):
    import time

    time.sleep(0.0005)
    return i


def held(i, gate):
    """slow, once the file GATE exists (at most 300 s from its start)."""
    wait_for(gate, 300)
    return i


def test_20k_tasks_wait_in_the_spool_while_the_user_endpoint_holds_only_its_window(make_endpoint, tmp_path):
    ep = make_endpoint(engine="process")  # two workers
    gate = tmp_path / "gate"
    window = max(MIN_WINDOW, WINDOW_PER_SLOT * 2)
    ep.start()
    client = EndpointClient(ep.paths, timeout=60)  # the manager answers slowly while 20k tasks come in
    seen: list[tuple[int, int, int | None]] = []  # (sent to the UEP, spooled, the UEP's engine holds)
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            status = client.status()
            for uep in status.user_endpoints:
                seen.append((uep.in_flight, status.tasks.in_flight, uep.engine.outstanding))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with ep.executor() as ex:
        try:
            # The first window's tasks wait for the gate, so the workers cannot keep pace with the
            # submits: the backlog builds up, and the gate opens once the endpoint has it spooled.
            futures = [ex.submit(held, i, str(gate)) if i < window else ex.submit(slow, i) for i in range(TASKS)]
            wait_until(lambda: any(spooled > 10 * window for _, spooled, _ in seen), timeout=120)
            gate.touch()
            results = [f.result(timeout=300) for f in futures]
        finally:
            gate.touch()
            done.set()
            watcher.join(10)
    assert results == list(range(TASKS))  # every task answered, with its own value
    assert seen and max(sent for sent, _, _ in seen) <= window
    assert max(held or 0 for _, _, held in seen) <= window  # what the user endpoint itself reports
    assert max(spooled for _, spooled, _ in seen) > 10 * window, "the backlog never built up in the spool"
    status = wait_until(lambda: (s := client.status()).tasks.in_flight == 0 and s, timeout=30)
    assert status.tasks.completed == TASKS and status.tasks.duplicates == 0
