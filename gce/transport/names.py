"""Every broker object name gce uses, in one place (DESIGN.md, "Broker topology")."""

from __future__ import annotations

DEFAULT_VHOST = "gce"
# All three are topic exchanges although every binding key is exact: RabbitMQ enforces
# topic permissions (which routing keys an account may publish or bind) on topic
# exchanges only, and those keep a user from binding to another user's results.
TASKS_EXCHANGE = "gce.tasks"  # routing key = endpoint UUID
RESULTS_EXCHANGE = "gce.results"  # routing key = the task's reply_to (a result queue name)
STATUS_EXCHANGE = "gce.status"  # routing key = endpoint UUID
FUNCTIONS_EXCHANGE = "gce.functions"  # routing key = a registered function's queue name
DIRECTORY_EXCHANGE = "gce.directory"  # routing key = a broker user: the endpoints she was given

PROTOCOL_VERSION = 1
TASK_CONTENT_TYPE = "application/x-gce-task"
TASK_BUNDLE_CONTENT_TYPE = "application/x-gce-tasks"  # several tasks (gce.transport.bundles)
RESULT_CONTENT_TYPE = "application/x-gce-result"
RESULT_BUNDLE_CONTENT_TYPE = "application/x-gce-results"  # several results (gce.transport.bundles)
STATUS_CONTENT_TYPE = "application/json"

# An Executor's result queue disappears this long after its last consumer went away.
EXECUTOR_QUEUE_EXPIRES_MS = 6 * 3600 * 1000
# A Client's queue outlives its process so get_result() works later from another one.
CLIENT_QUEUE_EXPIRES_MS = 14 * 24 * 3600 * 1000
# A registered function's queue goes this long after it was last registered or looked up: the
# longest an Erlang timer runs (2**32 - 1 ms, 49.7 days), rounded down.
FUNCTION_QUEUE_EXPIRES_MS = 45 * 24 * 3600 * 1000


# The longest result-queue suffix (the part after the broker user's name) an endpoint accepts
# in reply_to, and a broker account may declare: a uuid4 hex is 32.
RESULT_QUEUE_SUFFIX_MAX = 128


def endpoint_task_queue(endpoint_id: str) -> str:
    return f"gce.ep.{endpoint_id}.tasks"


def endpoint_status_queue(endpoint_id: str) -> str:
    return f"gce.ep.{endpoint_id}.status"


def result_queue(broker_user: str, suffix: str) -> str:
    return f"gce.results.{broker_user}.{suffix}"


def client_result_queue(broker_user: str) -> str:
    """The durable queue every Client of BROKER_USER shares: results wait there until read."""
    return result_queue(broker_user, "client")


def directory_queue(broker_user: str) -> str:
    """The queue holding the list of endpoints BROKER_USER may submit to, as provisioning last wrote it."""
    return f"gce.directory.{broker_user}"


def function_queue(broker_user: str, function_id: str) -> str:
    """The durable queue holding BROKER_USER's registered function FUNCTION_ID (gce.sdk.registry)."""
    return f"gce.functions.{broker_user}.{function_id}"
