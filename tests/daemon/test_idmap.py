"""Identity mapping: the GCS v5 file format, real external programs, reloads and the policy.

Everything is real: mapping files on disk, mapping programs run as processes, accounts
looked up through NSS, and (as root) throw-away accounts made with useradd.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gce.config.model import from_data
from gce.daemon import idmap, idmap_external, policy, privileges
from gce.daemon.idmap import IdentityMapper, MappingRefused
from gce.daemon.privileges import LocalUser
from gce.errors import ConfigError

ENDPOINT_ID = "0b5e7f8a-1c2d-4e3f-8a9b-0c1d2e3f4a5b"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files as other users")


def expression(*mappings: dict) -> dict:
    return {"DATA_TYPE": idmap.EXPRESSION, "mappings": list(mappings)}


def external(*command: str) -> dict:
    return {"DATA_TYPE": idmap.EXTERNAL, "command": list(command)}


@pytest.fixture
def write(tmp_path: Path):
    """write(document) -> the path of a mapping file holding it (rewritten in place)."""
    path = tmp_path / "identity_mapping.json"

    def make(doc: object) -> Path:
        path.write_text(json.dumps(doc, indent=1))
        return path

    return make


@pytest.fixture
def mapper(write):
    """mapper(document) -> an IdentityMapper over it, for endpoint 'cluster'."""
    def make(doc: object, timeout: float = idmap_external.DEFAULT_TIMEOUT) -> IdentityMapper:
        return IdentityMapper(write(doc), endpoint="cluster", endpoint_id=ENDPOINT_ID, timeout=timeout)

    return make


@pytest.fixture
def program(tmp_path: Path):
    """program(name, body) -> path of an executable script (a real mapping program)."""
    def make(name: str, body: str) -> str:
        path = tmp_path / name
        path.write_text(body)
        path.chmod(0o755)
        return str(path)

    return make


def _mapping_program(program, tmp_path: Path, answer: str = "mapped") -> str:
    """A Python program that records its argv and stdin, then maps user@... to ANSWER."""
    return program("map.py", f"""#!{sys.executable}
