"""What a user reads when the broker cannot be reached: pika's layers peeled to the cause."""

from __future__ import annotations

import pika
from pika.adapters.utils.connection_workflow import AMQPConnectionWorkflowFailed, AMQPConnectorSocketConnectError

from gce.transport.link_errors import explain

URL = "amqp://ep:s3cret@broker.example.org:5672/gce"


def test_a_refused_connection_says_connection_refused():
    socket_error = AMQPConnectorSocketConnectError(ConnectionRefusedError(111, "Connection refused"))
    for exc in (AMQPConnectionWorkflowFailed([socket_error]), pika.exceptions.AMQPConnectionError(socket_error)):
        e = explain(exc, URL)
        assert str(e) == "cannot connect to the broker at amqp://ep:***@broker.example.org:5672/gce: connection refused"
        assert not e.fatal  # the broker may come up: worth retrying


def test_a_refused_login_is_fatal_and_names_the_user_not_the_password():
    e = explain(pika.exceptions.ProbableAuthenticationError("ACCESS_REFUSED"), URL)
    assert str(e) == ("the broker at amqp://ep:***@broker.example.org:5672/gce refused the login of user 'ep' "
                      "(wrong password?)")
    assert e.fatal


def test_an_error_that_prints_as_nothing_is_named_by_its_type():
    e = explain(pika.exceptions.AMQPConnectionError(pika.exceptions.StreamLostError()), URL)
    assert str(e) == "cannot connect to the broker at amqp://ep:***@broker.example.org:5672/gce: StreamLostError"


def test_the_backoff_after_refusals_doubles_is_capped_and_jittered():
    from gce.transport.link_errors import REFUSAL_CAP, REFUSAL_FIRST, refusal_backoff

    first = [refusal_backoff(0) for _ in range(200)]
    assert all(0.75 * REFUSAL_FIRST <= d <= 1.25 * REFUSAL_FIRST for d in first)
    assert len(set(first)) > 1  # jittered: endpoints refused together do not retry in step
    assert all(1.5 * REFUSAL_FIRST <= refusal_backoff(1) <= 2.5 * REFUSAL_FIRST for _ in range(50))
    assert all(refusal_backoff(n) <= 1.25 * REFUSAL_CAP for n in (10, 100, 10_000))
    assert min(refusal_backoff(100) for _ in range(50)) >= 0.75 * REFUSAL_CAP
