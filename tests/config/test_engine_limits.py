"""The engine keys of the failing-block breaker and the scheduler's timeout in config.yaml: a bad
value is an error naming the key and the allowed range; the local pools, which have no blocks and
no scheduler, refuse the keys as they refuse provider."""

from __future__ import annotations

import pytest

from gce.config import engine_options, model
from gce.errors import ConfigError

URL = "amqp://ep:pw@127.0.0.1/gce"


def why(engine: dict) -> str:
    with pytest.raises(ConfigError) as err:
        model.validate({"broker": {"url": URL}, "engine": engine}, "config.yaml")
    return err.value.why


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("block_failure_limit", 0, "engine.block_failure_limit: 0 is less than the minimum of 1 "
                               "(allowed: an integer from 1 to 100)"),
    ("block_failure_limit", 101, "engine.block_failure_limit: 101 is greater than the maximum of 100 "
                                 "(allowed: an integer from 1 to 100)"),
    ("block_failure_limit", 2.5, "engine.block_failure_limit: 2.5 is not of type 'integer' "
                                 "(allowed: an integer from 1 to 100)"),
    ("block_grace_period", -1, "engine.block_grace_period: -1 is less than the minimum of 0"),
    ("scheduler_timeout", 0, "engine.scheduler_timeout: 0 is less than or equal to the minimum of 0 "
                             "(allowed: a number above 0 and at most 3600)"),
    ("scheduler_timeout", 4000, "engine.scheduler_timeout: 4000 is greater than the maximum of 3600 "
                                "(allowed: a number above 0 and at most 3600)"),
    ("scheduler_timeout", "soon", "engine.scheduler_timeout: 'soon' is not of type 'number' "
                                  "(allowed: a number above 0 and at most 3600)"),
    ("scheduler_poll_period", 0.5, "engine.scheduler_poll_period: 0.5 is less than the minimum of 1 "
                                   "(allowed: a number from 1 to 3600)"),
])
def test_a_bad_value_names_the_key_and_the_allowed_range(key: str, value: object, expected: str) -> None:
    assert why({"type": "HighThroughputEngine", key: value}) == expected


def test_good_values_pass_the_schema_and_parsl_s_signature_check() -> None:
    engine = {"type": "HighThroughputEngine", "block_failure_limit": 100, "block_grace_period": 0,
              "scheduler_timeout": 3600, "scheduler_poll_period": 1, "provider": {"type": "LocalProvider"}}
    model.validate({"broker": {"url": URL}, "engine": engine}, "config.yaml")
    engine_options.check(engine, "config.yaml")


@pytest.mark.parametrize("kind", ["ThreadPoolEngine", "ProcessPoolEngine"])
@pytest.mark.parametrize("key", ["block_failure_limit", "block_grace_period", "scheduler_timeout",
                                 "scheduler_poll_period"])
def test_the_local_pools_refuse_the_block_keys(kind: str, key: str) -> None:
    assert why({"type": kind, key: 5}) == f"engine.{key}: this key is not allowed for this engine type"
