"""Serving the page with uvicorn: in a thread of the service, or alone in the foreground."""

from __future__ import annotations

import threading

import structlog
import uvicorn

from daemon.config import Config
from daemon.web.app import create_app
from daemon.web.auth import is_loopback

log = structlog.get_logger(__name__)


def _server(cfg: Config) -> uvicorn.Server:
    app = create_app(cfg)
    config = uvicorn.Config(
        app, host=cfg.web.listen, port=cfg.web.port, log_config=None, access_log=False,
        server_header=False, proxy_headers=False, timeout_keep_alive=5,
        limit_concurrency=64,
    )
    return uvicorn.Server(config)


def serve(cfg: Config) -> None:
    """Serve until interrupted (``facecluster web``). Raises PasswordError like create_app."""
    server = _server(cfg)
    log.info("web_serving", url=f"http://{cfg.web.listen}:{cfg.web.port}/",
             sign_in=not is_loopback(cfg.web.listen))
    server.run()


class WebThread:
    """The page served from a thread of the running service; a failure only logs."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start serving (returns at once). Problems are logged, never raised."""
        try:
            self._server = _server(self.cfg)
        except Exception as e:  # noqa: BLE001 - the albums matter more than the page
            log.error("web_not_started", error=str(e))
            return
        self._thread = threading.Thread(target=self._run, name="web", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._server is not None
        try:
            log.info("web_serving", url=f"http://{self.cfg.web.listen}:{self.cfg.web.port}/")
            self._server.run()
        except BaseException as e:  # noqa: BLE001 - uvicorn exits via SystemExit on bind errors
            log.error("web_stopped", error=f"{type(e).__name__}: {e}")

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the server to finish and wait a little for it."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = self._thread = None

