"""gce configure: files, modes, broker URL sources, refusals, and a password never printed."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import uuid
from importlib import resources
from pathlib import Path

import pytest
import yaml

from gce.config import model, writer
from gce.config.paths import endpoint_paths
from gce.config.template_vars import local_runtime, mapped_identity_of
from gce.config.templating import render_for_endpoint
from gce.errors import UsageError
from tests.commands.conftest import GCE_BIN


def _uuid_in(text: str) -> str:
    ep_id = text.split("(id ")[1].split(")")[0]
    uuid.UUID(ep_id, version=4)
    return ep_id


def test_default_configure_writes_a_loadable_process_pool_endpoint(gce, home):
    result = gce("configure", "demo", "--max-workers", "4")
    assert result.exit_code == 0, result.stderr
    paths = endpoint_paths("demo")
    ep_id = _uuid_in(result.stdout)
    assert result.stdout == (
        f"created endpoint demo (id {ep_id})\n"
        f"  config: {home}/demo/config.yaml (mode 0600)\n"
        f"  id:     {home}/demo/endpoint.json\n"
        "  broker: amqp://127.0.0.1:5672/gce\n"
        "  engine: ProcessPoolEngine, 4 workers\n"
        f"next: put the broker's address and credentials in broker.url of {home}/demo/config.yaml,\n"
        "      then run: gce start demo\n"
    )
    assert result.stderr == ""
    config = model.load(paths)
    assert config.endpoint_id == ep_id
    assert config.broker_url == "amqp://127.0.0.1:5672/gce"
    assert config.engine == {"type": "ProcessPoolEngine", "max_workers": 4}
    record = json.loads(paths.endpoint_json.read_text())
    assert set(record) == {"endpoint_id", "name", "created_at"}
    assert (record["endpoint_id"], record["name"]) == (ep_id, "demo")
    assert record["created_at"].endswith("+00:00")
    assert stat.S_IMODE(paths.config_dir.stat().st_mode) == 0o700
    # the placeholder URL will receive credentials: the file is private from the start
    assert stat.S_IMODE(paths.config_file.stat().st_mode) == 0o600


@pytest.mark.parametrize("provider", ["local", "slurm"])
def test_a_provider_without_an_engine_writes_htex(gce, home, provider):
    # A provider starts blocks of workers: the process pool has none, HTEX is what takes one.
    result = gce("configure", "e", "--provider", provider, "--max-workers", "2", "--broker-url", "amqp://b/gce")
    assert result.exit_code == 0, result.stderr
    engine = model.load(endpoint_paths("e")).engine
    assert (engine["type"], engine["max_workers_per_node"]) == ("HighThroughputEngine", 2)
    assert engine["provider"]["type"] == {"local": "LocalProvider", "slurm": "SlurmProvider"}[provider]
    assert "  engine: HighThroughputEngine, 2 workers per node" in result.stdout


def test_the_default_process_pool_config_says_how_to_run_workers_in_batch_jobs(gce, home):
    gce("configure", "e", "--broker-url", "amqp://b/gce")
    text = endpoint_paths("e").config_file.read_text()
    assert "gce configure NAME --provider slurm" in text and "HighThroughputEngine" in text


@pytest.mark.parametrize("engine, expected, per", [
    ("process", {"type": "ProcessPoolEngine", "max_workers": 1}, "1 worker"),
    ("thread", {"type": "ThreadPoolEngine", "max_workers": 1}, "1 worker"),
    ("HTEX", None, "1 worker per node"),
    ("mpi", None, "1 worker per block (each an MPI task)"),
])
def test_engines(gce, home, engine, expected, per):
    result = gce("configure", "e", "--engine", engine, "--max-workers", "1", "--broker-url", "amqp://b/gce")
    assert result.exit_code == 0, result.stderr
    assert f"  engine: {model.load(endpoint_paths('e')).engine['type']}, {per}\n" in result.stdout
    if expected:
        assert model.load(endpoint_paths("e")).engine == expected


def test_max_workers_defaults_to_the_cpu_count(gce, home):
    assert gce("configure", "demo", "--engine", "thread").exit_code == 0
    assert model.load(endpoint_paths("demo")).engine["max_workers"] == (os.cpu_count() or 1)


def test_display_name_with_markup_and_yaml_is_kept_verbatim(gce, home):
    name = '[bold]Lab[/bold] "GPU": {x: 1}'
    result = gce("configure", "demo", "--display-name", name, "--broker-url", "amqp://b/gce")
    assert result.exit_code == 0, result.stderr
    assert model.load(endpoint_paths("demo")).display_name == name


def test_broker_url_with_password_on_argv_warns_and_is_never_printed(gce, home):
    result = gce("configure", "demo", "--broker-url", "amqps://ep:Sup3rS3cret@broker:5671/gce")
    assert result.exit_code == 0
    assert "Sup3rS3cret" not in result.output
    assert "  broker: amqps://ep:***@broker:5671/gce\n" in result.stdout
    assert result.stdout.endswith("next: gce start demo  (add --detach to run it in the background)\n")
    assert result.stderr == (
        "warning: the broker password was given on the command line, where other users of this machine can see "
        "it (ps, shell history); --broker-url-file FILE keeps it out of sight\n"
    )
    paths = endpoint_paths("demo")
    assert model.load(paths).broker_url == "amqps://ep:Sup3rS3cret@broker:5671/gce"
    assert stat.S_IMODE(paths.config_file.stat().st_mode) == 0o600


def test_broker_url_file(gce, home, tmp_path):
    url_file = tmp_path / "url"
    url_file.write_text("# the endpoint's account\n\n  amqps://ep:pw-from-file@broker/gce  \n")
    url_file.chmod(0o600)
    result = gce("configure", "demo", "--broker-url-file", str(url_file))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert "pw-from-file" not in result.output
    assert model.load(endpoint_paths("demo")).broker_url == "amqps://ep:pw-from-file@broker/gce"


def test_broker_url_file_readable_by_others_gets_a_warning(gce, home, tmp_path):
    url_file = tmp_path / "url"
    url_file.write_text("amqps://ep:pw@broker/gce\n")
    url_file.chmod(0o644)
    result = gce("configure", "demo", "--broker-url-file", str(url_file))
    assert result.exit_code == 0
    assert result.stderr == f"warning: {url_file} holds a password and other users may read it; chmod 600 {url_file}\n"


def test_broker_url_from_the_environment_without_password_is_world_readable(gce, home, monkeypatch):
    monkeypatch.setenv("GCE_ENDPOINT_BROKER_URL", "amqp://broker.example.org/gce")
    result = gce("configure", "demo")
    assert result.exit_code == 0
    assert "  broker: amqp://broker.example.org/gce\n" in result.stdout
    paths = endpoint_paths("demo")
    assert model.load(paths).broker_url == "amqp://broker.example.org/gce"
    assert stat.S_IMODE(paths.config_file.stat().st_mode) == 0o644


@pytest.mark.parametrize("args, stderr", [
    (["--broker-url", "amqp://a/b", "--broker-url-file", "/x"],
     "error: conflicting options: give --broker-url or --broker-url-file, not both\n"),
    (["--broker-url", "https://u:hidden@h/v"],
     "error: invalid broker URL 'https://u:***@h/v': it must start with amqp:// or amqps:// and contain no spaces\n"
     "hint: the URL looks like amqps://USER:PASSWORD@HOST:5671/VHOST\n"),
    (["--broker-url-file", "/nonexistent/url"],
     "error: cannot read the broker URL from /nonexistent/url: No such file or directory\n"
     "hint: the file holds one line: amqps://USER:PASSWORD@HOST:5671/VHOST\n"),
    (["--display-name", "x" * 300],
     "error: invalid display name: it has 300 characters; at most 256 fit\n"),
])
def test_bad_options_are_usage_errors(gce, home, args, stderr):
    result = gce("configure", "demo", *args)
    assert result.exit_code == 64
    assert result.stderr == stderr
    assert result.stdout == ""
    assert not (home / "demo").exists()


def test_empty_url_file(gce, home, tmp_path):
    (tmp_path / "url").write_text("# nothing\n\n")
    result = gce("configure", "demo", "--broker-url-file", str(tmp_path / "url"))
    assert result.exit_code == 64
    assert result.stderr == f"error: no broker URL in {tmp_path}/url: the file holds no line other than blanks and comments\n"


def test_invalid_name_is_refused(gce, home):
    result = gce("configure", "../etc")
    assert result.exit_code == 64
    assert result.stderr.startswith("error: invalid endpoint name '../etc': names are 1-63 characters")
    assert list(home.iterdir()) == []


def test_existing_endpoint_is_refused_and_untouched(gce, home):
    assert gce("configure", "demo").exit_code == 0
    paths = endpoint_paths("demo")
    before = (paths.config_file.read_bytes(), paths.endpoint_json.read_bytes())
    result = gce("configure", "demo", "--engine", "thread")
    assert result.exit_code == 73
    assert result.stderr == (
        f"error: endpoint 'demo' already exists: {paths.config_file} is there\n"
        "hint: gce delete demo first, or choose another name\n"
    )
    assert (paths.config_file.read_bytes(), paths.endpoint_json.read_bytes()) == before


def test_bad_engine_and_workers_are_typer_usage_errors(gce, home):
    assert gce("configure", "demo", "--engine", "slurm").exit_code == 2
    assert gce("configure", "demo", "--max-workers", "0").exit_code == 2


def test_configure_as_a_real_process(gce_bin, home):
    proc = gce_bin("configure", "real", "--engine", "process", "--max-workers", "2",
                   env={"GCE_ENDPOINT_BROKER_URL": "amqp://ep:envpw@127.0.0.1:5672/gce"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "envpw" not in proc.stdout
    assert "  broker: amqp://ep:***@127.0.0.1:5672/gce\n" in proc.stdout
    data = yaml.safe_load(endpoint_paths("real").config_file.read_text())
    assert data["engine"] == {"type": "ProcessPoolEngine", "max_workers": 2}


# -- gce configure --multi-user -------------------------------------------------------------------

CONFIG_FILE = Path("/etc/gce/m/config.yaml")
MULTI_FILES = ["user_config_template.yaml.j2", "user_config_schema.json", "user_environment.yaml"]
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="root configures endpoints that map identities")


def _packaged(name: str) -> bytes:
    return resources.files("gce").joinpath("templates", "multi_user", name).read_bytes()


@as_root
def test_multi_user_as_root_writes_every_file_and_says_what_next(gce, home):
    result = gce("configure", "multi", "--multi-user")
    assert result.exit_code == 0, result.stderr
    d = home / "multi"
    ep_id = _uuid_in(result.stdout)
    assert result.stdout == (
        f"created multi-user endpoint multi (id {ep_id})\n"
        f"  config:      {d}/config.yaml (mode 0600)\n"
        f"  id:          {d}/endpoint.json\n"
        f"  template:    {d}/user_config_template.yaml.j2\n"
        f"  schema:      {d}/user_config_schema.json\n"
        f"  environment: {d}/user_environment.yaml\n"
        f"  mapping:     {d}/identity_mapping.json\n"
        "  broker:      amqp://127.0.0.1:5672/gce\n"
        f"next: 1. edit the rules of {d}/identity_mapping.json (the example maps alice@example.org to alice)\n"
        "      2. gce broker provision --endpoint multi --user USER@DOMAIN --credentials FILE "
        f"(or put the broker's URL in broker.url of {d}/config.yaml)\n"
        "      3. check the template: gce render-user-config multi --user-config FILE.json\n"
        "      4. gce start multi  (add --detach to run it in the background)\n"
    )
    assert result.stderr == ""
    assert sorted(p.name for p in d.iterdir()) == sorted(
        ["config.yaml", "endpoint.json", "identity_mapping.json", *MULTI_FILES])
    for name in [*MULTI_FILES, "identity_mapping.json"]:
        assert (d / name).read_bytes() == _packaged(name)
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o644, name
    assert stat.S_IMODE((d / "config.yaml").stat().st_mode) == 0o600
    # user endpoints render the template as the mapped user: they must reach it, not list the directory
    assert stat.S_IMODE(d.stat().st_mode) == 0o711
    config = model.load(endpoint_paths("multi"))
    assert (config.endpoint_id, config.multi_user, config.engine) == (ep_id, True, {})
    assert config.identity_mapping_config_path == f"{d}/identity_mapping.json"
    assert config.user_config_template_path == f"{d}/user_config_template.yaml.j2"
    assert config.user_config_schema_path == f"{d}/user_config_schema.json"
    assert config.user_environment_path == f"{d}/user_environment.yaml"
    assert (config.min_uid, config.idle_timeout, config.allow_privileged_mapping) == (1000, 1800.0, False)
    assert (config.allowed_identities, config.allowed_domains, config.allowed_functions) == (None, None, None)
    raw = yaml.safe_load(config_text := (d / "config.yaml").read_text())
    assert set(raw) == {"display_name", "broker", "multi_user", "identity_mapping_config_path", "min_uid",
                        "idle_timeout"}
    assert "#allowed_functions: " in config_text and "#allowed_identities: " in config_text
    assert "#allowed_domains: " in config_text


@pytest.mark.parametrize("mapping", [True, False])
def test_every_multi_user_key_shown_commented_out_is_valid_when_uncommented(mapping):
    ep = writer.NewEndpoint(name="m", broker_url="amqp://b/gce", multi_user=True, identity_mapping=mapping)
    text = writer.render(ep, CONFIG_FILE)
    uncommented = re.sub(r"^(\s*)#([a-z_]+:)", r"\1\2", text, flags=re.M)
    data = yaml.safe_load(uncommented)
    model.validate(data, "uncommented")
    mapping_keys = {"identity_mapping_config_path", "identity_mapping_timeout", "min_uid", "allow_privileged_mapping"}
    assert set(data) == {"display_name", "broker", "multi_user", "user_config_template_path",
                         "user_config_schema_path", "user_environment_path", "allowed_identities",
                         "allowed_domains", "idle_timeout", "allowed_functions", "limits", "status_period",
                         "debug"} | (mapping_keys if mapping else set())
    # the defaults shown are the defaults the loader uses
    loaded, default = model.from_data("m", "i", data), model.from_data("m", "i", yaml.safe_load(text))
    for key in ("user_config_template_path", "user_config_schema_path", "user_environment_path", "min_uid",
                "allow_privileged_mapping", "idle_timeout", "queue_type", "prefetch", "heartbeat",
                "max_payload_bytes", "max_result_bytes", "task_attempts", "status_period", "debug"):
        assert getattr(loaded, key) == getattr(default, key), key
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*#?[a-z_]+:", line):
            above = lines[i - 1].strip()
            assert above.startswith("# ") or above.endswith(":"), f"line {i + 1} {line!r} has no comment"


def test_multi_user_display_name_and_url_are_quoted():
    nasty = 'x"\nidentity_mapping_config_path: /tmp/evil.json'
    ep = writer.NewEndpoint(name="m", broker_url="amqp://u:p@b/gce", display_name=nasty, multi_user=True)
    data = writer.check_rendered(writer.render(ep, CONFIG_FILE), ep, str(CONFIG_FILE))
    assert data["display_name"] == nasty and "identity_mapping_config_path" not in data


def test_identity_mapping_needs_multi_user():
    with pytest.raises(UsageError, match="only a multi-user endpoint maps identities"):
        writer.check_values(writer.NewEndpoint(name="m", broker_url="amqp://b/gce", identity_mapping=True))


@as_root
def test_multi_user_refuses_an_existing_endpoint_or_leftover_files(gce, home):
    assert gce("configure", "demo").exit_code == 0
    result = gce("configure", "demo", "--multi-user")
    assert result.exit_code == 73
    assert result.stderr.startswith("error: endpoint 'demo' already exists: ")
    (home / "left").mkdir()
    (home / "left" / "user_config_template.yaml.j2").write_text("mine\n")
    result = gce("configure", "left", "--multi-user")
    assert result.exit_code == 73
    assert result.stderr == (f"error: endpoint 'left' already exists: {home}/left/user_config_template.yaml.j2 is "
                             "there\nhint: gce delete left first, or choose another name\n")
    assert sorted(p.name for p in (home / "left").iterdir()) == ["user_config_template.yaml.j2"]
    assert (home / "left" / "user_config_template.yaml.j2").read_text() == "mine\n"


@as_root
def test_multi_user_with_a_broker_url_and_the_written_template_renders(gce, home):
    result = gce("configure", "multi", "--multi-user", "--broker-url", "amqp://b/gce")
    assert result.exit_code == 0, result.stderr
    assert "gce broker provision" not in result.stdout
    assert stat.S_IMODE((home / "multi" / "config.yaml").stat().st_mode) == 0o644
    config = model.load(endpoint_paths("multi"))
    rendered = render_for_endpoint(config, {"workers_per_node": 3}, source="test", user_runtime=local_runtime(),
                                   mapped_identity=mapped_identity_of("root"))
    assert rendered["engine"]["max_workers_per_node"] == 3


def test_multi_user_as_an_ordinary_user_is_a_templated_personal_endpoint(tmp_path):
    """A real `gce configure --multi-user` run by an unprivileged account: no identity mapping."""
    if os.geteuid() != 0:
        run_as, home = {}, tmp_path / "home"
        home.mkdir()
    else:
        nobody = pwd.getpwnam("nobody")
        home = Path(tempfile.mkdtemp(prefix="gce-nobody-"))
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        run_as = dict(user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[])
    try:
        env = {"PATH": "/usr/bin:/bin", "GCE_HOME": str(home), "HOME": str(home), "LANG": "C.UTF-8"}
        proc = subprocess.run([str(GCE_BIN), "configure", "personal", "--multi-user"], capture_output=True,
                              text=True, timeout=60, env=env, cwd="/", **run_as)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        d = home / "personal"
        assert proc.stdout.startswith("created templated endpoint personal (id ")
        assert "  every user's tasks run as you: only root maps users to their own accounts\n" in proc.stdout
        assert "mapping:" not in proc.stdout and "identity_mapping" not in proc.stdout
        assert proc.stdout.splitlines()[-2:] == [
            "      2. check the template: gce render-user-config personal --user-config FILE.json",
            "      3. gce start personal  (add --detach to run it in the background)"]
        assert sorted(p.name for p in d.iterdir()) == sorted(["config.yaml", "endpoint.json", *MULTI_FILES])
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
        assert stat.S_IMODE((d / "config.yaml").stat().st_mode) == 0o600
        data = yaml.safe_load((d / "config.yaml").read_text())
        assert data["multi_user"] is True and "identity_mapping_config_path" not in data
        assert "min_uid" not in data and data["idle_timeout"] == 1800
        assert "Run by you (not by root)" in (d / "config.yaml").read_text()
        if run_as:
            assert {p.stat().st_uid for p in d.iterdir()} == {run_as["user"]}
    finally:
        if run_as:
            shutil.rmtree(home)



def test_an_mpi_endpoint_in_slurm_jobs_starts_each_task_s_ranks_with_srun(gce, home):
    result = gce("configure", "m", "--engine", "mpi", "--provider", "slurm", "--max-workers", "2",
                 "--partition", "debug", "--broker-url", "amqp://b/gce")
    assert result.exit_code == 0, result.stderr
    engine = model.load(endpoint_paths("m")).engine
    assert (engine["type"], engine["max_workers_per_block"], engine["mpi_launcher"]) == ("MPIEngine", 2, "srun")
    # One worker pool per block, on its first node: the ranks are srun's, not the launcher's.
    assert engine["provider"]["type"] == "SlurmProvider" and engine["provider"]["launcher"] == {"type": "SimpleLauncher"}
    assert engine["provider"]["partition"] == "debug"