import json, sys
doc = json.load(sys.stdin)
open({str(tmp_path / 'seen.json')!r}, 'w').write(json.dumps({{"argv": sys.argv[1:], "stdin": doc}}))
ident = doc["identities"][0]
result = [{{"id": ident["id"], "output": {answer!r}}}] if ident["username"].startswith("user") else []
print(json.dumps({{"DATA_TYPE": "identity_mapping_output#1.0.0", "result": result}}))
""")


# --- test vectors: the examples documented by globus-identity-mapping and Globus Compute -------

DOCUMENTED = [
    # globus-identity-mapping, README: strip the host part of an email address
    ({"source": "{email}", "match": "(.*)@example\\.org", "output": "{0}"}, "billy@example.org", "billy"),
    # ... expression.py module docs: "match username against a given domain"
    ({"source": "{username}", "match": "(.*)@example\\.org", "output": "{0}"}, "user@example.org", "user"),
    # ... "match an identity ID and map to a particular user account"
    ({"source": "{id}", "match": "b34bb069-3b68-4d38-b4e6-bc1e4fc95332", "output": "application_account"},
     "b34bb069-3b68-4d38-b4e6-bc1e4fc95332", "application_account"),
    # ... "rewrite an identity from one domain to another"
    ({"source": "{username}", "match": "(.*)@example\\.edu", "output": "{0}@data.example.edu"},
     "alice@example.edu", "alice@data.example.edu"),
    # ... "map a set of identities to a common account"
    ({"source": "{username}", "match": "(alice|bob)@example\\.org", "output": "globus"}, "alice@example.org", "globus"),
    ({"source": "{username}", "match": "(alice|bob)@example\\.org", "output": "globus"}, "bob@example.org", "globus"),
    # Globus Compute docs, example_identity_mapping_config.json (an unescaped '.' matches any character)
    ({"source": "{username}", "match": "(.*)@example.com", "output": "{0}"}, "mickey97@example.com", "mickey97"),
    # Globus Compute, PosixIdentityMapper docstring
    ({"source": "{username}", "match": "(.*)@university\\.example\\.edu", "output": "{0}"},
     "jessica.jazz.jess@university.example.edu", "jessica.jazz.jess"),
]


@pytest.mark.parametrize(("rule", "identity", "expected"), DOCUMENTED)
def test_documented_examples_map(mapper, rule, identity, expected):
    assert mapper(expression(rule)).map(identity) == (expected, "expression mapping #1")


@pytest.mark.parametrize(("rule", "identity"), [
    ({"source": "{username}", "match": "(alice|bob)@example\\.org", "output": "globus"}, "carol@example.org"),
    ({"source": "{username}", "match": "(.*)@example\\.org", "output": "{0}"}, "user@example.org.evil.com"),
    ({"source": "{username}", "match": "(.*)@example\\.org", "output": "{0}"}, "user@exampleXorg"),
    ({"source": "{email}", "match": "(.*)@example\\.org", "output": "{0}"}, "billy"),  # no '@': no email field
])
def test_documented_examples_do_not_map_others(mapper, rule, identity):
    with pytest.raises(MappingRefused) as e:
        mapper(expression(rule)).map(identity)
    assert e.value.rule == "no mapping rule matched"
    assert str(e.value) == f"identity {identity!r} does not map to a local user on endpoint 'cluster' " \
                           "(no mapping rule matched)"


def test_identity_document():
    assert idmap.identity_document("alice@uni.edu") == {"username": "alice@uni.edu", "id": "alice@uni.edu",
                                                        "email": "alice@uni.edu"}
    assert idmap.identity_document("alice") == {"username": "alice", "id": "alice"}


# --- expression semantics ----------------------------------------------------------------------

def test_the_whole_source_must_match(mapper):
    m = mapper(expression({"source": "{username}", "match": "alice|bob", "output": "x"}))
    assert m.map("bob") == ("x", "expression mapping #1")
    for other in ("alicex", "xbob", "alice@uni.edu"):
        with pytest.raises(MappingRefused):
            m.map(other)


def test_groups_count_from_zero(mapper):
    m = mapper(expression({"source": "{username}", "match": "(.*)\\.(.*)@uni\\.edu", "output": "{1}_{0}"}))
    assert m.map("ada.lovelace@uni.edu") == ("lovelace_ada", "expression mapping #1")


def test_first_matching_rule_wins_across_documents(mapper):
    m = mapper([
        expression({"source": "{username}", "match": "nobody@x\\.org", "output": "first"},
                   {"source": "{username}", "match": "(.*)@uni\\.edu", "output": "{0}"}),
        expression({"source": "{username}", "match": "(.*)@(.*)", "output": "{0}-{1}"}),
    ])
    assert m.map("alice@uni.edu") == ("alice", "document #1: expression mapping #2")
    assert m.map("alice@lab.org") == ("alice-lab.org", "document #2: expression mapping #1")


def test_ignore_case(mapper):
    rule = {"source": "{username}", "match": "(.*)@UNI\\.edu", "output": "{0}"}
    assert mapper(expression({**rule, "ignore_case": True})).map("Alice@uni.EDU") == ("Alice", "expression mapping #1")
    with pytest.raises(MappingRefused):
        mapper(expression(rule)).map("alice@uni.EDU")


def test_literal_match_has_no_operators(mapper):
    m = mapper(expression({"source": "{username}", "match": "a.b(c)*", "output": "lit", "literal": True}))
    assert m.map("a.b(c)*") == ("lit", "expression mapping #1")
    with pytest.raises(MappingRefused):
        m.map("axbc")


@pytest.mark.parametrize(("match", "matching", "not_matching"), [
    ("[ab]+", "[ab]+", "a"),  # only . ? * | ( ) are operators in GCS expressions
    ("^alice$", "^alice$", "alice"),
    ("a\\*b", "a*b", "aab"),
    ("colou?r", "color", "colouur"),
])
def test_reduced_regular_expressions(mapper, match, matching, not_matching):
    m = mapper(expression({"source": "{username}", "match": match, "output": "ok"}))
    assert m.map(matching) == ("ok", "expression mapping #1")
    with pytest.raises(MappingRefused):
        m.map(not_matching)


# --- broken files --------------------------------------------------------------------------------

@pytest.mark.parametrize(("doc", "why"), [
    ({"DATA_TYPE": "static_identity_mapping#1.0.0"},
     "DATA_TYPE: expected expression_identity_mapping#1.0.0 or external_identity_mapping#1.0.0, "
     "not 'static_identity_mapping#1.0.0'"),
    ({"mappings": []}, "DATA_TYPE: expected expression_identity_mapping#1.0.0 or "
                       "external_identity_mapping#1.0.0, not None"),
    ({"DATA_TYPE": idmap.EXPRESSION}, "(top level): missing mappings"),
    ({"DATA_TYPE": idmap.EXPRESSION, "mapping": []}, "(top level): missing mappings"),
    (expression({"source": "{username}", "match": "x", "output": "y", "regex": True}),
     "mappings[0]: unknown key regex"),
    (expression({"source": "{username}", "match": "x"}), "mappings[0]: missing output"),
    (expression({"source": "{username}", "match": "x", "output": "y", "literal": "yes"}),
     "mappings[0].literal: expected true or false"),
    (expression({"source": "{username}", "match": "\\d+", "output": "y"}),
     "mappings[0].match: '\\d' is not an escape here (escape only . ? * | ( ) \\ \")"),
    (expression({"source": "{username}", "match": "a*?", "output": "y"}),
     "mappings[0].match: '*?' repeats a repetition"),
    (expression({"source": "{username}", "match": "(.*)@x", "output": "{1}"}),
     "mappings[0].output: {1} needs 2 group(s) in match, which has 1"),
    (expression({"source": "{username}", "match": "a.c", "output": "{0}", "literal": True}),
     "mappings[0].output: {0} needs 1 group(s) in match, which has 0"),
    (expression({"source": "{sub}", "match": "x", "output": "y"}),
     "mappings[0].source: unknown field {sub} (gce identities have username, id, email)"),
    ([expression(), external()], "[1].command: expected a non-empty list of strings (the program and its arguments)"),
    ([expression(), "x"], "[1].DATA_TYPE: expected expression_identity_mapping#1.0.0 or "
                          "external_identity_mapping#1.0.0, not None"),
])
def test_invalid_documents_are_config_errors_saying_where(write, doc, why):
    path = write(doc)
    with pytest.raises(ConfigError) as e:
        IdentityMapper(path, endpoint="cluster")
    assert e.value.what == f"invalid identity mapping file {path}"
    assert e.value.why == why
    assert e.value.exit_code == 78


def test_missing_and_unparsable_files(tmp_path):
    with pytest.raises(ConfigError) as e:
        IdentityMapper(tmp_path / "nope.json")
    assert str(e.value) == f"cannot read the identity mapping file {tmp_path / 'nope.json'}: No such file or directory"
    bad = tmp_path / "bad.json"
    bad.write_text('[{"DATA_TYPE": ')
    with pytest.raises(ConfigError) as e:
        IdentityMapper(bad)
    assert e.value.why.startswith("Expecting value: line 1")


def test_an_empty_list_maps_nobody(mapper):
    with pytest.raises(MappingRefused) as e:
        mapper([]).map("alice")
    assert e.value.rule == "no mapping rule matched"


def test_comments_are_allowed(mapper):
    doc = {**expression({"comment": "site users", "source": "{username}", "match": "(.*)@uni\\.edu", "output": "{0}"}),
           "comment": "see the GCS identity mapping guide"}
    assert mapper([doc]).map("bo@uni.edu") == ("bo", "expression mapping #1")


# --- reloads -------------------------------------------------------------------------------------

def test_a_changed_file_is_reread(mapper, write):
    m = mapper(expression({"source": "{username}", "match": "(.*)@uni\\.edu", "output": "{0}"}))
    assert m.map("alice@uni.edu") == ("alice", "expression mapping #1")
    write(expression({"source": "{username}", "match": "x", "output": "x"},
                     {"source": "{username}", "match": "(.*)@uni\\.edu", "output": "u-{0}"}))
    assert m.map("alice@uni.edu") == ("u-alice", "expression mapping #2")


def test_a_replaced_file_of_the_same_size_is_reread(mapper, tmp_path):
    m = mapper(expression({"source": "{username}", "match": "(.*)", "output": "aa"}))
    new = tmp_path / "new.json"
    new.write_text(json.dumps(expression({"source": "{username}", "match": "(.*)", "output": "bb"}), indent=1))
    assert new.stat().st_size == m.path.stat().st_size
    os.replace(new, m.path)  # what editors and config management do: a new inode
    assert m.map("alice") == ("bb", "expression mapping #1")


def test_a_broken_new_file_maps_nobody_until_it_is_fixed_and_logs_why(mapper, write, caplog):
    """The previous mapping is one the admin has since replaced: a revocation written with a typo
    must not leave the revoked identity mapped."""
    m = mapper(expression({"source": "{username}", "match": "(.*)@uni\\.edu", "output": "{0}"}))
    path = write({"DATA_TYPE": idmap.EXPRESSION, "mappings": [{"source": "{username}", "match": "(", "output": "x"}]})
    with caplog.at_level(logging.ERROR, logger="gce.daemon.idmap"):
        for identity in ("alice@uni.edu", "bob@uni.edu"):
            with pytest.raises(MappingRefused) as e:
                m.map(identity)
            assert e.value.rule == idmap.UNUSABLE
            assert str(e.value) == (f"identity {identity!r} could not be mapped on endpoint 'cluster': its identity "
                                    "mapping file is unusable (the endpoint's log says why)")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [  # once, not on every call
        f"identity mapping file {path} changed but cannot be used: mappings[0].match: '(' is not a valid "
        "expression: missing ), unterminated subpattern at position 0; it maps nobody until it is fixed"]
    write(expression({"source": "{username}", "match": "(.*)@uni\\.edu", "output": "new-{0}"}))
    assert m.map("alice@uni.edu") == ("new-alice", "expression mapping #1")


def test_a_deleted_file_maps_nobody_and_logs_why(mapper, caplog):
    m = mapper(expression({"source": "{username}", "match": "(.*)", "output": "{0}"}))
    assert m.map("alice") == ("alice", "expression mapping #1")
    m.path.unlink()
    with caplog.at_level(logging.ERROR, logger="gce.daemon.idmap"):
        for _ in range(2):
            with pytest.raises(MappingRefused) as e:
                m.map("alice")
            assert e.value.rule == idmap.UNUSABLE
    assert [r.getMessage() for r in caplog.records] == [
        f"identity mapping file {m.path} changed but cannot be used: No such file or directory; "
        "it maps nobody until it is fixed"]


@pytest.mark.parametrize("emptied", ["", "\n", "[]"])
def test_an_emptied_file_maps_nobody(mapper, emptied):
    m = mapper(expression({"source": "{username}", "match": "(.*)", "output": "{0}"}))
    assert m.map("alice") == ("alice", "expression mapping #1")
    m.path.write_text(emptied)  # in place, as `> identity_mapping.json` does
    with pytest.raises(MappingRefused):
        m.map("alice")


def test_a_file_edited_in_place_within_the_same_second_is_reread(mapper):
    m = mapper(expression({"source": "{username}", "match": "(.*)", "output": "aa"}))
    assert m.map("alice") == ("aa", "expression mapping #1")
    with open(m.path, "r+b") as f:  # same inode, same size, same second
        text = f.read().replace(b'"aa"', b'"bb"')
        f.seek(0)
        f.write(text)
    assert m.map("alice") == ("bb", "expression mapping #1")


# --- who else could change the mapping: root acts on it -------------------------------------------

CATCH_ANY = expression({"source": "{username}", "match": "(.*)", "output": "{0}"})


@needs_root
@pytest.mark.parametrize("how", ["world-writable", "group-writable", "owned by a user", "in a directory "
                                 "others can write", "a link to a user's file", "a link from a directory others "
                                 "can write"])
def test_a_mapping_file_others_could_change_maps_nobody(mapper, write, tmp_path, caplog, how):
    m = mapper(CATCH_ANY)
    assert m.map("alice") == ("alice", "expression mapping #1")
    users_file = tmp_path / "theirs" / "mapping.json"
    users_file.parent.mkdir()
    users_file.write_text(json.dumps(CATCH_ANY))
    os.chown(users_file, 65534, 65534)
    if how == "world-writable":
        m.path.chmod(0o646)
    elif how == "group-writable":
        os.chown(m.path, 0, 65534)
        m.path.chmod(0o664)
    elif how == "owned by a user":
        os.chown(m.path, 65534, 65534)
    elif how == "in a directory others can write":
        tmp_path.chmod(0o777)
    elif how == "a link to a user's file":
        m.path.unlink()
        m.path.symlink_to(users_file)
    else:
        m.path.unlink()
        users_file.parent.chmod(0o777)
        os.chown(users_file, 0, 0)
        m.path.symlink_to(users_file)
    with caplog.at_level(logging.ERROR, logger="gce.daemon.idmap"):
        with pytest.raises(MappingRefused) as e:
            m.map("alice")
    assert e.value.rule == idmap.UNUSABLE
    [message] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "could change it" in message and "it maps nobody until it is fixed" in message
    with pytest.raises(ConfigError) as e:
        IdentityMapper(m.path)  # nor does a manager start with it
    assert "could change it" in e.value.why


@needs_root
def test_a_sticky_directory_and_roots_group_are_safe(mapper, tmp_path):
    m = mapper(CATCH_ANY)
    tmp_path.chmod(0o1777)  # like /tmp: others may add files, not replace ours
    m.path.chmod(0o664)  # group root
    assert m.map("alice") == ("alice", "expression mapping #1")


# --- external programs ---------------------------------------------------------------------------

def test_external_program_maps_and_gets_the_documented_input(mapper, program, tmp_path):
    m = mapper(external(_mapping_program(program, tmp_path), "--site", "lab"))
    assert m.map("user1@uni.edu") == ("mapped", "external mapping")
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["argv"] == ["--site", "lab", "-c", idmap_external.POSIX_CONNECTOR_ID, "-s", ENDPOINT_ID]
    assert seen["stdin"] == {"DATA_TYPE": "identity_mapping_input#1.0.0",
                             "identities": [{"username": "user1@uni.edu", "id": "user1@uni.edu",
                                             "email": "user1@uni.edu"}]}


def test_an_empty_answer_falls_through_to_the_next_rule(mapper, program, tmp_path):
    m = mapper([external(_mapping_program(program, tmp_path)),
                expression({"source": "{username}", "match": "(.*)", "output": "fallback"})])
    assert m.map("someone") == ("fallback", "document #2: expression mapping #1")
    silent = program("silent.sh", "#!/bin/sh\ncat >/dev/null\n")
    assert mapper([external(silent), expression({"source": "{id}", "match": "(.*)", "output": "{0}"})]
                  ).map("x") == ("x", "document #2: expression mapping #1")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_hanging_program_is_killed_with_its_children(mapper, program, tmp_path):
    assert idmap_external.DEFAULT_TIMEOUT == 5.0
    assert IdentityMapper.__init__.__kwdefaults__["timeout"] == 5.0
    pidfile = tmp_path / "child.pid"
    hang = program("hang.sh", f"#!/bin/sh\nsleep 60 &\necho $! > {pidfile}\nsleep 60\n")
    m = mapper([external(hang), expression({"source": "{id}", "match": "(.*)", "output": "{0}"})], timeout=0.5)
    started = time.monotonic()
    with pytest.raises(MappingRefused) as e:
        m.map("alice")
    assert time.monotonic() - started < 3
    assert e.value.rule == "document #1: external mapping"
    assert str(e.value) == ("identity 'alice' could not be mapped on endpoint 'cluster' (document #1: external "
                            "mapping: the mapping program hang.sh did not answer within 0.5 s)")
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(child), "the program's own child survived the timeout"


@pytest.mark.parametrize(("body", "why", "detail"), [
    ("#!/bin/sh\necho 'ldap: server down' >&2\nexit 1\n", "exited with status 1", "stderr: ldap: server down"),
    ("#!/bin/sh\necho 'Traceback: oops'\n", "printed something that is not JSON", "stdout began with 'Traceback: oops'"),
    ('#!/bin/sh\necho \'{"DATA_TYPE": "identity_mapping_input#1.0.0", "result": []}\'\n',
     "printed JSON that is not an identity_mapping_output#1.0.0 document", None),
    ('#!/bin/sh\necho \'{"DATA_TYPE": "identity_mapping_output#1.0.0", "result": [{"id": "bob", "output": "bob"}]}\'\n',
     "answered for id 'bob', not for 'alice'", ""),
    ('#!/bin/sh\necho \'{"DATA_TYPE": "identity_mapping_output#1.0.0", "result": [{"id": "alice"}]}\'\n',
     "printed a result that is not an object with string 'id' and 'output'", 'result item: {"id": "alice"}'),
    ('#!/bin/sh\necho \'{"DATA_TYPE": "identity_mapping_output#1.0.0", "result": [{"id": "alice", "output": ""}]}\'\n',
     "answered with an empty user name", ""),
    ("#!/bin/sh\nkill -9 $$\n", "was killed by SIGKILL", ""),
])
def test_failing_programs_refuse_with_a_reason(mapper, program, body, why, detail):
    m = mapper([external(program("bad.sh", body)), expression({"source": "{id}", "match": "(.*)", "output": "{0}"})])
    with pytest.raises(MappingRefused) as e:
        m.map("alice")  # never falls through to the catch-all rule after it
    assert str(e.value) == ("identity 'alice' could not be mapped on endpoint 'cluster' "
                            f"(document #1: external mapping: the mapping program bad.sh {why})")
    if detail is not None:
        assert e.value.detail == detail


def test_a_missing_program_refuses(mapper, tmp_path):
    with pytest.raises(MappingRefused) as e:
        mapper(external(str(tmp_path / "no-such-program"))).map("alice")
    assert str(e.value).endswith("(external mapping: the mapping program no-such-program cannot be run)")
    assert e.value.detail == f"{tmp_path / 'no-such-program'}: No such file or directory"


@needs_root
def test_a_program_others_could_change_is_never_run(mapper, program, tmp_path):
    """Root runs the mapping program: one that a user could edit would run the user's code as root."""
    ran = tmp_path / "ran"
    path = program("map.sh", f"#!/bin/sh\ntouch {ran}\necho '{{}}'\n")
    os.chmod(path, 0o757)
    with pytest.raises(MappingRefused) as e:
        mapper(external(path)).map("alice")
    assert str(e.value).endswith("(external mapping: the mapping program map.sh is not safe to run)")
    assert e.value.detail == f"{path} is writable by everyone, so someone other than root could change it"
    assert not ran.exists()
    os.chmod(path, 0o755)
    script = tmp_path / "theirs.py"  # a script given to an interpreter is what runs, too
    script.write_text(f"open({str(ran)!r}, 'w')\n")
    script.chmod(0o666)
    with pytest.raises(MappingRefused) as e:
        mapper(external(sys.executable, str(script))).map("alice")
    assert e.value.detail == f"{script} is writable by everyone, so someone other than root could change it"
    assert not ran.exists()


