#!/usr/bin/env bats
# The gce command line as a shell user meets it: exit codes, stdout/stderr, files. No broker:
# endpoints point at a port where nothing listens. Each test has its own GCE_HOME.
#
# Run with the venv's bin first on PATH (make test does): bats tests/bats

load common

setup() {
    own_gce_home
    # A port on 127.0.0.1 where nothing listens (bound, then released).
    PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    URL_FILE="$BATS_TEST_TMPDIR/broker-url"
    printf '# the endpoint account\namqp://ep-demo:Pw-%s@127.0.0.1:%s/gce\n' "$PORT" "$PORT" > "$URL_FILE"
    chmod 600 "$URL_FILE"
}

configure_demo() {
    run --separate-stderr gce configure demo --broker-url-file "$URL_FILE" --engine thread --max-workers 2
    assert_success
}

# json_get EXPRESSION: evaluate a Python expression over the JSON document in $output as `d`.
json_get() {
    python3 -c 'import json, sys; d = json.loads(sys.stdin.read()); print(eval(sys.argv[1]))' "$1" <<<"$output"
}

@test "gce --help lists the commands and exits 0" {
    run --separate-stderr gce --help
    assert_success
    assert_line --index 0 "Usage: gce [OPTIONS] COMMAND [ARGS]..."
    for cmd in version configure start stop restart status list delete diagnostic; do
        assert_line --regexp "^  $cmd +[A-Z]"
    done
    [ -z "$stderr" ]
}

@test "gce with no arguments shows the help on stderr as a usage error" {
    run --separate-stderr gce
    assert_failure 2
    assert_output ""
    [[ "$stderr" == "Usage: gce [OPTIONS] COMMAND [ARGS]..."* ]]
}

@test "gce version --json names gce, Python and the libraries" {
    run --separate-stderr gce version --json
    assert_success
    [ "$(json_get 'sorted(k for k in ("gce", "python", "parsl", "pika", "cloudpickle") if d[k])')" = \
      "['cloudpickle', 'gce', 'parsl', 'pika', 'python']" ]
    [ "$(json_get 'd["python"]')" = "$(python3 -c 'import platform; print(platform.python_version())')" ]
}

@test "gce configure creates the config and the endpoint id" {
    configure_demo
    assert_line --index 0 --regexp '^created endpoint demo \(id [0-9a-f-]{36}\)$'
    assert_line "  broker: amqp://ep-demo:***@127.0.0.1:$PORT/gce"
    refute_output --partial "Pw-$PORT"
    [ -f "$GCE_HOME/demo/config.yaml" ]
    # the config holds the broker password: only its owner may read it
    [ "$(stat -c %a "$GCE_HOME/demo/config.yaml")" = 600 ]
    grep -q "url: \"amqp://ep-demo:Pw-$PORT@127.0.0.1:$PORT/gce\"" "$GCE_HOME/demo/config.yaml"
    run cat "$GCE_HOME/demo/endpoint.json"
    [[ "$(json_get 'd["endpoint_id"]')" =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]]
}

@test "gce configure refuses an endpoint that exists, with error: and hint: on stderr" {
    configure_demo
    before=$(cat "$GCE_HOME/demo/endpoint.json")
    run --separate-stderr gce configure demo
    assert_failure 73
    [ -z "$output" ]
    [ "${stderr_lines[0]}" = "error: endpoint 'demo' already exists: $GCE_HOME/demo/config.yaml is there" ]
    [[ "${stderr_lines[1]}" == "hint: "* ]]
    [ "$(cat "$GCE_HOME/demo/endpoint.json")" = "$before" ]
}

@test "gce configure refuses an invalid name" {
    for name in ../escape 'a b' .hidden; do
        run --separate-stderr gce configure "$name"
        assert_failure 64
        [[ "${stderr_lines[0]}" == "error: invalid endpoint name '$name': "* ]]
        [[ "${stderr_lines[1]}" == "hint: "* ]]
    done
    [ ! -e "$BATS_TEST_TMPDIR/escape" ]
    [ ! -e "$GCE_HOME" ] || [ -z "$(ls -A "$GCE_HOME")" ]
}

@test "gce list shows a stopped endpoint; --json gives its fields" {
    run --separate-stderr gce list
    assert_success
    assert_output "no endpoints are configured in $GCE_HOME"
    configure_demo
    run --separate-stderr gce list
    assert_success
    assert_line --index 0 --regexp '^NAME +ENDPOINT ID +STATE +PID +HOST +ENGINE +UPTIME$'
    assert_line --index 1 --regexp '^demo +[0-9a-f-]{36} +stopped +- +- +thread +-$'
    run --separate-stderr gce list --json
    assert_success
    [ "$(json_get '[(e["name"], e["state"], e["engine_type"]) for e in d]')" = \
      "[('demo', 'stopped', 'ThreadPoolEngine')]" ]
}

