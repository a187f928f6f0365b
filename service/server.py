"""How ``python -m service`` runs uvicorn: connection timeouts, graceful drain, a clean access log.

- **Header read timeout** (``HELPSEEK_HEADER_TIMEOUT_S``): a connection must deliver a complete
  request head within this many seconds of opening (or of the first byte of a later request on
  a kept-alive connection), else it is closed. uvicorn alone never closes a connection that
  sends half a header. **Idle connections** close after ``HELPSEEK_KEEP_ALIVE_TIMEOUT_S``
  between requests (uvicorn's keep-alive timeout).
- **Graceful shutdown**: SIGTERM (or SIGINT) stops accepting, lets every request already
  received finish (at most ``HELPSEEK_GRACEFUL_TIMEOUT_S``), then exits; with several workers
  the supervisor forwards the signal to each worker, which drains the same way. uvicorn alone
  closes *idle* kept-alive connections at once, so a request already on the wire to one of
  them is lost (the client sees a reset); here an idle connection lingers ``DRAIN_LINGER_S``
  and a request arriving meanwhile is answered with ``Connection: close``. A client that then
  reconnects is refused (nothing sent, safe to retry on another replica). With several
  workers the supervisor closes *its* copy of the listening socket on SIGTERM too: uvicorn's
  keeps it open, so the kernel keeps completing handshakes that no worker will ever accept,
  and those requests are reset when the supervisor exits.
- **Access log without session ids**: ``/v1/sessions/<id>...`` is logged as
  ``/v1/sessions/{session_id}...`` (a session id is a bearer of budget).

:class:`ServerConfig` carries the header timeout to the protocol, also into worker processes
(uvicorn pickles the config into each one).
"""

from __future__ import annotations

import asyncio
import logging
import re

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

__all__ = [
    "DRAIN_LINGER_S",
    "HeaderTimeoutProtocol",
    "RedactSessionIds",
    "ServerConfig",
    "Supervisor",
    "serve",
]

_SESSION_PATH = re.compile(r"/v1/sessions/[^/?\s]+")
DRAIN_LINGER_S = 1.0  # an idle connection stays readable this long after shutdown begins


class ServerConfig(uvicorn.Config):
    """uvicorn's Config plus the header read timeout and the access-log filter."""

    def __init__(self, *args: object, header_timeout_s: float, **kwargs: object) -> None:
        self.header_timeout_s = header_timeout_s
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def configure_logging(self) -> None:
        """Configure uvicorn's logging, then add the session-id filter (in every worker too)."""
        super().configure_logging()
        access = logging.getLogger("uvicorn.access")
        if not any(isinstance(f, RedactSessionIds) for f in access.filters):
            access.addFilter(RedactSessionIds())


class RedactSessionIds(logging.Filter):
    """Rewrite the path argument of uvicorn access records: no session ids in the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact and keep the record."""
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path = _SESSION_PATH.sub("/v1/sessions/{session_id}", args[2])
            record.args = (*args[:2], path, *args[3:])
        return True


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """httptools protocol with a request-head timeout and a drain that loses no request."""

    _head_timer: asyncio.TimerHandle | None = None
    _draining = False

    def _arm(self) -> None:
        timeout = getattr(self.config, "header_timeout_s", None)
        if timeout and self._head_timer is None:
            self._head_timer = self.loop.call_later(timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Accept, then start the clock for the first request head."""
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the timer with the connection."""
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        """First byte of a request: its head must be complete within the timeout."""
        self._arm()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        """Stop the clock: the head is in, the app's own limits apply from here."""
        self._disarm()
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answered with Connection: close, then closed

    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def shutdown(self) -> None:
        """Graceful shutdown: finish the request in flight; let an idle connection linger."""
        self._draining = True
        if not self._idle():
            self.cycle.keep_alive = False
            return
        self._unset_keepalive_if_required()
        self.loop.call_later(DRAIN_LINGER_S, self._close_if_idle)

    def _close_if_idle(self) -> None:
        if self._idle() and not self.transport.is_closing():
            self.transport.close()


class Supervisor(Multiprocess):
    """uvicorn's worker supervisor that stops listening as soon as it is told to exit."""

    def _stop_listening(self) -> None:
        for sock in self.sockets:
            sock.close()

    def handle_term(self) -> None:
        """SIGTERM: close the listening socket, then uvicorn's shutdown of every worker."""
        self._stop_listening()
        super().handle_term()

    def handle_int(self) -> None:
        """SIGINT: as SIGTERM."""
        self._stop_listening()
        super().handle_int()


def serve(config: ServerConfig) -> int:
    """Run one server (or a supervisor of ``config.workers``); return a process exit status."""
    if config.workers > 1:
        Supervisor(config, sockets=[config.bind_socket()]).run()
        return 0
    server = uvicorn.Server(config=config)
    server.run()
    return 0 if server.started else 3  # uvicorn's STARTUP_FAILURE
