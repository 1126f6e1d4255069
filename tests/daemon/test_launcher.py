"""What a failed detached start shows: the log's last lines without the AMQP library's echoes,
and a hint that names what to do about the cause."""

from __future__ import annotations

from gce.config.paths import endpoint_paths
from gce.daemon import launcher

PIKA = "2026-12-06 21:13:30,083 ERROR manager[5] pika.adapters.utils.connection_workflow: TCP Connection attempt failed"
OURS = "2026-12-06 21:13:30,084 ERROR manager[5] gce.daemon: start-up failed: cannot connect to the broker at x: refused"


def test_pika_lines_are_left_out_and_repeats_collapse():
    text = "\n".join([
        "2026-12-06 21:13:29,000 INFO manager[5] gce.daemon.children: started user endpoint default (pid 6)",
        PIKA, PIKA.replace("30,083", "31,083"),
        "2026-12-06 21:13:31,100 WARNING manager[5] gce.transport.link: reconnecting in 1 s",
        "2026-12-06 21:13:32,100 WARNING manager[5] gce.transport.link: reconnecting in 1 s",
        "2026-12-06 21:13:33,100 WARNING manager[5] gce.transport.link: reconnecting in 1 s",
        OURS,
    ])
    shown, left_out = launcher.lines_for_people(text, 10)
    assert left_out == 2
    assert shown == [
        "2026-12-06 21:13:29,000 INFO manager[5] gce.daemon.children: started user endpoint default (pid 6)",
        "2026-12-06 21:13:31,100 WARNING manager[5] gce.transport.link: reconnecting in 1 s  (and 2 more times "
        "until 21:13:33,100)",
        OURS,
    ]


def test_only_the_last_lines_are_kept():
    text = "\n".join(f"2026-12-06 21:13:{i:02d},000 INFO manager[5] gce.daemon: line {i}" for i in range(30))
    shown, left_out = launcher.lines_for_people(text, 10)
    assert (left_out, [s.rsplit(" ", 1)[1] for s in shown]) == (0, [str(i) for i in range(20, 30)])


def test_the_hint_names_what_to_do_about_the_cause(gce_home):
    p = endpoint_paths("demo")
    then = f"then gce start demo --detach (full log: {p.log_file})"
    assert launcher.start_hint(p, "the broker at amqp://u:***@h/v refused the login of user 'u' (wrong password?)") \
        == f"check the broker URL's user and password in {p.config_file}; {then}"
    assert launcher.start_hint(p, "broker user 'u' may not use the virtual host of amqp://u:***@h/v") == (
        f"give the endpoint's broker account its grants (gce broker provision --endpoint demo), or fix the "
        f"virtual host in {p.config_file}; {then}")
    assert launcher.start_hint(p, "cannot connect to the broker at amqp://u:***@h:1/v: connection refused") == (
        f"is the broker running, and is its address in {p.config_file} right? gce diagnostic --endpoint demo "
        f"checks the way there; {then}")
    refused_at_tls_vhost = "cannot connect to the broker at amqps://u:***@h:5671/TLS: connection refused"
    assert launcher.start_hint(p, refused_at_tls_vhost).startswith("is the broker running")
    for tls in ("cannot connect to the broker at amqps://u:***@h:5671/v: the broker's TLS certificate is not "
                "trusted here (self-signed certificate)", "cannot connect to the broker at amqps://u:***@h:5672/v: "
                "TLS with the broker failed: WRONG_VERSION_NUMBER"):
        assert launcher.start_hint(p, tls).startswith("the endpoint trusts the CAs of the system's store")
    assert launcher.start_hint(p, "something else entirely") == (
        f"gce diagnostic --endpoint demo checks each part of the endpoint; {then}")
