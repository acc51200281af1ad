"""``facecluster web`` (serve the page alone) and ``facecluster web passwd``."""

from __future__ import annotations

import getpass
from collections.abc import Callable

from daemon.config import Config
from daemon.web.auth import PasswordError, set_password


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


def web_command(cfg: Config, action: str | None) -> int:
    """Run ``facecluster web [passwd]``."""
    if action == "passwd":
        return passwd(cfg)
    from daemon.web.server import serve  # starlette and uvicorn only when serving

    try:
        serve(cfg)
    except PasswordError as e:
        raise WebCommandError(str(e)) from e
    return 0
