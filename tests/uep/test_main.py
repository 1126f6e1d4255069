"""The user endpoint reads its config through UepConfig, for real: ``python -m gce.uep`` started
the way gce/daemon/spawn.py starts it (config on stdin, channel on an inherited fd) comes up on a
good config and, on a bad one, tells its manager which field is wrong in a FATAL frame."""

from __future__ import annotations

from gce.config.uep import UepConfig
from gce.transport import frames
from tests.uep.uep_process import first_frame

GOOD = UepConfig(endpoint_id="0" * 32, engine={"type": "ThreadPoolEngine", "max_workers": 1},
                 run_dir="/nonexistent", max_result_bytes=1 << 20)


def test_a_good_config_brings_it_up():
    kind, header, rc, _ = first_frame(GOOD.to_dict())
    assert (kind, header["engine"], rc) == (frames.READY, "ThreadPoolEngine", 0)


def test_a_bad_field_is_named_to_the_manager():
    kind, header, rc, stderr = first_frame({**GOOD.to_dict(), "max_result_bytes": "lots"})
    assert kind == frames.FATAL and header["code"] == "ENDPOINT_FAILED"
    assert header["reason"] == ("the user endpoint's config is invalid: "
                                "field 'max_result_bytes' must be an integer, not str")
    assert rc == 1 and f"gce-uep: {header['reason']}" in stderr


def test_no_config_at_all_is_named_too():
    kind, header, rc, _ = first_frame([])
    assert kind == frames.FATAL and rc == 1
    assert header["reason"] == "the user endpoint's config is invalid: it is not a JSON object but list"
