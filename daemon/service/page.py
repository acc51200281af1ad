"""The naming page beside the service: served from a thread of its own while ``[web]
enabled`` says so, and started, stopped or restarted when a config change asks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from daemon.config import Config

if TYPE_CHECKING:
    from daemon.web.server import WebThread

log = structlog.get_logger(__name__)


def start_web(cfg: Config) -> WebThread | None:
    """The naming page, served from a thread of its own when ``[web] enabled``."""
    if not cfg.web.enabled:
        return None
    from daemon.web.server import WebThread

    web = WebThread(cfg)
    web.start()
    return web


def _page_settings(cfg: Config) -> tuple[object, ...]:
    """What the page is built from: a change to any of it needs a new page."""
    return (cfg.web, cfg.watch, cfg.labels_file, cfg.detection.max_pixels)


def restart_web(web: WebThread | None, old: Config, new: Config) -> WebThread | None:
    """The page after the config changed from ``old`` to ``new``: started, stopped or
    restarted as ``[web]`` now says, left alone when nothing it uses changed."""
    if web is not None and new.web.enabled and _page_settings(old) == _page_settings(new):
        return web
    if web is None and not new.web.enabled:
        return None
    if web is not None:
        web.stop()
        log.info("web_stopped_for_config", enabled=new.web.enabled)
    return start_web(new)