# --- local users and the policy ------------------------------------------------------------------

def test_resolve_root_and_nobody():
    root = privileges.resolve_local_user("root")
    assert (root.name, root.uid, root.gid, root.home) == ("root", 0, 0, "/root")
    assert root.groups == tuple(sorted(set(os.getgrouplist("root", 0))))
    nobody = privileges.resolve_local_user("nobody")
    assert nobody.uid == 65534 and nobody.gid == pwd.getpwnam("nobody").pw_gid


@pytest.mark.parametrize("name", ["gcetest-idmap-none", "", "../root", "ro:ot", "a b", "-root", "x\x00"])
def test_unknown_or_malformed_users(name):
    with pytest.raises(privileges.UnknownLocalUser):
        privileges.resolve_local_user(name)


def _useradd(name: str, *args: str) -> None:
    subprocess.run(["userdel", "-r", name], capture_output=True)  # a leftover of an interrupted run
    subprocess.run(["useradd", *args, name], check=True, capture_output=True)


@pytest.fixture(scope="module")
def users():
    """Throw-away accounts: gcetest-idmap-1 (regular, also in group 'users'), -2 (system uid)."""
    if os.geteuid() != 0:
        pytest.skip("creating accounts needs root")
    _useradd("gcetest-idmap-1", "-m", "-G", "users", "-s", "/bin/sh")
    _useradd("gcetest-idmap-2", "-r", "-M")
    try:
        yield "gcetest-idmap-1", "gcetest-idmap-2"
    finally:
        for name in ("gcetest-idmap-1", "gcetest-idmap-2"):
            subprocess.run(["userdel", "-r", name], capture_output=True)


