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
