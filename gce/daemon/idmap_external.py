"""Run an ``external_identity_mapping#1.0.0`` program: one identity in, one local user name out.

The protocol is Globus Connect Server v5's (Identity Mapping Guide, "External Program
Reference"): the program gets ``-c <connector id> -s <storage gateway id>`` after the admin's
own arguments, reads ``{"DATA_TYPE": "identity_mapping_input#1.0.0", "identities": [...]}``
on stdin and prints ``{"DATA_TYPE": "identity_mapping_output#1.0.0", "result":
[{"id": ..., "output": "<local user>"}]}`` on stdout. gce passes the POSIX connector's id and
the endpoint's id, as Globus Compute does, so scripts written for either keep working.

An empty answer (no output, or an empty ``result``) means "this program does not map this
identity" and the next rule is tried. Anything else that is not a clean answer (a non-zero
exit, a timeout, output that is not the documented JSON, an answer for another identity)
is an ``ExternalMappingError``: the caller refuses the identity rather than fall through to
a later rule, which could map it to an account the admin's program would not have chosen.

The program runs in its own session so that a timeout kills it *and* whatever it started
(a shell script's ``ldapsearch``, say): ``killpg`` of the whole group, not just the leader.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from typing import Any, Callable, Mapping, Sequence

INPUT_TYPE = "identity_mapping_input#1.0.0"
OUTPUT_TYPE = "identity_mapping_output#1.0.0"
# The POSIX connector's id, from the GCS v5.4 Identity Mapping Guide ("Command Line Options").
POSIX_CONNECTOR_ID = "145812c8-decc-41f1-83cf-bb2a85a2a70b"
DEFAULT_TIMEOUT = 5.0
# How much of the program's stderr goes into a refusal's detail (the log has what it says).
_STDERR_TAIL = 300


class ExternalMappingError(Exception):
    """The program gave no usable answer. ``str()`` says why in a sentence safe to show a
    submitter; ``detail`` holds what only the admin should see (the program's stderr)."""

    def __init__(self, why: str, detail: str = ""):
        super().__init__(why)
        self.detail = detail


def program_argv(command: Sequence[str], endpoint_id: str) -> list[str]:
    """The argv a mapping COMMAND runs with: the admin's arguments, then ``-c`` and ``-s``."""
    return [*command, "-c", POSIX_CONNECTOR_ID, "-s", endpoint_id]


def mapping_function(command: Any, endpoint_id: str, timeout: float = DEFAULT_TIMEOUT
                     ) -> Callable[[Mapping[str, str]], str | None]:
    """A rule running COMMAND (a document's ``command`` value); ValueError if it is not an argv."""
    if not (isinstance(command, list) and command and all(isinstance(a, str) and a for a in command)):
        raise ValueError("expected a non-empty list of strings (the program and its arguments)")
    argv = program_argv(command, endpoint_id)
    return lambda identity: run(argv, identity, timeout)


def input_document(identity: Mapping[str, str]) -> str:
    return json.dumps({"DATA_TYPE": INPUT_TYPE, "identities": [dict(identity)]})


def run(argv: Sequence[str], identity: Mapping[str, str], timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """The local user name the program at ARGV maps IDENTITY to, or None if it maps nothing.

    Raises ExternalMappingError when the program cannot run, exits non-zero, outlives
    TIMEOUT seconds (it and its process group are then killed) or prints garbage.
    """
    program = os.path.basename(argv[0])
    problem = _others_could_change(argv)
    if problem:  # root runs it: whoever can edit it would run their code as root
        raise ExternalMappingError(f"the mapping program {program} is not safe to run",
                                   f"{problem}, so someone other than root could change it")
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, close_fds=True)
    except OSError as e:
        raise ExternalMappingError(f"the mapping program {program} cannot be run",
                                   f"{argv[0]}: {e.strerror or e}") from None
    try:
        out, err = proc.communicate(input_document(identity).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise ExternalMappingError(f"the mapping program {program} did not answer within {timeout:g} s",
                                   f"{argv[0]} and its process group were killed") from None
    stderr = _tail(err)
    if proc.returncode < 0:
        raise ExternalMappingError(f"the mapping program {program} was killed by {_signal_name(-proc.returncode)}",
                                   stderr)
    if proc.returncode != 0:
        raise ExternalMappingError(f"the mapping program {program} exited with status {proc.returncode}", stderr)
    try:
        return parse_output(out, identity["id"])
    except ExternalMappingError as e:
        raise ExternalMappingError(f"the mapping program {program} {e}",
                                   "; ".join(d for d in (e.detail, stderr) if d)) from None


def parse_output(out: bytes, identity_id: str) -> str | None:
    """The user name in a program's stdout, None for an empty answer; ExternalMappingError
    (a phrase such as "printed ...") when OUT is not an answer for IDENTITY_ID."""
    text = out.decode("utf-8", errors="replace").strip()
    if not text:
        return None
    try:
        doc: Any = json.loads(text)
    except ValueError:
        raise ExternalMappingError("printed something that is not JSON", f"stdout began with {text[:80]!r}") from None
    if not isinstance(doc, dict) or doc.get("DATA_TYPE") != OUTPUT_TYPE:
        raise ExternalMappingError(f"printed JSON that is not an {OUTPUT_TYPE} document",
                                   f"stdout began with {text[:80]!r}")
    results = doc.get("result")
    if not isinstance(results, list):
        raise ExternalMappingError("printed a document whose 'result' is not a list")
    for item in results:
        if not (isinstance(item, dict) and isinstance(item.get("id"), str) and isinstance(item.get("output"), str)):
            raise ExternalMappingError("printed a result that is not an object with string 'id' and 'output'",
                                       f"result item: {json.dumps(item)[:120]}")
        if item["id"] != identity_id:
            # We send one identity: an answer about another one is a bug in the program.
            raise ExternalMappingError(f"answered for id {item['id']!r}, not for {identity_id!r}")
    if not results:
        return None
    name = results[0]["output"]  # GCS uses the first result when several are returned
    if not name:
        raise ExternalMappingError("answered with an empty user name")
    return name


def _others_could_change(argv: Sequence[str]) -> str | None:
    """Why others could change what ARGV runs: the program (as found on PATH), or a file an argument
    names by its absolute path (``python3 /etc/gce/map.py``); None if nobody else can."""
    from gce.daemon.privileges import others_could_change

    files = [shutil.which(argv[0]) if os.sep not in argv[0] else argv[0]]
    files += [a for a in argv[1:] if os.path.isabs(a) and os.path.isfile(a)]
    for path in filter(None, files):
        try:
            problem = others_could_change(path)
        except OSError:  # gone: running it says why
            continue
        if problem:
            return problem
    return None


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # pgid == pid: the program leads its own session
    except ProcessLookupError:
        pass
    try:
        proc.communicate(timeout=1.0)
    except subprocess.TimeoutExpired:
        # Something left the group (setsid) and still holds our pipes: stop reading them.
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
        proc.wait()


def _tail(err: bytes) -> str:
    text = err.decode("utf-8", errors="replace").strip()
    return ("stderr: ..." + text[-_STDERR_TAIL:]) if len(text) > _STDERR_TAIL else (f"stderr: {text}" if text else "")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
