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
