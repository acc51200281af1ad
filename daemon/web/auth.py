"""Who may use the web page: the stored password, sessions and the sign-in rate limit.

The password is kept only as a scrypt hash in ``state_dir/web-password`` (mode 0600),
set by ``facecluster web passwd``. scrypt comes with Python's hashlib: a memory-hard
password hash without another dependency. Sessions live in the serving process's memory
(a restart signs everyone out, which is fine for a family NAS); each carries the CSRF
token its forms must send back.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from daemon.fsutil import atomic_writer

PASSWORD_FILE = "web-password"
MIN_PASSWORD_LENGTH = 8
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # OWASP's minimum scrypt cost; ~50 ms, 16 MiB

Clock = Callable[[], float]


class TooManyAttempts(Exception):
    """Sign-in refused for now; ``retry_after`` says in how many seconds to try again."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed sign-ins; try again in {int(retry_after) + 1} s")
        self.retry_after = retry_after


class PasswordError(ValueError):
    """A password that cannot be set (too short), or no password set where one is needed."""


def is_loopback(host: str) -> bool:
    """Whether a listen address only reaches this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` (hex) for ``password``."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt${n}${r}${p}$".format(**_SCRYPT) + f"{salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a :func:`hash_password` string (constant time)."""
    try:
        kind, n, r, p, salt, want = stored.strip().split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode("utf-8"), salt=bytes.fromhex(salt), dklen=len(want) // 2,
            n=int(n), r=int(r), p=int(p), maxmem=256 * 1024 * 1024,
        )
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(got.hex(), want)


def set_password(state_dir: Path, password: str) -> Path:
    """Store the hash of ``password`` for the web page; returns the file written."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = state_dir / PASSWORD_FILE
    with atomic_writer(target) as f:
        os.fchmod(f.fileno(), 0o600)  # a hash is still worth guessing against offline
        f.write((hash_password(password) + "\n").encode())
    return target


def read_password_hash(state_dir: Path) -> str | None:
    """The stored hash, or None when no password was set."""
    try:
        text = (state_dir / PASSWORD_FILE).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return text or None


def current_password_hash(state_dir: Path, password_file: Path | None) -> str | None:
    """The hash sign-ins are checked against, or None when there is no usable password.

    With ``web.password_file`` set it is that file's content (a container or systemd
    secret, so the password sits in no config file; a changed secret applies at the next
    sign-in); else the hash ``facecluster web passwd`` stored.
    """
    if password_file is None:
        return read_password_hash(state_dir)
    try:
        password = password_file.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        return None
    return hash_password(password) if len(password) >= MIN_PASSWORD_LENGTH else None


class SignInLimiter:
    """Few failed sign-ins per client, and few in all, per time window.

    A client with ``per_client`` failures in the last ``window`` seconds is refused until
    the oldest of them ages out; so is everyone once ``overall`` failures pile up (a
    guesser spread over many addresses).
    """

    def __init__(
        self, per_client: int = 5, overall: int = 50, window: float = 300.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.per_client, self.overall, self.window = per_client, overall, window
        self._clock = clock
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        kept = [t for t in self._failures.get(key, []) if now - t < self.window]
        if kept:
            self._failures[key] = kept
        else:
            self._failures.pop(key, None)
        return kept

    def check(self, client: str) -> None:
        """Raise :class:`TooManyAttempts` if ``client`` may not try now."""
        now = self._clock()
        with self._lock:
            for key, limit in ((client, self.per_client), ("*", self.overall)):
                recent = self._recent(key, now)
                if len(recent) >= limit:
                    raise TooManyAttempts(recent[0] + self.window - now)

    def failed(self, client: str) -> None:
        """Count a failed attempt."""
        now = self._clock()
        with self._lock:
            for key in (client, "*"):
                self._failures.setdefault(key, []).append(now)

    def succeeded(self, client: str) -> None:
        """Forget the client's failures (the overall count stays)."""
        with self._lock:
            self._failures.pop(client, None)


@dataclass
class Session:
    """One browser's session: its id (the cookie), CSRF token and whether it signed in."""

    id: str
    csrf: str
    signed_in: bool
    expires: float


class Sessions:
    """Sessions in memory, each valid ``ttl`` seconds; the oldest go past ``limit``."""

    def __init__(self, ttl: float = 12 * 3600, limit: int = 1000,
                 clock: Clock = time.monotonic) -> None:
        self.ttl, self.limit = ttl, limit
        self._clock = clock
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def new(self, signed_in: bool = False) -> Session:
        """A fresh session (a new id on sign-in, so a planted id is worth nothing)."""
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), signed_in,
                    self._clock() + self.ttl)
        with self._lock:
            if len(self._by_id) >= self.limit:
                # Drop page views before signed-in people, oldest first: a flood of
                # anonymous visits must not sign the family out.
                order = sorted(self._by_id.values(), key=lambda x: (x.signed_in, x.expires))
                for old in order[: len(self._by_id) - self.limit + 1]:
                    del self._by_id[old.id]
            self._by_id[s.id] = s
        return s

    def get(self, sid: str | None) -> Session | None:
        """The live session with this id, or None."""
        if not sid:
            return None
        with self._lock:
            s = self._by_id.get(sid)
            if s is not None and s.expires <= self._clock():
                del self._by_id[sid]
                return None
            return s

    def drop(self, sid: str) -> None:
        """End a session (sign-out)."""
        with self._lock:
            self._by_id.pop(sid, None)


def csrf_ok(session: Session | None, token: str | None) -> bool:
    """Whether a form's token is its session's (constant-time comparison)."""
    if session is None or not token:
        return False
    return hmac.compare_digest(session.csrf.encode(), token.encode("utf-8", "replace"))