def test_resolve_a_real_account_with_its_groups(users):
    local = privileges.resolve_local_user(users[0])
    pw = pwd.getpwnam(users[0])
    users_gid = int(subprocess.run(["getent", "group", "users"], capture_output=True, text=True).stdout.split(":")[2])
    assert local == LocalUser(users[0], pw.pw_uid, pw.pw_gid, tuple(sorted({pw.pw_gid, users_gid})),
                              f"/home/{users[0]}", "/bin/sh")


def _config(tmp_path: Path, path: Path, **keys) -> object:
    data = {"broker": {"url": "amqp://ep@localhost/gce"}, "multi_user": True,
            "identity_mapping_config_path": str(path), **keys}
    return from_data("cluster", ENDPOINT_ID, data, tmp_path)


CATCH_ALL = expression({"source": "{username}", "match": "(.*)@uni\\.edu", "output": "{0}"},
                       {"source": "{username}", "match": "(.*)", "output": "{0}"})


def test_map_identity_to_a_real_account(users, write, tmp_path):
    config = _config(tmp_path, write(CATCH_ALL), allowed_domains=["uni.edu"])
    local, rule = policy.map_identity(idmap.mapper_for(config), f"{users[0]}@uni.edu", config)
    assert (local.name, local.uid, rule) == (users[0], pwd.getpwnam(users[0]).pw_uid, "expression mapping #1")


