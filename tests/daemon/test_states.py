"""The transition table of a user endpoint child: every move it allows is made and logged once
with its reason; every other one is refused, logged as an error, and leaves the state as it was."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import pytest

from gce.config.uep import UepConfig
from gce.daemon.children import UepChild
from gce.daemon.states import TRANSITIONS, UepState

ALLOWED = [(old, new) for old, targets in TRANSITIONS.items() for new in sorted(targets)]
REFUSED = [(old, new) for old, new in itertools.product(UepState, UepState) if new not in TRANSITIONS[old]]


def child(state: UepState) -> UepChild:
    conf = UepConfig(endpoint_id="e-1", engine={}, run_dir="/nonexistent", max_result_bytes=1000)
    uep = UepChild("alice/1", conf, Path("/nonexistent"), lambda *a: None, lambda *a: None)
    uep.state = state  # where the table starts from; only transition() moves it from here
    return uep


def test_the_values_are_the_words_the_status_has_always_shown():
    assert [s.value for s in UepState] == ["stopped", "starting", "running", "backoff", "fatal", "stopping",
                                           "compromised"]
    assert UepState.RUNNING == "running" and f"{UepState.FATAL}" == "fatal"


def test_every_state_has_a_row_and_can_be_reached_and_none_moves_to_itself():
    assert set(TRANSITIONS) == set(UepState)
    assert set().union(*TRANSITIONS.values()) == set(UepState)
    assert not [s for s in UepState if s in TRANSITIONS[s]]
    assert len(ALLOWED) == 19 and len(REFUSED) == 49 - 19


@pytest.mark.parametrize("old,new", ALLOWED, ids=[f"{o}->{n}" for o, n in ALLOWED])
def test_an_allowed_move_is_made_and_logged_once_with_its_reason(old, new, caplog):
    uep = child(old)
    with caplog.at_level(logging.INFO, logger="gce.daemon.children"):
        assert uep.transition(new, "the reason it moved") is True
    assert uep.state is new
    assert [r.getMessage() for r in caplog.records] == [f"user endpoint alice/1: {old} -> {new}: the reason it moved"]


@pytest.mark.parametrize("old,new", REFUSED, ids=[f"{o}->{n}" for o, n in REFUSED])
def test_a_move_outside_the_table_is_refused_and_logged_as_an_error(old, new, caplog):
    uep = child(old)
    with caplog.at_level(logging.INFO, logger="gce.daemon.children"):
        assert uep.transition(new, "a bug") is False
    assert uep.state is old
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (f"user endpoint alice/1: refused the state change {old} -> {new} (a bug): "
                                   "not in the transition table")
