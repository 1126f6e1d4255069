# What every gce bats file needs: bats-support and bats-assert, and tests that each start in a
# GCE_HOME of their own with none of the variables that change gce's output. `load common`.

bats_require_minimum_version 1.5.0

load /usr/lib/bats/bats-support/load
load /usr/lib/bats/bats-assert/load

# In setup(): this test's own GCE_HOME, a clean environment, its temporary directory as cwd.
own_gce_home() {
    export GCE_HOME="$BATS_TEST_TMPDIR/gce-home"
    unset GCE_ENDPOINT_BROKER_URL GCE_BROKER_URL GCE_DEBUG NO_COLOR FORCE_COLOR COLUMNS
    cd "$BATS_TEST_TMPDIR"
}

# In setup_file(): a private RabbitMQ for this file (`python -m tests.broker`), its port in
# BROKER_PORT and its rabbitmqctl in BROKER_DIR. stop_private_broker in teardown_file().
start_private_broker() {
    local repo
    repo=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
    export BROKER_DIR="$BATS_FILE_TMPDIR/broker"
    mkdir -p "$BROKER_DIR"
    # fd 3 closed: bats waits for whatever still holds it. The helper also stops when bats dies.
    (cd "$repo" && exec python -m tests.broker "$BROKER_DIR") >"$BATS_FILE_TMPDIR/broker.log" 2>&1 3>&- &
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
}

stop_private_broker() {
    local pid
    pid=$(cat "$BATS_FILE_TMPDIR/broker.pid" 2>/dev/null) || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    echo "the private broker (pid $pid) did not stop within 60 s" >&3
    return 1
}
