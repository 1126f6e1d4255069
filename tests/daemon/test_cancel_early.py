"""Cancels that reach the manager before their task: remembered, bounded, and only the canceller's
own task is answered by one (gce.daemon.cancel; end to end in tests/daemon/test_cancel.py)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

from gce.daemon.cancel import EARLY_CANCELS, Control
from gce.transport.message import TaskHeaders


def _control() -> tuple[Control, list]:
    answered: list = []
    manager = SimpleNamespace(config=SimpleNamespace(endpoint_id="e" * 32),
                              dispatcher=SimpleNamespace(answer=lambda rh, body: answered.append(rh)))
    return Control(manager), answered  # type: ignore[arg-type]


def _task(task_id: str, user: str) -> TaskHeaders:
    return TaskHeaders(task_id=task_id, user_id=user, reply_to=f"gce.results.{user}.x", function_id="f" * 64)


def test_only_the_canceller_s_own_task_is_answered_and_only_once():
    control, answered = _control()
    task = str(uuid.uuid4())
    control._remember(task, "alice")
    assert not control.cancelled_early(_task(task, "bob"))  # bob's task of that id is not alice's to cancel
    assert control.cancelled_early(_task(task, "alice"))
    assert [(rh.task_id, rh.error_code) for rh in answered] == [(task, "CANCELLED")]
    assert not control.cancelled_early(_task(task, "alice"))  # used up (a redelivery is dropped before)


def test_the_remembered_cancels_are_bounded_oldest_forgotten_first():
    control, answered = _control()
    ids = [str(uuid.uuid4()) for _ in range(EARLY_CANCELS + 1)]
    for task in ids:
        control._remember(task, "alice")
    assert len(control.early) == EARLY_CANCELS
    assert not control.cancelled_early(_task(ids[0], "alice")) and control.cancelled_early(_task(ids[-1], "alice"))
