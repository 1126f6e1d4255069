#!/usr/bin/env bats
# Watching an endpoint from scripts: `gce status --format openmetrics`, `gce blocks`, `gce tasks`,
# against a stopped endpoint and a running one on a real broker (a private RabbitMQ booted once for
# this file by `python -m tests.broker`, shut down by its PID at the end). One GCE_HOME for the
# file, whose endpoint is started once; nothing may be left running.
#
# Run with the venv's bin first on PATH (make test does): bats tests/bats

load common

setup_file() {
    export GCE_HOME="$BATS_FILE_TMPDIR/gce-home"
    start_private_broker
    unset GCE_ENDPOINT_BROKER_URL GCE_BROKER_URL GCE_DEBUG NO_COLOR FORCE_COLOR COLUMNS
    gce configure watched --engine thread --max-workers 2 --no-input >/dev/null
    gce broker provision --endpoint watched --user alice --credentials "$BATS_FILE_TMPDIR/users.yaml" \
        --port "$BROKER_PORT" --rabbitmqctl "$BROKER_DIR/rabbitmqctl" >/dev/null
    gce configure idle --engine thread --max-workers 1 --no-input >/dev/null
    gce start watched --detach >/dev/null
    # one task that succeeds and one that fails, submitted as alice through the SDK
    python - "$BATS_FILE_TMPDIR/users.yaml" "$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["endpoint_id"])' "$GCE_HOME/watched/endpoint.json")" <<'PY'
import sys, yaml
from gce.sdk import Executor
def square(x):
    return x * x
def boom():
    return 1 / 0
with Executor(endpoint_id=sys.argv[2], broker_url=yaml.safe_load(open(sys.argv[1]))["alice"]) as ex:
    assert ex.submit(square, 4).result(timeout=60) == 16
    assert isinstance(ex.submit(boom).exception(timeout=60), ZeroDivisionError)
PY
}

teardown_file() {
    gce stop watched >/dev/null 2>&1 || true
    stop_private_broker
}

setup() {
    cd "$BATS_TEST_TMPDIR"
}

@test "gce status --format openmetrics: gce_up 1 for a running endpoint, gce_up 0 and exit 3 for a stopped one" {
    run --separate-stderr gce status watched --format openmetrics
    assert_success
    [ -z "$stderr" ]
    assert_line 'gce_up{endpoint="watched"} 1'
    assert_line 'gce_broker_connected{endpoint="watched"} 1'
    assert_line 'gce_spool_unwritable{endpoint="watched"} 0'
    assert_line '# TYPE gce_tasks_received counter'
    assert_line --regexp '^gce_tasks_received_total\{endpoint="watched"\} [0-9]+$'
    [ "${lines[-1]}" = "# EOF" ]

    run --separate-stderr gce status idle --format openmetrics
    assert_failure 3
    [ -z "$stderr" ]
    assert_output $'# TYPE gce_up gauge\n# HELP gce_up 1 while the endpoint\'s manager runs (degraded too), 0 when it does not.\ngce_up{endpoint="idle"} 0\n# EOF'

    run --separate-stderr gce status nope --format openmetrics
    assert_failure 78
    assert_output ""
}

@test "gce tasks: the latest tasks, the failed ones, one task's traceback; exit 3 stopped, 78 unknown" {
    run --separate-stderr gce tasks watched
    assert_success
    [ -z "$stderr" ]
    assert_line --index 0 --regexp '^TIME +TASK +FUNCTION +SUBMITTER +USER +STATE +QUEUED FOR +RAN FOR +CODE +MESSAGE$'
    assert_line --regexp '^[0-9:]{8} +[0-9a-f-]{36} +square +alice +[^ ]+ +success '
    assert_line --regexp '^[0-9:]{8} +[0-9a-f-]{36} +boom +alice +[^ ]+ +failed .* TASK_EXCEPTION +ZeroDivisionError'

    run --separate-stderr gce tasks watched --failed --json
    assert_success
    [ "$(json_get '[(e["function_name"], e["event"]) for e in d]')" = "[('boom', 'failed')]" ]
    id=$(json_get 'd[0]["task_id"]')

    run --separate-stderr gce tasks watched --task "$id"
    assert_success
    assert_line --index 0 "task $id"
    assert_line "  function       boom"
    assert_line "  code           TASK_EXCEPTION"
    assert_line "error:"
    assert_line "  ZeroDivisionError: division by zero"
    assert_line "remote traceback:"
    assert_line --regexp '^ +File .*, in boom$'

    run --separate-stderr gce tasks idle
    assert_failure 3
    assert_output ""
    [ "$stderr" = $'error: endpoint \'idle\' is not running: it is stopped\nhint: gce start idle --detach' ]
    run --separate-stderr gce tasks nope
    assert_failure 78
}

@test "gce blocks: a table (or that there is none) and a JSON list; exit 3 stopped, 78 unknown" {
    run --separate-stderr gce blocks watched
    assert_success
    [ "$output" = "endpoint watched has no blocks" ] || assert_line --index 0 --regexp '^USER ENDPOINT +BLOCK +JOB +PROVIDER +STATE '
    run --separate-stderr gce blocks watched --json
    assert_success
    [ "$(json_get 'type(d).__name__')" = list ]
    run --separate-stderr gce blocks idle
    assert_failure 3
    assert_output ""
    run --separate-stderr gce blocks nope --user alice
    assert_failure 78
}

# json_get EXPRESSION: evaluate a Python expression over the JSON document in $output as `d`.
json_get() {
    python3 -c 'import json, sys; d = json.loads(sys.stdin.read()); print(eval(sys.argv[1]))' "$1" <<<"$output"
}