def test_root_is_refused_unless_allowed(write, tmp_path):
    config = _config(tmp_path, write(CATCH_ALL))
    with pytest.raises(MappingRefused) as e:
        policy.map_identity(idmap.mapper_for(config), "root@uni.edu", config)
    assert (e.value.identity, e.value.rule, e.value.endpoint) == ("root@uni.edu", "uid 0", "cluster")
    assert str(e.value) == "identity 'root@uni.edu' maps to 'root' (uid 0) on endpoint 'cluster': mapping to root " \
                           "is refused"
    config = _config(tmp_path, write(CATCH_ALL), allow_privileged_mapping=True)
    assert policy.map_identity(idmap.mapper_for(config), "root@uni.edu", config)[0].uid == 0


def test_uids_below_min_uid_are_refused(users, write, tmp_path):
    config = _config(tmp_path, write(CATCH_ALL))
    assert pwd.getpwnam(users[1]).pw_uid < 1000
    with pytest.raises(MappingRefused) as e:
        policy.map_identity(idmap.mapper_for(config), users[1], config)
    assert e.value.rule == "min_uid 1000"
    uid = pwd.getpwnam(users[1]).pw_uid
    assert str(e.value) == f"identity {users[1]!r} maps to {users[1]!r} (uid {uid}) on endpoint 'cluster': " \
                           "uids below min_uid 1000 are refused"
    config = _config(tmp_path, write(CATCH_ALL), min_uid=uid)
    assert policy.map_identity(idmap.mapper_for(config), users[1], config)[0].uid == uid


