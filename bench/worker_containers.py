"""A worker pool's cold start in a podman container against the same pool without one, beside bench.py.

Two user endpoints alike in all but container_type (HTEX, one LocalProvider block, one worker), each
driven over its channel as its manager drives it (tests/uep/uep_process.py), started in turn, round
by round: the figure is the time from starting the user endpoint to its first task's result, which
holds the block's start, the container's (podman run of the image tests/uep/podman_image.py builds
offline) and the pool's connection to the interchange.

container-cold. Target: ≤ 1.5x the plain worker. Alone: .venv/bin/python bench/bench.py --only container-cold
(needs root, podman, runc and the cached rootfs of the systemd tests).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

NAMES = ("container-cold",)
NOOP = "def noop():\n    return None\n"


def _first_result(engine: dict, env: dict[str, str]) -> float:
    from gce.transport import frames
    from tests.uep.uep_process import UepProcess

    with tempfile.TemporaryDirectory(prefix="gce-bench-container-") as tmp:
        began = time.perf_counter()
        uep = UepProcess(engine, Path(tmp), env=env)
        try:
            task = uep.submit(NOOP, "noop")
            _, header, _ = uep.wait_for(lambda k, h: k == frames.RESULT and h["task_id"] == task, 120)
            took = time.perf_counter() - began
            assert header["status"] == "success", header
            return took
        finally:
            uep.close()


def run(only: set[str], rounds: int, s, add_row, rows) -> None:
    if not only & set(NAMES):
        return
    import pytest

    from tests.uep.podman_image import worker_image
    from tests.uep.test_containers import podman_engine

    try:
        store = worker_image()
    except (pytest.skip.Exception, pytest.fail.Exception) as e:  # not runnable here: say why
        rows.append(("worker pool cold start in a podman container", "not run", "-", "-", "≤ 1.5x", False))
        print(f"container-cold not run: {e}")
        return
    plain = {k: v for k, v in podman_engine(store.image).items() if not k.startswith("container_")}
    ours: list[float] = []
    peer: list[float] = []
    try:
        for i in range(rounds):
            for which in ((0, 1) if i % 2 else (1, 0)):  # alternate who goes first
                if which:
                    ours.append(_first_result(podman_engine(store.image), store.env))
                else:
                    peer.append(_first_result(plain, {}))
    finally:
        store.remove_all()
    add_row("worker pool cold start to first result, in a podman container (vs the same pool without)", "s",
            ours, peer, 1.5, False)
