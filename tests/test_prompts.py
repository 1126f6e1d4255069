"""What gce asks on a real terminal (a pty driven by pexpect), and what each answer does.

`gce delete` asks for confirmation; `gce configure NAME` asks for what its options would say
when none of them was given. Neither asks anything off a terminal.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
import yaml

GCE = str(Path(sys.executable).parent / "gce")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith("GCE_") and k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS")}
    return {**keep, "GCE_HOME": str(tmp_path / "gce-home"), "NO_COLOR": "1", "TERM": "dumb"}


@pytest.fixture
def demo(env: dict[str, str]) -> Path:
    """An endpoint named demo; returns its directory."""
    subprocess.run([GCE, "configure", "demo", "--broker-url", "amqp://ep@127.0.0.1:1/gce", "--engine", "thread"],
                   env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    home = Path(env["GCE_HOME"]) / "demo"
    assert (home / "config.yaml").is_file()
    return home


def delete_on_a_terminal(env: dict[str, str], answer: str) -> tuple[str, int]:
    """Run `gce delete demo` on a pty, wait for its question, answer ANSWER; (all it printed, exit status)."""
    child = pexpect.spawn(GCE, ["delete", "demo"], env=env, encoding="utf-8", timeout=30, dimensions=(24, 250))
    try:
        child.expect(r"Delete endpoint demo \([0-9a-f-]{36}\) and everything in .*\? \[y/N\]: ")
        asked = child.before + child.after
        child.sendline(answer)
        child.expect(pexpect.EOF)
        said = child.before
    finally:
        child.close()
    return asked + said, child.exitstatus


def test_answering_no_keeps_the_endpoint(env, demo):
    text, status = delete_on_a_terminal(env, "n")
    assert status == 1
    assert f"and everything in {demo}?" in text
    assert re.search(r"\r\nendpoint demo was not deleted\r\n$", text)
    assert (demo / "config.yaml").is_file() and (demo / "endpoint.json").is_file()


def test_just_enter_means_no(env, demo):
    text, status = delete_on_a_terminal(env, "")
    assert status == 1
    assert "endpoint demo was not deleted" in text
    assert (demo / "config.yaml").is_file()


def test_answering_yes_removes_the_endpoint(env, demo):
    text, status = delete_on_a_terminal(env, "y")
    assert status == 0
    assert f"removed {demo}\r\n" in text
    assert "endpoint demo deleted\r\n" in text
    # what it leaves on the broker, and how to remove that (tests/commands/test_delete.py has the wording)
    assert text.endswith("revoke it on the broker host: gce broker revoke --user ep\r\n"), text[-300:]
    assert not demo.exists()
    listed = subprocess.run([GCE, "list", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert listed.stdout == "[]\n"


# -- gce configure ----------------------------------------------------------------------------
PASSWORD = "Pw-9d2kq-secret"
URL = f"amqp://ep-demo:{PASSWORD}@127.0.0.1:5672/gce"
ASK_BROKER = r"Broker URL \(amqps://USER:PASSWORD@HOST:5671/VHOST\), or a file holding it; typing is not shown " \
             r"\[Enter: fill it in config.yaml later\]: "
ASK_ENGINE = r"Engine: process \(worker processes on this machine\), thread, htex \(parsl workers in blocks on " \
             r"this machine\), slurm \(parsl workers in Slurm jobs\), mpi or mpi-slurm \(MPI programs here or in " \
             r"Slurm jobs\) \[process\]: "
CPUS = os.cpu_count() or 1


def configure_on_a_terminal(env: dict[str, str], *args: str) -> pexpect.spawn:
    child = pexpect.spawn(GCE, ["configure", "demo", *args], env=env, encoding="utf-8", timeout=30,
                          dimensions=(24, 250))
    child.transcript = []  # type: ignore[attr-defined]
    return child


def answer(child: pexpect.spawn, question: str, reply: str) -> str:
    """Wait for QUESTION (a regex), send REPLY and Enter; what was printed up to the question."""
    child.expect(question)
    child.sendline(reply)
    return child.before + child.after


def finish(child: pexpect.spawn) -> tuple[str, int]:
    child.expect(pexpect.EOF)
    rest = child.before
    child.close()
    return rest, child.exitstatus


def config_of(env: dict[str, str]) -> tuple[dict, int]:
    path = Path(env["GCE_HOME"]) / "demo" / "config.yaml"
    return yaml.safe_load(path.read_text()), path.stat().st_mode & 0o777


def test_answering_the_configure_questions_writes_them_into_config_yaml(env):
    child = configure_on_a_terminal(env)
    said = answer(child, ASK_BROKER, URL)
    said += answer(child, ASK_ENGINE, "slurm")
    said += answer(child, rf"Functions run at the same time on each node \[{CPUS}\]: ", "3")
    said += answer(child, r"Slurm partition \[Enter: the cluster's default\]: ", "debug")
    said += answer(child, r"Slurm account to charge \[Enter: your default\]: ", "proj-1")
    said += answer(child, r"Time limit of each Slurm job \[01:00:00\]: ", "00:30:00")
    rest, status = finish(child)
    text = said + rest
    assert status == 0, text
    assert text.startswith("Configuring endpoint demo. Enter takes the [default]; Ctrl-C stops without writing")
    assert "\r\n  broker: amqp://ep-demo:***@127.0.0.1:5672/gce\r\n" in text  # what the hidden answer was
    assert "  engine: HighThroughputEngine, 3 workers per node, in Slurm jobs (partition debug, account proj-1, " \
           "walltime 00:30:00)\r\n" in text
    assert text.endswith("the same without questions: gce configure demo --broker-url-file FILE --engine htex "
                         "--provider slurm --max-workers 3 --partition debug --account proj-1 --walltime 00:30:00\r\n")
    assert PASSWORD not in text  # the hidden question does not echo, and nothing prints it back
    config, mode = config_of(env)
    assert mode == 0o600  # it holds the password
    assert config["broker"]["url"] == URL
    assert config["engine"] == {
        "type": "HighThroughputEngine", "max_workers_per_node": 3, "strategy_period": 0.5,
        "provider": {"type": "SlurmProvider", "partition": "debug", "account": "proj-1", "walltime": "00:30:00",
                     "launcher": {"type": "SrunLauncher"}, "init_blocks": 0, "min_blocks": 0, "max_blocks": 1,
                     "nodes_per_block": 1, "worker_init": ""},
    }
    # The command it names makes the same config without a question.
    url_file = Path(env["GCE_HOME"]).parent / "url"
    url_file.write_text(URL + "\n")
    url_file.chmod(0o600)
    again = subprocess.run([GCE, "configure", "again", "--broker-url-file", str(url_file), "--engine", "htex",
                            "--provider", "slurm", "--max-workers", "3", "--partition", "debug", "--account",
                            "proj-1", "--walltime", "00:30:00"], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert yaml.safe_load((Path(env["GCE_HOME"]) / "again" / "config.yaml").read_text()) == {
        **config, "display_name": "again"}


def test_enter_takes_every_default(env):
    child = configure_on_a_terminal(env)
    said = answer(child, ASK_BROKER, "")
    said += answer(child, ASK_ENGINE, "")
    said += answer(child, rf"Functions run at the same time \[{CPUS}\]: ", "")
    rest, status = finish(child)
    assert status == 0, said + rest
    assert "Slurm partition" not in rest and "  broker: " not in said  # no Slurm questions for a local pool
    assert f"next: put the broker's address and credentials in broker.url of {env['GCE_HOME']}/demo/config.yaml" in rest
    assert rest.endswith(f"the same without questions: gce configure demo --engine process --max-workers {CPUS}\r\n")
    config, mode = config_of(env)
    assert mode == 0o600  # the placeholder URL is there to receive a password
    assert config["broker"]["url"] == "amqp://127.0.0.1:5672/gce"
    assert config["engine"] == {"type": "ProcessPoolEngine", "max_workers": CPUS}


def test_a_bad_answer_is_asked_again_with_the_reason(env, tmp_path):
    url_file = tmp_path / "broker-url"
    url_file.write_text(f"# the endpoint account\n{URL}\n")
    url_file.chmod(0o600)
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    child = configure_on_a_terminal(env)
    said = answer(child, ASK_BROKER, "http://127.0.0.1:15672/")
    said += answer(child, ASK_BROKER, PASSWORD)  # the password alone, typed by mistake: never repeated
    said += answer(child, ASK_BROKER, str(empty))
    said += answer(child, ASK_BROKER, str(url_file))
    said += answer(child, ASK_ENGINE, "gpu")
    said += answer(child, ASK_ENGINE, "Thread")
    said += answer(child, rf"Functions run at the same time \[{CPUS}\]: ", "zero")
    said += answer(child, rf"Functions run at the same time \[{CPUS}\]: ", "0")
    said += answer(child, rf"Functions run at the same time \[{CPUS}\]: ", "2")
    rest, status = finish(child)
    text = said + rest
    assert status == 0, text
    reasons = re.findall(r"  not accepted: (.*); try again\r\n", text)
    assert reasons == [
        "a broker URL starts with amqp:// or amqps://",
        "that is neither an amqp:// or amqps:// URL nor a file",
        f"no broker URL in {empty}: the file holds no line other than blanks and comments",
        "answer one of thread, process, htex, slurm, mpi, mpi-slurm",
        "answer a whole number of at least 1",
        "answer a whole number of at least 1",
    ]
    assert f"  broker: amqp://ep-demo:***@127.0.0.1:5672/gce (from {url_file})\r\n" in text
    assert PASSWORD not in text and "warning:" not in text  # a 0600 file draws no warning
    assert text.endswith(f"gce configure demo --broker-url-file {url_file} --engine thread --max-workers 2\r\n")
    config, mode = config_of(env)
    assert (config["broker"]["url"], config["engine"], mode) == (
        URL, {"type": "ThreadPoolEngine", "max_workers": 2}, 0o600)


@pytest.mark.parametrize("where, key", [("broker", "ctrl-d"), ("engine", "ctrl-c"), ("workers", "ctrl-c")])
def test_ctrl_c_or_ctrl_d_at_a_question_writes_nothing(env, where, key):
    child = configure_on_a_terminal(env)
    questions = {"broker": ASK_BROKER, "engine": ASK_ENGINE, "workers": r"at the same time on each node .*: "}
    replies = {"broker": URL, "engine": "htex"}
    for q in ("broker", "engine", "workers"):
        if q == where:
            child.expect(questions[q])
            child.sendintr() if key == "ctrl-c" else child.sendeof()
            break
        answer(child, questions[q], replies[q])
    rest, status = finish(child)
    assert status == 1
    assert rest.rstrip().endswith("Aborted!")
    assert "Traceback" not in rest and PASSWORD not in rest
    home = Path(env["GCE_HOME"])
    assert not (home / "demo").exists()
    assert not home.exists() or not list(home.iterdir())


def test_no_question_off_a_terminal_with_no_input_or_with_an_option(env):
    # Off a terminal (a script, CI: stdin is not a tty): the defaults, without waiting.
    run = subprocess.run([GCE, "configure", "demo"], env=env, capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    assert "Configuring" not in run.stdout and "?" not in run.stdout and run.stderr == ""
    assert "same without questions" not in run.stdout
    assert config_of(env)[0]["engine"]["type"] == "ProcessPoolEngine"
    # On a terminal, --no-input or any option that answers a question means: ask nothing.
    for name, args in (("quiet", ["--no-input"]), ("threads", ["--engine", "thread"]),
                       ("urlonly", ["--broker-url", "amqp://ep@127.0.0.1:1/gce"])):
        child = pexpect.spawn(GCE, ["configure", name, *args], env=env, encoding="utf-8", timeout=30,
                              dimensions=(24, 250))
        rest, status = finish(child)
        assert status == 0, rest
        assert rest.startswith(f"created endpoint {name} (id ") and "Configuring" not in rest
        assert (Path(env["GCE_HOME"]) / name / "config.yaml").is_file()


def test_an_existing_endpoint_is_refused_before_any_question(env, demo):
    child = configure_on_a_terminal(env)
    rest, status = finish(child)
    assert status == 73
    assert rest.startswith(f"error: endpoint 'demo' already exists: {demo}/config.yaml is there\r\n")
    assert "Broker URL" not in rest


@pytest.mark.parametrize("args, error", [
    (["--engine", "thread", "--provider", "slurm"],
     "error: --provider slurm needs --engine htex or mpi: the thread engine runs on this machine only"),
    (["--partition", "debug"],
     "error: Slurm settings without Slurm: --partition, --account and --walltime need --provider slurm"),
    (["--provider", "slurm", "--account", "a,b"],
     "error: invalid --account 'a,b': it is one name of at most 64 characters, without spaces or commas"),
    (["--provider", "slurm", "--walltime", "1:2:3"],
     "error: invalid --walltime '1:2:3': it reads MINUTES, MINUTES:SECONDS or HOURS:MINUTES:SECONDS (sbatch --time)"),
])
def test_the_options_behind_the_questions_refuse_what_the_questions_refuse(env, args, error):
    run = subprocess.run([GCE, "configure", "demo", *args], env=env, capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    assert (run.returncode, run.stdout, run.stderr.splitlines()[0]) == (64, "", error)
    assert not (Path(env["GCE_HOME"]) / "demo").exists()