@test "gce status exits 3 for a stopped endpoint and 78 for an unknown one, as gce stop does" {
    configure_demo
    run --separate-stderr gce status demo
    assert_failure 3
    assert_output "endpoint demo is stopped"
    [ "$stderr" = "hint: gce start demo --detach" ]
    run --separate-stderr gce status demo --json
    assert_failure 3
    [ "$(json_get 'd["state"]')" = stopped ]
    run --separate-stderr gce status nope
    assert_failure 78
    [[ "${stderr_lines[0]}" == "error: no endpoint named 'nope'"* ]]
    run --separate-stderr gce stop nope
    assert_failure 78
}

@test "gce --version prints the version and exits 0" {
    run --separate-stderr gce --version
    assert_success
    assert_output --regexp '^gce [0-9]+\.[0-9]+\.[0-9]+'
    [ -z "$stderr" ]
}

@test "an endpoint's id names it wherever NAME is accepted" {
    configure_demo
    id=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["endpoint_id"])' "$GCE_HOME/demo/endpoint.json")
    run --separate-stderr gce status "$id"
    assert_failure 3
    assert_output "endpoint demo is stopped"
    run --separate-stderr gce stop "${id^^}"
    assert_success
    run --separate-stderr gce status 00000000-0000-4000-8000-000000000000
    assert_failure 78
}

@test "gce stop of an endpoint that is not running exits 0 and says so" {
    configure_demo
    run --separate-stderr gce stop demo
    assert_success
    assert_output "endpoint demo is not running"
}

@test "gce diagnostic --json: one object per check; exit 1 when the broker is unreachable" {
    configure_demo
    run --separate-stderr gce diagnostic --endpoint demo --json
    assert_failure 1
    [ "$(json_get 'all(set(r) == {"check", "endpoint", "status", "reason", "hint", "details"} for r in d)')" = True ]
    [ "$(json_get 'sorted({r["endpoint"] or "-" for r in d})')" = "['-', 'demo']" ]
    [ "$(json_get '[r["status"] for r in d if r["check"] == "broker tcp"]')" = "['FAIL']" ]
    [ "$(json_get '[r["status"] for r in d if r["check"] == "config"]')" = "['PASS']" ]
    refute_output --partial "Pw-$PORT"
}

@test "gce diagnostic exits 0 when nothing failed (warnings do not count)" {
    run --separate-stderr gce diagnostic --json
    assert_success
    [ "$(json_get '[r["status"] for r in d if r["check"] == "endpoints"]')" = "['WARN']" ]
    run --separate-stderr gce diagnostic
    assert_success
    assert_line --index 0 "this host"
    assert_line --regexp '^[0-9]+ passed, 1 warning, 0 failed, [0-9]+ skipped$'
}

@test "gce diagnostic --bundle writes a tarball without the broker password" {
    configure_demo
    run --separate-stderr gce diagnostic --endpoint demo --bundle
    assert_failure 1
    bundle=$(ls "$BATS_TEST_TMPDIR"/gce-diagnostic-*.tar.gz)
    assert_line "bundle written: $bundle"
    [ "$(stat -c %a "$bundle")" = 600 ]
    run tar -tzf "$bundle"
    assert_line --regexp '^gce-diagnostic-[^/]+-[0-9]{8}T[0-9]{6}Z/endpoints/demo/config/config.yaml$'
    assert_line --regexp '/report.json$'
    run tar -xzOf "$bundle"
    refute_output --partial "Pw-$PORT"
    assert_output --partial "amqp://ep-demo:***@127.0.0.1:$PORT/gce"
}

@test "gce delete --yes removes a stopped endpoint" {
    configure_demo
    run --separate-stderr gce delete demo --yes
    assert_success
    assert_line "removed $GCE_HOME/demo"
    assert_line "endpoint demo deleted"
    assert_line "its broker account ep-demo still exists at 127.0.0.1:$PORT, vhost gce"
    [ "$stderr" = "hint: revoke it on the broker host: gce broker revoke --endpoint demo" ]
    [ ! -e "$GCE_HOME/demo" ]
    run --separate-stderr gce list --json
    assert_output "[]"
}

@test "gce delete without --yes and without a terminal refuses" {
    configure_demo
    run --separate-stderr gce delete demo </dev/null
    assert_failure 64
    [[ "${stderr_lines[0]}" == "error: not deleting endpoint 'demo' without confirmation: "* ]]
    [ "${stderr_lines[1]}" = "hint: gce delete demo --yes" ]
    [ -f "$GCE_HOME/demo/config.yaml" ]
}

@test "gce broker revoke without --yes and without a terminal refuses before reaching the broker" {
    run --separate-stderr gce broker revoke --user alice@uni.edu --endpoint demo --rabbitmqctl /nonexistent </dev/null
    assert_failure 64
    [ "${stderr_lines[0]}" = "error: not revoking without confirmation: gce cannot ask for it: standard input is not a terminal" ]
    [ "${stderr_lines[1]}" = "hint: gce broker revoke --user alice@uni.edu --endpoint demo --vhost gce --yes" ]
    run --separate-stderr gce broker revoke --yes </dev/null
    assert_failure 64
    [ "${stderr_lines[0]}" = "error: nothing to revoke: name a --user or an --endpoint" ]
}
