"""A private RabbitMQ node for tests and benchmarks.

It runs as the current user straight from /usr/lib/rabbitmq/bin (RECIPES.md, "run the broker
as root directly") under a directory of its own, on free ports, with its own epmd on a free
port too, so it never touches a system broker nor another developer's, and can stop
everything it started by PID.
"""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
BOOT_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class BrokerMissing(RuntimeError):
    """RabbitMQ is not installed on this machine."""


class PrivateBroker:
    """One RabbitMQ node under DIRECTORY; `provision` gives each caller a fresh vhost."""

    admin_user = "gce-admin"

    def __init__(self, directory: Path, management: bool = False, *, node: str | None = None,
                 epmd_port: int | None = None, cookie_home: Path | None = None, tls: bool = False) -> None:
        """NODE, EPMD_PORT and COOKIE_HOME (a directory holding the .erlang.cookie) are shared by
        the nodes of one cluster (BrokerCluster); by default the node is alone. TLS: a second
        listener, amqps on ``tls_port``, whose certificate (for localhost and 127.0.0.1) is signed
        by a CA of its own, ``ca_file`` (a client trusts it through SSL_CERT_FILE)."""
        self.dir = directory
        self.port = _free_port()
        self.tls_port = _free_port() if tls else None
        self.ca_file = directory / "tls" / "ca.pem"
        # The management plugin (HTTP API) costs seconds at boot and shutdown: only on request.
        self.management_port = _free_port() if management else None
        self.dist_port = _free_port()
        self.epmd_port = epmd_port or _free_port()
        self.node = node or f"gcetest-{os.getpid()}{'-mgmt' * management}@localhost"  # beside the session's
        self.admin_password = secrets.token_urlsafe(16)
        self.log = directory / "server.out"
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        self.env = {
            **keep,
            "PATH": f"{RABBITMQ_BIN}:{keep.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(cookie_home or directory),  # holds the Erlang cookie; rabbitmqctl needs the same one
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
            "RABBITMQ_PID_FILE": str(directory / "beam.pid"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(directory / "plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),  # not /etc/rabbitmq's
            "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            # No scheduler busy-waiting: on a small host the spinning VM takes the CPU our own
            # processes need (RabbitMQ docs, "Runtime: Scheduler Busy Waiting").
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1} "
                                                  "+sbwt none +sbwtdcpu none +sbwtdio none",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            # A private epmd: the machine's shared one (port 4369) may serve other brokers.
            "ERL_EPMD_PORT": str(self.epmd_port),
        }
        self._proc: subprocess.Popen | None = None
        self._passwords: dict[str, str] = {}  # accounts are global to the node: one password per session
        self._vhosts = itertools.count(1)

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def rabbitmqctl(self) -> str:
        return str(RABBITMQ_BIN / "rabbitmqctl")

    def ctl(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run rabbitmqctl against this node; raise with its output if CHECK and it fails."""
        proc = subprocess.run([self.rabbitmqctl, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=self.dir)
        if check and proc.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed ({proc.returncode}): {proc.stderr or proc.stdout}")
        return proc

    def admin_url_for(self, vhost: str) -> str:
        from gce.transport.provision import amqp_url

        return amqp_url(self.admin_user, self.admin_password, "127.0.0.1", self.port, vhost)

    @property
    def admin_url(self) -> str:
        """An administrator on vhost ``gce`` (and on every vhost `provision` creates)."""
        return self.admin_url_for("gce")

    def _write_config(self) -> None:
        (self.dir / "rabbitmq-env.conf").write_text("")
        plugins = "rabbitmq_management" if self.management_port else ""
        (self.dir / "enabled_plugins").write_text(f"[{plugins}].\n")
        management = (f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {self.management_port}\n"
                      if self.management_port else "")
        (self.dir / "rabbitmq.conf").write_text(
            management + self._tls_config() +
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            f"default_user = {self.admin_user}\n"
            f"default_pass = {self.admin_password}\n"
            "default_vhost = gce\n"
            "default_user_tags.administrator = true\n"
            "log.console = false\n"
            "log.file.level = info\n"
        )

    def _tls_config(self) -> str:
        """The amqps listener's lines, its CA and certificate made first (openssl, a few ms)."""
        if self.tls_port is None:
            return ""
        tls = self.ca_file.parent
        tls.mkdir(mode=0o700, exist_ok=True)
        (tls / "san.cnf").write_text("subjectAltName = DNS:localhost, IP:127.0.0.1\n")

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=tls, check=True, capture_output=True)

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "400", "-subj", "/CN=gce test CA",
                "-keyout", "ca.key", "-out", "ca.pem")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
                "-out", "server.csr")
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "400", "-extfile", "san.cnf", "-out", "server.pem")
        return (f"listeners.ssl.default = 127.0.0.1:{self.tls_port}\n"
                f"ssl_options.cacertfile = {tls / 'ca.pem'}\n"
                f"ssl_options.certfile = {tls / 'server.pem'}\n"
                f"ssl_options.keyfile = {tls / 'server.key'}\n"
                "ssl_options.verify = verify_none\n"
                "ssl_options.fail_if_no_peer_cert = false\n")

    def tls_url(self, url: str) -> str:
        """URL (one `provision` gave) over TLS: amqps to localhost on the TLS port."""
        rest = url.split("://", 1)[1]
        credentials, location = rest.rsplit("@", 1)
        vhost = location.split("/", 1)[1]
        return f"amqps://{credentials}@localhost:{self.tls_port}/{vhost}"

    def _vm_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _wait(self, what: str, ready, timeout: float = BOOT_TIMEOUT, booting: bool = True) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if booting and self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited ({self._proc.returncode}); see {self.log}:\n"
                                   + self.log.read_text()[-3000:])
            if time.monotonic() > deadline:
                raise RuntimeError(f"the private broker did not {what} within {timeout:.0f} s; see {self.dir}/log")
            time.sleep(0.3)

    def _app_ready(self) -> bool:
        return (self.ctl("-q", "status", check=False, timeout=30).returncode == 0 and _port_open(self.port)
                and (self.tls_port is None or _port_open(self.tls_port))
                and (self.management_port is None or _port_open(self.management_port)))

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Boot the node (first call, or after `kill`/`shutdown`), or start its app after `stop`."""
        if self._vm_alive():
            self.ctl("start_app")
        else:
            if not (RABBITMQ_BIN / "rabbitmq-server").exists():
                raise BrokerMissing("rabbitmq-server is not installed (/usr/lib/rabbitmq/bin/rabbitmq-server is "
                                    "missing): run 'make rabbitmq' or 'apt-get install -y rabbitmq-server'")
            self.dir.mkdir(parents=True, exist_ok=True)
            if not (self.dir / "rabbitmq.conf").exists():
                self._write_config()
            with open(self.log, "ab") as out:
                self._proc = subprocess.Popen([str(RABBITMQ_BIN / "rabbitmq-server")], env=self.env, cwd=self.dir,
                                              stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                              start_new_session=True)
        self._wait("answer", self._app_ready)

    def stop(self) -> None:
        """Stop the RabbitMQ application: the port refuses connections, the VM and data stay."""
        self.ctl("stop_app")
        self._wait("close its port", lambda: not _port_open(self.port), timeout=30, booting=False)

    def restart(self, down: float = 0.0) -> None:
        """Make the broker unreachable for about DOWN seconds; durable queues and messages survive."""
        self.stop()
        time.sleep(down)
        self.start()

    def kill(self) -> None:
        """SIGKILL the Erlang VM, as a crash would; `start` boots it again on the same data."""
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._proc.wait(timeout=30)
        self._wait("close its port", lambda: not _port_open(self.port), timeout=30, booting=False)

    def shutdown(self) -> None:
        """Stop the node and the epmd it started; leave no process behind."""
        if self._vm_alive():
            self.ctl("shutdown", check=False, timeout=60)
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        if self._proc is not None:
            try:  # the script, beam.smp, erl_child_setup, inet_gethost: one session
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._proc.wait(timeout=30)
        self._kill_epmd()

    def _kill_epmd(self) -> None:
        for p in psutil.process_iter(["name"]):
            if p.info["name"] != "epmd":
                continue
            try:
                if any(c.laddr.port == self.epmd_port and c.status == psutil.CONN_LISTEN
                       for c in p.net_connections(kind="tcp")):
                    p.kill()
                    p.wait(timeout=10)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass

    # -- accounts ---------------------------------------------------------------------------
    def _password(self, account: str) -> str:
        return self._passwords.setdefault(account, secrets.token_urlsafe(16))

    def provision(self, endpoint_id: str, users: list[str] | tuple[str, ...] = (), vhost: str | None = None,
                  also_allowed: list[str] | tuple[str, ...] = ()) -> tuple[str, dict[str, str]]:
        """A fresh vhost with gce's exchanges, the endpoint's account (``ep-<id>``) and USERS,
        each allowed to submit to ENDPOINT_ID and ALSO_ALLOWED. Returns (endpoint URL, {user: URL})."""
        from gce.transport import provision as p
        from gce.transport import rabbitmqctl as rmq

        vhost = vhost or f"t{next(self._vhosts)}-{secrets.token_hex(3)}"
        ep = p.Account(f"ep-{endpoint_id}", self._password(f"ep-{endpoint_id}"))
        accounts = [p.Account(u, self._password(u)) for u in users]
        allowed = [endpoint_id, *also_allowed]
        defs = p.definitions(vhost, endpoints=[(ep, endpoint_id)], users=[(a, allowed) for a in accounts])
        defs["permissions"].append({"user": self.admin_user, "vhost": vhost, "configure": ".*", "write": ".*",
                                    "read": ".*"})
        rmq.import_definitions(defs, rabbitmqctl=self.rabbitmqctl, env=self.env)
        url = lambda a: p.amqp_url(a.name, a.password, "127.0.0.1", self.port, vhost)  # noqa: E731
        return url(ep), {a.name: url(a) for a in accounts}


# -- a broker for shell tests (tests/bats) --------------------------------------------------------
def serve(directory: Path) -> int:
    """Run a PrivateBroker for a caller that cannot hold a Python object, such as a bats file:
    ``python -m tests.broker DIR`` boots it under DIR, writes there ``rabbitmqctl`` (a wrapper
    that reaches this node, e.g. for `gce broker provision --rabbitmqctl`) and then ``port``
    (its AMQP port; the file appears once the broker answers), and keeps it up until SIGTERM,
    SIGINT or the death of its parent. Then it shuts the node down, epmd included."""
    import shlex
    import sys

    parent, stopping = os.getppid(), []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    broker = PrivateBroker(directory)
    try:
        broker.start()
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in broker.env.items()
                       if k.startswith(("RABBITMQ_", "ERL_")) or k in ("HOME", "PATH"))
        ctl = directory / "rabbitmqctl"
        ctl.write_text(f"#!/bin/sh\nexec env {env} {shlex.quote(broker.rabbitmqctl)} \"$@\"\n")
        ctl.chmod(0o700)
        (directory / "port.tmp").write_text(f"{broker.port}\n")
        os.replace(directory / "port.tmp", directory / "port")  # whole or absent: the caller polls for it
        print(f"broker up on 127.0.0.1:{broker.port} (pid {os.getpid()})", file=sys.stderr, flush=True)
        while not stopping and (parent == 1 or os.getppid() == parent):  # 1: started detached, so TERM only
            time.sleep(0.2)
    finally:
        broker.shutdown()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(serve(Path(sys.argv[1])))
