"""gce diagnostic --bundle takes parsl's side too: the interchange log, the blocks' submit
scripts and their output, the workers' logs, and the installed package versions; redacted."""

from __future__ import annotations

import tarfile
from importlib import metadata

from tests.commands.test_diagnostic import diagnose, unused_port, write_endpoint

SECRETS = {
    "interchange": "InterchangeBearerMarker4410",
    "script": "ScriptPasswordMarker7781",
    "stdout": "BlockStdoutMarker2290",
    "stderr": "BlockStderrMarker5543",
    "worker": "WorkerTokenMarker6618",
}


def plant_parsl_run(run_dir) -> None:
    """A run directory as parsl's HighThroughputExecutor leaves it (seen in a real run)."""
    s = SECRETS
    (run_dir / "htex" / "block-0" / "9f2c1d").mkdir(parents=True)
    (run_dir / "submit_scripts").mkdir()
    (run_dir / "htex" / "interchange.log").write_text(
        "1796551200.1 2026-12-06 10:00:00 MainProcess-1 interchange:129 __init__ INFO: Connected to client\n"
        f"1796551201.2 2026-12-06 10:00:01 MainProcess-1 interchange:300 INFO: Authorization: Bearer {s['interchange']}\n")
    block = run_dir / "submit_scripts" / "parsl.htex.block-0.1796551200.5.sh"
    block.write_text(f"#!/bin/bash\nexport SITE_PASSWORD={s['script']}\nprocess_worker_pool.py --block_id=0\n")
    block.with_name(block.name + ".out").write_text(f"block started; token={s['stdout']}\n")
    block.with_name(block.name + ".err").write_text(f"Traceback (most recent call last):\napi_key: {s['stderr']}\n")
    (run_dir / "htex" / "block-0" / "9f2c1d" / "worker_0.log").write_text(
        f"2026-12-06 10:00:02.000 worker_0 INFO: password={s['worker']}\n")


def test_the_bundle_takes_parsl_files_and_versions_redacted(home, tmp_path):
    paths = write_endpoint("parslside", f"broker:\n  url: amqp://ep:pw@127.0.0.1:{unused_port()}/v\n"
                                        "engine:\n  type: HighThroughputEngine\n")
    plant_parsl_run(paths.state_dir / "uep")
    out = tmp_path / "bundles"
    out.mkdir()
    diagnose("--endpoint", "parslside", "--json", "--bundle-dir", str(out))
    [archive] = list(out.iterdir())
    with tarfile.open(archive) as tar:
        members = {m.name.split("/", 1)[1]: tar.extractfile(m).read().decode() for m in tar.getmembers()}
    base = "endpoints/parslside/parsl/"
    assert {name for name in members if name.startswith(base)} == {
        base + "htex/interchange.log", base + "htex/block-0/9f2c1d/worker_0.log",
        base + "submit_scripts/parsl.htex.block-0.1796551200.5.sh",
        base + "submit_scripts/parsl.htex.block-0.1796551200.5.sh.out",
        base + "submit_scripts/parsl.htex.block-0.1796551200.5.sh.err"}
    for name, text in members.items():
        for what, marker in SECRETS.items():
            assert marker not in text, f"the {what} secret is in {name}"
    assert "INFO: Connected to client\n" in members[base + "htex/interchange.log"]
    assert "process_worker_pool.py --block_id=0\n" in members[base + "submit_scripts/parsl.htex.block-0.1796551200.5.sh"]
    versions = members["versions.txt"].splitlines()
    assert f"parsl=={metadata.version('parsl')}" in versions
    assert f"pika=={metadata.version('pika')}" in versions
    names = [v.split("==")[0].lower() for v in versions]
    assert names == sorted(names)
