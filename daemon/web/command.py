"""``facecluster web`` (serve the page alone) and ``facecluster web passwd``."""

from __future__ import annotations

import getpass
from collections.abc import Callable

from daemon.config import Config
from daemon.web.auth import PasswordError, set_password
from daemon.web.security import CSP


class WebCommandError(Exception):
    """A ``facecluster web`` failure to report as one line."""


def passwd(cfg: Config, ask: Callable[[str], str] = getpass.getpass) -> int:
    """Ask for a password twice and store its hash for the page's sign-in."""
    first = ask("new password for the web page: ")
    if ask("again: ") != first:
        raise WebCommandError("the two passwords differ; nothing was changed")
    try:
        path = set_password(cfg.state_dir, first)
    except (PasswordError, OSError) as e:
        raise WebCommandError(str(e)) from e
    print(f"password set (stored hashed in {path}); restart the page to sign everyone out")
    return 0


def _serves_our_page(url: str) -> bool:
    """Whether ``url`` answers like this page (its sign-in form), within a second."""
    import urllib.request

    try:
        with urllib.request.urlopen(url + "signin", timeout=1.0) as r:  # noqa: S310 - ours
            return r.headers.get("content-security-policy") == CSP
    except (OSError, ValueError):
        return False


def _in_use(cfg: Config, url: str) -> WebCommandError:
    if _serves_our_page(url):
        return WebCommandError(
            f"the page is already served at {url} (by the running service, with [web] "
            "enabled = true): open that one")
    return WebCommandError(
        f"another program listens on {url}: stop it, or choose another [web] port "
        f"than {cfg.web.port} in the config")


def web_command(cfg: Config, action: str | None) -> int:
    """Run ``facecluster web [passwd]``."""
    if action == "passwd":
        return passwd(cfg)
    from daemon.web.server import PortInUse, bind, page_url, serve  # uvicorn when serving

    url = page_url(cfg)
    try:
        sock = bind(cfg)
    except PortInUse as e:
        raise _in_use(cfg, url) from e
    except OSError as e:
        raise WebCommandError(f"cannot serve the page at {url}: {e.strerror or e}") from e
    try:
        serve(cfg, sock, announce=lambda line: print(line, flush=True))
    except PasswordError as e:
        raise WebCommandError(str(e)) from e
    finally:
        sock.close()
    return 0
