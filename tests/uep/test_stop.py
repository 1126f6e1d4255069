"""A user endpoint told to stop answers no task it has not run: those stay spooled at the manager
and run after the next start (a clean stop, `systemctl restart`, a package upgrade). Answering them
would fail tasks that a restart was meant to keep.

The engines are real; the test plays the manager on the channel.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gce.transport import frames
from tests.uep.uep_process import UepProcess

SLEEP = "import time\ndef nap(s):\n    time.sleep(s)\n    return s\n"


@pytest.mark.parametrize("engine", [{"type": "ThreadPoolEngine", "max_workers": 1},
                                    {"type": "ProcessPoolEngine", "max_workers": 1}], ids=["thread", "process"])
def test_tasks_still_queued_at_a_stop_are_not_answered(engine: dict, tmp_path: Path) -> None:
    uep = UepProcess(engine, tmp_path)
    try:
        running = uep.submit(SLEEP, "nap", 4)
        uep.status(lambda e: e["outstanding"] >= 1)
        queued = {uep.submit(SLEEP, "nap", 0.1) for _ in range(5)}
        time.sleep(0.5)  # the UEP has taken them: they wait for the one worker
        uep.send(frames.STOP, {})
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
        uep.proc.kill()
        uep.proc.wait()
        uep.sock.close()