def test_nobody_maps_with_the_default_policy(write, tmp_path):
    config = _config(tmp_path, write(CATCH_ALL))
    local, rule = policy.map_identity(idmap.mapper_for(config), "nobody", config)
    assert (local.uid, rule) == (65534, "expression mapping #2")


def test_a_user_that_does_not_exist_is_refused(write, tmp_path):
    config = _config(tmp_path, write(CATCH_ALL))
    with pytest.raises(MappingRefused) as e:
        policy.map_identity(idmap.mapper_for(config), "gcetest-idmap-none@uni.edu", config)
    assert e.value.rule == "local user exists"
    assert str(e.value) == ("identity 'gcetest-idmap-none@uni.edu' maps to 'gcetest-idmap-none' on endpoint "
                            "'cluster', which is not a local user (expression mapping #1)")


NOBODY = LocalUser("nobody", 65534, 65534, (65534,), "/nonexistent", "/usr/sbin/nologin")


@pytest.mark.parametrize(("identities", "domains", "identity", "rule", "why"), [
    (None, ["uni.edu"], "eve@evil.org", "allowed_domains", "allowed_domains: uni.edu"),
    (None, ["uni.edu"], "eve@cs.uni.edu", "allowed_domains", "allowed_domains: uni.edu"),  # no subdomains
    (None, ["uni.edu"], "uni.edu", "allowed_domains", "allowed_domains: uni.edu"),
    (["alice"], None, "alic", "allowed_identities", "not in allowed_identities"),
    (["alice"], ["uni.edu"], "eve@evil.org", "allowed_identities/allowed_domains",
     "not in allowed_identities; allowed_domains: uni.edu"),
    ([], None, "alice", "allowed_identities", "not in allowed_identities"),
])
def test_identities_outside_the_allowed_lists_are_refused(identities, domains, identity, rule, why):
    with pytest.raises(MappingRefused) as e:
        policy.check_policy(identity, NOBODY, allowed_identities=identities, allowed_domains=domains,
                           endpoint="cluster")
    assert (e.value.identity, e.value.rule) == (identity, rule)
    assert str(e.value) == f"identity {identity!r} is not allowed on endpoint 'cluster' ({why})"


