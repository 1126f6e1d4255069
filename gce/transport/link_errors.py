"""Why a broker connection attempt failed, in words a user can act on.

pika reports failures as layers of its own exception types, several of which print as
nothing; these functions find the cause and say it, with the URL's password redacted.
"""

from __future__ import annotations

import logging
import os
import ssl

import pika
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from gce.transport.urls import broker_user, redact


class LinkError(Exception):
    """A failed connection attempt; ``fatal`` ones will not get better by retrying."""

    def __init__(self, message: str, fatal: bool = False):
        super().__init__(message)
        self.fatal = fatal


def why_not_connected(exc: BaseException) -> str:
    """The innermost reason of a pika connection error, as words: pika wraps the socket's
    error in one or more layers (a connection workflow's list of attempts, a connector's
    error), and the outer ones often print as nothing at all. A TLS failure says what to do."""
    exc = _innermost(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"the broker's TLS certificate is not trusted here ({exc.verify_message}): give this machine "
                "the CA certificate that signed it (add it to the system's CA store, or set SSL_CERT_FILE to "
                "a file holding it), and use the host name the certificate was issued for" + _cert_file_trouble())
    if isinstance(exc, ssl.SSLError):
        hint = (" (is the port one where the broker speaks TLS, 5671 by default, rather than plain AMQP's "
                "5672?)" if exc.reason == "WRONG_VERSION_NUMBER" else "")
        return f"TLS with the broker failed: {exc.reason or exc}{hint}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def _cert_file_trouble() -> str:
    """Why SSL_CERT_FILE, when set, gives OpenSSL no CA: it skips a file it cannot read, unsaid."""
    path = os.environ.get("SSL_CERT_FILE")
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            pem = f.read(1 << 20)
    except OSError as e:
        return f"; SSL_CERT_FILE is set to {path}, which cannot be read ({e.strerror})"
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        return f"; SSL_CERT_FILE is set to {path}, which holds no PEM certificate"
    return ""


def _innermost(exc: BaseException) -> BaseException:
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        attempts = getattr(exc, "exceptions", None)  # AMQPConnectionWorkflowFailed
        phase = getattr(exc, "exception", None)  # AMQPConnectorPhaseErrorBase
        if attempts:
            exc = attempts[-1]
        elif isinstance(phase, BaseException):
            exc = phase
        elif exc.args and isinstance(exc.args[0], BaseException):
            exc = exc.args[0]
        else:
            break
    return exc


def explain(exc: BaseException, url: str) -> LinkError:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    where = redact(url)
    if isinstance(exc, pika.exceptions.ProbableAuthenticationError):
        return LinkError(f"the broker at {where} refused the login of user {broker_user(url)!r} (wrong password?)", True)
    if isinstance(exc, pika.exceptions.ProbableAccessDeniedError):
        return LinkError(f"broker user {broker_user(url)!r} may not use the virtual host of {where}", True)
    if isinstance(exc, pika.exceptions.ConnectionClosedByBroker) and exc.reply_code in (403, 530):
        return LinkError(f"the broker at {where} refused the connection: {exc.reply_text}", True)
    if isinstance(exc, (pika.exceptions.AMQPConnectionError, AMQPConnectorException)):
        return LinkError(f"cannot connect to the broker at {where}: {why_not_connected(exc)}")
    return LinkError(f"broker at {where}: {text}")


REFUSAL_FIRST = 1.0  # seconds before the first retry of something the broker refused
REFUSAL_CAP = 30.0  # and at most between two: how soon a restored permission is noticed


def refusal_backoff(refusals: int) -> float:
    """Seconds to wait after REFUSALS refusals in a row: doubling, capped, jittered so that many
    endpoints refused at once (a broker's permissions edited) do not retry in step."""
    from gce.backoff import backoff

    return backoff(refusals, REFUSAL_FIRST, REFUSAL_CAP)


class _AbortedByUs(logging.Filter):
    """pika logs a connection attempt that close() aborted as an ERROR; it is a normal stop."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Aborted" not in record.getMessage()


class _RefusalsWeReport(logging.Filter):
    """pika logs every channel the broker closes for a permission; the link says it once, with
    what it means, instead of a line per retry."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Channel.Close (403)" not in record.getMessage()


def quiet_pika_logs() -> None:
    """Keep pika's log to what the link does not say better itself (once per logger)."""
    for name, kind in (("pika.adapters.utils.connection_workflow", _AbortedByUs),
                       ("pika.channel", _RefusalsWeReport)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())
