"""Serving the page with uvicorn: in a thread of the service, or alone in the foreground.

The listening socket is bound here, before uvicorn starts, so that a taken port is a
clear error (uvicorn itself logs and exits), and connections go through the guarded
h11 protocol of :mod:`daemon.web.connections`.
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable

import structlog
import uvicorn

from daemon.config import Config
from daemon.web.app import create_app
from daemon.web.connections import ConnectionLimits, guarded_protocol

log = structlog.get_logger(__name__)

MAX_HEAD_BYTES = 16 * 1024
"""A request head larger than this is refused (400): the page's are under 1 KiB."""


class PortInUse(OSError):
    """The page's address and port are taken (by the service's page, or anything else)."""


def page_url(cfg: Config) -> str:
    """Where the page is served, e.g. ``http://127.0.0.1:8765/``."""
    host = cfg.web.listen
    return f"http://{f'[{host}]' if ':' in host else host}:{cfg.web.port}/"


def bind(cfg: Config) -> socket.socket:
    """A socket bound to the page's address; :class:`PortInUse` when it is taken."""
    family, kind, proto, _, address = socket.getaddrinfo(
        cfg.web.listen, cfg.web.port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT only
        sock.bind(address)
        sock.set_inheritable(True)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise PortInUse(e.errno, f"{page_url(cfg)} is already in use") from e
        raise
    return sock


def _server(cfg: Config, limits: ConnectionLimits) -> uvicorn.Server:
    app = create_app(cfg)
    config = uvicorn.Config(
        app, host=cfg.web.listen, port=cfg.web.port, log_config=None, access_log=False,
        server_header=False, proxy_headers=False, timeout_keep_alive=5,
        # No limit_concurrency: it counts unfinished connections too (a few slow
        # sockets would turn everyone away); the guarded protocol bounds them instead.
        http=guarded_protocol(limits),
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
    )
    return uvicorn.Server(config)


def serve(cfg: Config, sock: socket.socket, announce: Callable[[str], None] = print,
          limits: ConnectionLimits | None = None) -> None:
    """Serve on ``sock`` (from :func:`bind`) until interrupted (``facecluster web``),
    once ready telling ``announce`` where. Raises PasswordError like create_app."""
    server = _server(cfg, limits or ConnectionLimits())
    log.info("web_serving", url=page_url(cfg))
    announce(f"serving the page at {page_url(cfg)} (Ctrl-C stops it)")
    server.run(sockets=[sock])


class WebThread:
    """The page served from a thread of the running service; a failure only logs."""

    def __init__(self, cfg: Config, limits: ConnectionLimits | None = None) -> None:
        self.cfg = cfg
        self.limits = limits or ConnectionLimits()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        """Whether the page is being served (listening)."""
        return self._server is not None and self._server.started

    def start(self) -> None:
        """Start serving (returns at once). Problems are logged, never raised."""
        try:
            self._server = _server(self.cfg, self.limits)
            sock = bind(self.cfg)
        except Exception as e:  # noqa: BLE001 - the albums matter more than the page
            self._server = None
            log.error("web_not_started", error=str(e))
            return
        self._thread = threading.Thread(target=self._run, args=(sock,), name="web",
                                        daemon=True)
        self._thread.start()

    def _run(self, sock: socket.socket) -> None:
        assert self._server is not None
        try:
            log.info("web_serving", url=page_url(self.cfg))
            self._server.run(sockets=[sock])
        except BaseException as e:  # noqa: BLE001 - uvicorn exits via SystemExit on errors
            log.error("web_stopped", error=f"{type(e).__name__}: {e}")
        finally:
            sock.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the server to finish and wait a little for it."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = self._thread = None
