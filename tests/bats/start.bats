#!/usr/bin/env bats
# gce start --detach as a shell user meets it: against a broker that is not there, and against a
# real one (a private RabbitMQ booted once for this file by `python -m tests.broker`, and shut
# down by its PID at the end). Each test has its own GCE_HOME; nothing may be left running.
#
# Run with the venv's bin first on PATH (make test does): bats tests/bats

load common

REPO=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)

setup_file() {
    start_private_broker
}

teardown_file() {
    stop_private_broker
}

setup() {
    own_gce_home
}

teardown() {
    # A failed test must not leave an endpoint running: stop every one it configured.
    local dir
    for dir in "$GCE_HOME"/*/; do
        [ -f "$dir/config.yaml" ] && gce stop "$(basename "$dir")" >/dev/null 2>&1 || true
    done
}

# The processes started for this test's GCE_HOME (managers, user endpoints, workers), one a line.
processes_of_this_home() {
    PYTHONPATH="$REPO" python -c 'import sys; from pathlib import Path; from tests.endpoint import processes_under
print("\n".join(processes_under(Path(sys.argv[1]))), end="")' "$GCE_HOME"
}

# wait_for_no_process SECONDS: succeed once no process of this GCE_HOME is left.
wait_for_no_process() {
    for _ in $(seq $(( $1 * 5 ))); do
        [ -z "$(processes_of_this_home)" ] && return 0
        sleep 0.2
    done
    echo "still running:" >&3; processes_of_this_home >&3
    return 1
}

# json_get EXPRESSION: evaluate a Python expression over the JSON document in $output as `d`.
json_get() {
    python3 -c 'import json, sys; d = json.loads(sys.stdin.read()); print(eval(sys.argv[1]))' "$1" <<<"$output"
}

@test "gce start --detach against an unreachable broker exits 69 with the reason and leaves nothing running" {
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    printf 'amqp://ep-demo:Pw-%s@127.0.0.1:%s/gce\n' "$port" "$port" > url && chmod 600 url
    run --separate-stderr gce configure demo --broker-url-file url --engine thread --max-workers 1
    assert_success
    run --separate-stderr gce start demo --detach
    assert_failure 69
    [ -z "$output" ]
    [[ "${stderr_lines[0]}" == "error: endpoint 'demo' failed to start: cannot connect to the broker at amqp://ep-demo:***@127.0.0.1:$port/gce: connection refused" ]]
    # the reason comes with the log's last lines, the manager's own account of the failure among them
    # (pika's lines, which only repeat the cause, are left out and counted)
    [[ "$stderr" == *$'\n'"last lines of $GCE_HOME/demo/endpoint.log"*":"$'\n'* ]]
    [[ "$stderr" == *"ERROR manager["*"] gce.daemon: start-up failed: cannot connect to the broker at"* ]]
    [[ "$stderr" != *"pika."* ]]
    # the hint names the likely cause: the broker's address or the broker itself
    [ "${stderr_lines[-1]}" = "hint: is the broker running, and is its address in $GCE_HOME/demo/config.yaml right? gce diagnostic --endpoint demo checks the way there; then gce start demo --detach (full log: $GCE_HOME/demo/endpoint.log)" ]
    [[ "$stderr" != *"Pw-$port"* ]]
    wait_for_no_process 10
    run --separate-stderr gce status demo
    assert_failure 3
}

@test "with a broker: gce start --detach exits 0, status and list say running, gce stop stops it all" {
    run --separate-stderr gce configure live --engine thread --max-workers 2 --no-input
    assert_success
    run --separate-stderr gce broker provision --endpoint live --port "$BROKER_PORT" --rabbitmqctl "$BROKER_DIR/rabbitmqctl"
    assert_success
    assert_line "  wrote broker.url to $GCE_HOME/live/config.yaml (mode 0600)"
    [ "$(stat -c %a "$GCE_HOME/live/config.yaml")" = 600 ]
    password=$(python -c 'import sys, yaml; from urllib.parse import urlsplit
print(urlsplit(yaml.safe_load(open(sys.argv[1]))["broker"]["url"]).password)' "$GCE_HOME/live/config.yaml")
    [ ${#password} -ge 16 ]
    id=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["endpoint_id"])' "$GCE_HOME/live/endpoint.json")

    run --separate-stderr gce start live --detach
    assert_success
    [[ "${lines[0]}" =~ ^endpoint\ live\ started\ \(pid\ ([0-9]+),\ id\ $id\)\;\ logs:\ $GCE_HOME/live/endpoint.log$ ]]
    pid=${BASH_REMATCH[1]}
    assert_line --index 1 "see it with: gce status live; stop it with: gce stop live"
    kill -0 "$pid"

    run --separate-stderr gce status live
    assert_success
    assert_line --index 0 "endpoint live is running"
    refute_output --partial "$password"
    run --separate-stderr gce status live --json
    assert_success
    [ "$(json_get 'd["state"]')" = running ]
    [ "$(json_get 'd["pid"]')" = "$pid" ]
    [ "$(json_get 'd["broker"]["connected"]')" = True ]
    refute_output --partial "$password"

    run --separate-stderr gce list
    assert_success
    assert_line --index 1 --regexp "^live +$id +running +$pid +[^ ]+ +thread +[0-9]+s$"
    run --separate-stderr gce list --json
    assert_success
    [ "$(json_get '[(e["name"], e["state"], e["pid"]) for e in d]')" = "[('live', 'running', $pid)]" ]

    run --separate-stderr gce stop live
    assert_success
    assert_output "endpoint live stopped"
    run --separate-stderr gce status live
    assert_failure 3
    assert_output "endpoint live is stopped: stopped on request"
    run --separate-stderr gce status live --json
    assert_failure 3
    [ "$(json_get 'd["state"]')" = stopped ]
    ! kill -0 "$pid" 2>/dev/null
    wait_for_no_process 10
}
