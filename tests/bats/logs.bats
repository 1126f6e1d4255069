#!/usr/bin/env bats
# gce logs as a shell user meets it: the manager's and the user endpoints' lines merged in time
# order, each prefixed with its source; -n and --since; errors with their exit codes. No broker:
# the log files are written here, in the formats gce and parsl write them.
#
# Run with the venv's bin first on PATH (make test does): bats tests/bats

load common

setup() {
    own_gce_home
    run --separate-stderr gce configure demo --engine htex --max-workers 1 --no-input
    assert_success
    mkdir -p "$GCE_HOME/demo/uep-logs" "$GCE_HOME/demo/uep/htex"
    printf '%s\n' '2026-12-06 10:00:00,000 INFO manager[1] gce.daemon: started' \
        '2026-12-06 10:00:03,000 ERROR manager[1] gce.daemon: a failure' \
        'Traceback (most recent call last):' > "$GCE_HOME/demo/endpoint.log"
    printf '%s\n' '2026-12-06 10:00:01,000 INFO uep[2] gce.uep: engine up' > "$GCE_HOME/demo/uep-logs/default.log"
    # parsl's interchange: the epoch first (2026-12-06 10:00:02 UTC), then its own date
    printf '%s\n' '1796551202.5 2026-12-06 10:00:02 MainProcess-3 interchange:1 INFO: Connected to client' \
        > "$GCE_HOME/demo/uep/htex/interchange.log"
}

@test "a block's output, which has no times, takes its file's time" {
    mkdir -p "$GCE_HOME/demo/uep/submit_scripts"
    err="$GCE_HOME/demo/uep/submit_scripts/parsl.htex.block-0.1796551200.5.sh.err"
    printf '%s\n' 'UserWarning: leaked semaphore objects' > "$err"
    touch -d '2026-12-06 10:00:02.7 UTC' "$err"
    TZ=UTC run --separate-stderr gce logs demo -n 4
    assert_success
    assert_line --index 0 "interchange: 1796551202.5 2026-12-06 10:00:02 MainProcess-3 interchange:1 INFO: Connected to client"
    assert_line --index 1 "block 0: UserWarning: leaked semaphore objects"
    assert_line --index 2 --partial "manager: 2026-12-06 10:00:03,000 ERROR"
}

@test "gce logs merges the manager, the user endpoint and the interchange in time order" {
    TZ=UTC run --separate-stderr gce logs demo
    assert_success
    assert_line --index 0 "manager: 2026-12-06 10:00:00,000 INFO manager[1] gce.daemon: started"
    assert_line --index 1 "uep default: 2026-12-06 10:00:01,000 INFO uep[2] gce.uep: engine up"
    assert_line --index 2 "interchange: 1796551202.5 2026-12-06 10:00:02 MainProcess-3 interchange:1 INFO: Connected to client"
    assert_line --index 3 "manager: 2026-12-06 10:00:03,000 ERROR manager[1] gce.daemon: a failure"
    assert_line --index 4 "manager: Traceback (most recent call last):"
    [ "${#lines[@]}" -eq 5 ]
    [ -z "$stderr" ]
}

@test "gce logs -n and --since keep the newest lines" {
    TZ=UTC run --separate-stderr gce logs demo -n 2
    assert_success
    [ "${#lines[@]}" -eq 2 ]
    assert_line --index 0 "manager: 2026-12-06 10:00:03,000 ERROR manager[1] gce.daemon: a failure"
    TZ=UTC run --separate-stderr gce logs demo --since 2026-12-06T10:00:02Z
    assert_success
    [ "${#lines[@]}" -eq 3 ]
    assert_line --index 0 --partial "interchange: "
}

@test "gce logs refuses a bad --since (64) and an unknown endpoint (78)" {
    run --separate-stderr gce logs demo --since soon
    assert_failure 64
    [ "${stderr_lines[0]}" = "error: cannot use --since 'soon': it is neither an ISO time nor an age" ]
    run --separate-stderr gce logs nosuch
    assert_failure 78
    [[ "${stderr_lines[0]}" == "error: no endpoint named 'nosuch'"* ]]
}
