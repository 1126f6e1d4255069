"""``python -m gce.uep --fd N``: from the command line to a running user endpoint. What it proves
and prepares first is gce.uep.startup's; what it then does is gce.uep.main.UserEndpoint's."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import traceback
from dataclasses import replace

from gce.logfiles import rotating_handler
from gce.transport import frames
from gce.uep.main import UserEndpoint
from gce.uep.policy import site_locked
from gce.uep.setup_teardown import export_runtime
from gce.uep.startup import (Refusal, check_identity, die_with_parent, guard_channel, prepare_directories,
                              read_config, render_config)

log = logging.getLogger("gce.uep")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gce-uep")
    ap.add_argument("--fd", type=int, required=True)
    args = ap.parse_args(argv)
    raw = sys.stdin.buffer.read()
    die_with_parent()
    sock = socket.socket(fileno=args.fd)
    os.set_inheritable(args.fd, False)  # the engine's children must not hold the manager's channel
    try:
        conf = read_config(raw)
        check_identity(conf.identity)
        guard_channel()
        if conf.template is not None:
            prepare_directories(conf)
    except Refusal as e:
        print(f"gce-uep: {e}", file=sys.stderr)
        sock.sendall(frames.encode(frames.FATAL, {"reason": str(e), "code": e.code}))
        return 1
    fmt = "%(asctime)s %(levelname)s uep[%(process)d] %(name)s: %(message)s"
    if conf.log_file:
        logging.getLogger().addHandler(rotating_handler(conf.log_file, fmt))
    else:
        logging.basicConfig(format=fmt)
    logging.getLogger().setLevel(logging.DEBUG if conf.debug else logging.INFO)
    for noisy in ("parsl",):
        logging.getLogger(noisy).setLevel(logging.WARNING if not conf.debug else logging.DEBUG)
    if conf.template is not None:  # the submitter's versions, for the setup, worker_init and workers
        export_runtime(conf.template.user_runtime.python_version, conf.template.user_runtime.gce_version)
    try:
        rendered = render_config(conf.template)
    except Refusal as e:
        log.error("%s", e)
        sock.sendall(frames.encode(frames.FATAL, {"reason": str(e), "code": e.code}))
        return 1
    if rendered is not None:
        conf = replace(conf, engine=rendered["engine"],
                       setup={k: rendered[k] for k in ("endpoint_setup", "endpoint_teardown",
                                                       "endpoint_setup_timeout") if k in rendered})
        conf = site_locked(conf, rendered)  # the template's allowed_functions and allowed_serializers
    import signal

    # SIGTERM (from the manager's stop, or its death) takes the same path as the channel
    # closing: the engine is shut down, so the interchange and workers go too.
    signal.signal(signal.SIGTERM, lambda *_: sock.shutdown(socket.SHUT_RDWR))
    try:
        uep = UserEndpoint(sock, conf)
        rc = uep.run()
        if uep.deadlines.overdue:  # a thread still running a task past its limit would hold the exit forever
            logging.shutdown()
            os._exit(rc)
        return rc
    except Exception:
        log.error("user endpoint crashed:\n%s", traceback.format_exc())
        return 1
