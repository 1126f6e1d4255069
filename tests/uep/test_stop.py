"""A user endpoint told to stop answers no task it has not run: those stay spooled at the manager
and run after the next start (a clean stop, `systemctl restart`, a package upgrade). Answering them
would fail tasks that a restart was meant to keep.

The engines are real; the test plays the manager on the channel.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from gce.transport import frames
from tests.endpoint import wait_until
from tests.rendezvous import wait_for
from tests.uep.uep_process import UepProcess

SLEEP = "import time\ndef nap(s):\n    time.sleep(s)\n    return s\n"
# Says it began (the file STARTED), then runs until the file GATE exists (at most LIMIT seconds).
HOLD = inspect.getsource(wait_for) + ("def hold(started, gate, limit):\n    open(started, 'w').close()\n"
                                      "    return wait_for(gate, limit)\n")  # sent as source


@pytest.mark.parametrize("engine", [{"type": "ThreadPoolEngine", "max_workers": 1},
                                    {"type": "ProcessPoolEngine", "max_workers": 1}], ids=["thread", "process"])
def test_tasks_still_queued_at_a_stop_are_not_answered(engine: dict, tmp_path: Path) -> None:
    uep = UepProcess(engine, tmp_path)
    started, gate = tmp_path / "started", tmp_path / "gate"
    try:
        running = uep.submit(HOLD, "hold", str(started), str(gate), 120)
        wait_until(started.exists, timeout=60)  # the one worker runs it, until the gate opens
        queued = {uep.submit(SLEEP, "nap", 0.1) for _ in range(5)}
        uep.status(lambda e: e["outstanding"] == 6)  # the UEP has taken them: they wait for the one worker
        uep.send(frames.STOP, {})
        # The stop cancels what waits; only then may the running task end (a thread pool's does
        # not stop by itself: the process exits once it returns).
        wait_until(lambda: all(f"task {t}: not run, the user endpoint is stopping" in uep.log.read_text()
                               for t in queued), timeout=60)
        gate.touch()
        answered: dict[str, dict] = {}
        while True:
            try:
                got = uep.frame(30)
            except AssertionError:  # the channel closed: the user endpoint is gone
                break
            assert got is not None, f"the user endpoint neither answered nor stopped; its log:\n{uep.tail()}"
            if got[0] == frames.RESULT:
                answered[got[1]["task_id"]] = got[1]
        assert not queued & set(answered), (
            f"tasks never run were answered at the stop: {[answered[t] for t in queued & set(answered)]}")
        assert set(answered) <= {running}
    finally:
        gate.touch()
        uep.proc.kill()
        uep.proc.wait()
        uep.sock.close()
