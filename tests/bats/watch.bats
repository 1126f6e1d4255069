#!/usr/bin/env bats
# Watching an endpoint from scripts: `gce status --format openmetrics`, `gce blocks`, `gce tasks`,
# against a stopped endpoint and a running one on a real broker (a private RabbitMQ booted once for
# this file by `python -m tests.broker`, shut down by its PID at the end). One GCE_HOME for the
# file, whose endpoint is started once; nothing may be left running.
#
# Run with the venv's bin first on PATH (make test does): bats tests/bats

load common

REPO=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)

setup_file() {
    export GCE_HOME="$BATS_FILE_TMPDIR/gce-home"
    export BROKER_DIR="$BATS_FILE_TMPDIR/broker"
    mkdir -p "$BROKER_DIR"
    # fd 3 closed: bats waits for whatever still holds it. The helper also stops when bats dies.
    (cd "$REPO" && exec python -m tests.broker "$BROKER_DIR") >"$BATS_FILE_TMPDIR/broker.log" 2>&1 3>&- &
    echo $! >"$BATS_FILE_TMPDIR/broker.pid"
    for _ in $(seq 900); do  # a boot takes ~5 s, much more on a busy machine
        [ -f "$BROKER_DIR/port" ] && break
        if ! kill -0 "$(cat "$BATS_FILE_TMPDIR/broker.pid")" 2>/dev/null; then
            echo "the private broker exited:" >&3; cat "$BATS_FILE_TMPDIR/broker.log" >&3; return 1
        fi
        sleep 0.1
    done
    [ -f "$BROKER_DIR/port" ] || { echo "the private broker did not answer within 90 s" >&3; return 1; }
    export BROKER_PORT=$(cat "$BROKER_DIR/port")
    unset GCE_ENDPOINT_BROKER_URL GCE_BROKER_URL GCE_DEBUG NO_COLOR FORCE_COLOR COLUMNS
    gce configure watched --engine thread --max-workers 2 --no-input >/dev/null
    gce broker provision --endpoint watched --user alice --credentials "$BATS_FILE_TMPDIR/users.yaml" \
        --port "$BROKER_PORT" --rabbitmqctl "$BROKER_DIR/rabbitmqctl" >/dev/null
    gce configure idle --engine thread --max-workers 1 --no-input >/dev/null
    gce start watched --detach >/dev/null
}

teardown_file() {
    gce stop watched >/dev/null 2>&1 || true
    local pid
    pid=$(cat "$BATS_FILE_TMPDIR/broker.pid" 2>/dev/null) || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    echo "the private broker (pid $pid) did not stop within 60 s" >&3
    return 1
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
