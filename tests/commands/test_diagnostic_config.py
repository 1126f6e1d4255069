"""gce diagnostic's config check checks engine options as gce start does: a key parsl would
refuse fails the check with a "did you mean", before a start or a restart meets it."""

from __future__ import annotations

import json


def test_a_misspelt_provider_option_fails_the_config_check(gce, configured):
    paths = configured("demo", "--engine", "htex")
    paths.config_file.write_text(paths.config_file.read_text().replace("nodes_per_block:", "node_per_block:"))
    result = gce("diagnostic", "--endpoint", "demo", "--json")
    [check] = [r for r in json.loads(result.stdout) if r["check"] == "config"]
    assert check["status"] == "FAIL"
    assert check["reason"] == (
        f"invalid configuration in {paths.config_file}: engine.provider.node_per_block: LocalProvider has no "
        "option 'node_per_block' (did you mean 'nodes_per_block'?)")