@pytest.mark.parametrize(("identities", "domains", "identity"), [
    (None, None, "anyone@anywhere.org"),
    (None, ["uni.edu", "lab.org"], "bob@lab.org"),
    (None, ["Uni.Edu"], "bob@UNI.edu"),  # domain names are case-insensitive
    (["alice", "carol@x.org"], ["uni.edu"], "carol@x.org"),
])
def test_identities_in_the_allowed_lists_pass(identities, domains, identity):
    policy.check_policy(identity, NOBODY, allowed_identities=identities, allowed_domains=domains, endpoint="cluster")


def test_refused_identities_never_reach_a_mapping_program(program, write, tmp_path):
    marker = tmp_path / "ran"
    prog = program("touch.sh", f"#!/bin/sh\ntouch {marker}\n")
    config = _config(tmp_path, write(external(prog)), allowed_domains=["uni.edu"])
    with pytest.raises(MappingRefused) as e:
        policy.map_identity(idmap.mapper_for(config), "eve@evil.org", config)
    assert e.value.rule == "allowed_domains"
    assert not marker.exists()


def test_mapper_for_needs_a_mapping_file(tmp_path):
    config = from_data("cluster", ENDPOINT_ID, {"broker": {"url": "amqp://x@y/gce"}, "multi_user": True}, tmp_path)
    with pytest.raises(ConfigError) as e:
        idmap.mapper_for(config)
    assert str(e.value) == "endpoint 'cluster' has no identity mapping file: config.yaml does not set " \
                           "identity_mapping_config_path"
