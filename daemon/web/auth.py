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
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from daemon.fsutil import atomic_writer

PASSWORD_FILE = "web-password"
MIN_PASSWORD_LENGTH = 8
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # OWASP's minimum scrypt cost; ~50 ms, 16 MiB

Clock = Callable[[], float]
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")
"""What :func:`secrets.token_urlsafe` (32 bytes) gives: the only session ids handed out."""


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


FORWARDING_HEADERS = frozenset({
    "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
    "x-forwarded-port", "x-forwarded-server", "x-forwarded", "forwarded-for", "x-real-ip",
    "x-client-ip", "x-cluster-client-ip", "true-client-ip", "cf-connecting-ip",
    "fastly-client-ip", "x-original-forwarded-for", "via",
})
"""Headers a reverse proxy adds: a request carrying any came from somewhere else."""


def is_forwarded(header_names: Iterable[str]) -> bool:
    """Whether a request with these (lower-case) header names passed through a proxy."""
    return any(name in FORWARDING_HEADERS for name in header_names)


def _bare_address(value: str) -> str:
    """``1.2.3.4``, ``"[::1]:80"`` or ``1.2.3.4:80`` as a plain address."""
    value = value.strip().strip('"')
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def forwarded_client(headers: Mapping[str, str]) -> str | None:
    """The client a proxy on this machine names: the last hop it added (the one it saw;
    earlier ones are the client's own say), or None when it names none."""
    if value := headers.get("x-forwarded-for"):
        return _bare_address(value.split(",")[-1]) or None
    if value := headers.get("x-real-ip"):
        return _bare_address(value) or None
    for part in reversed(headers.get("forwarded", "").split(",")[-1].split(";")):
        key, _, val = part.partition("=")
        if key.strip().lower() == "for" and val.strip():
            return _bare_address(val)
    return None


def address_key(host: str) -> str:
    """What counts as one address for rate limits: an IPv6 /64 is one machine's
    (a host picks any address in its /64 at will); an IPv4-mapped one is its IPv4."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


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


def _file_password(password_file: Path) -> str | None:
    try:
        password = password_file.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        return None
    return password if len(password) >= MIN_PASSWORD_LENGTH else None


def password_set(state_dir: Path, password_file: Path | None) -> bool:
    """Whether sign-ins have a usable password to be checked against.

    With ``web.password_file`` set it is that file's content (a container or systemd
    secret, so the password sits in no config file; a changed secret applies at the next
    sign-in); else the hash ``facecluster web passwd`` stored. No hashing: the sign-in
    page asks this on every anonymous view.
    """
    if password_file is None:
        return read_password_hash(state_dir) is not None
    return _file_password(password_file) is not None


def check_password(state_dir: Path, password_file: Path | None, given: str) -> bool:
    """Whether ``given`` is the password (constant time; one scrypt for a stored hash)."""
    if password_file is None:
        stored = read_password_hash(state_dir)
        return stored is not None and verify_password(given, stored)
    want = _file_password(password_file)
    return want is not None and hmac.compare_digest(given.encode("utf-8"),
                                                    want.encode("utf-8"))


MAX_TRACKED = 10_000
"""Addresses with failures kept before the ones that aged out are dropped."""


class SignInLimiter:
    """Few failed sign-ins per address; a short pause for everyone after many in all.

    An address (an IPv6 /64 counts as one) with ``per_client`` failures in the last
    ``window`` seconds is refused until the oldest of them ages out. Once ``overall``
    failures pile up from all addresses together (a guesser spread over many), every
    address waits ``backoff`` seconds after the latest failure: that bounds the guessing
    rate without locking the owner out, who signs in a few seconds later.
    """

    def __init__(
        self, per_client: int = 5, overall: int = 50, window: float = 300.0,
        backoff: float = 3.0, clock: Clock = time.monotonic,
    ) -> None:
        self.per_client, self.overall, self.window = per_client, overall, window
        self.backoff = backoff
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
            mine = self._recent(address_key(client), now)
            if len(mine) >= self.per_client:
                raise TooManyAttempts(mine[0] + self.window - now)
            everyone = self._recent("*", now)
            if len(everyone) >= self.overall and now - everyone[-1] < self.backoff:
                raise TooManyAttempts(everyone[-1] + self.backoff - now)

    def failed(self, client: str) -> None:
        """Count a failed attempt."""
        now = self._clock()
        with self._lock:
            if len(self._failures) > MAX_TRACKED:  # addresses that stopped trying
                for key in list(self._failures):
                    self._recent(key, now)
            for key in (address_key(client), "*"):
                self._failures.setdefault(key, []).append(now)

    def succeeded(self, client: str) -> None:
        """Forget the client's failures (the overall count stays)."""
        with self._lock:
            self._failures.pop(address_key(client), None)


@dataclass
class Session:
    """One browser's session: its id (the cookie), CSRF token and whether it signed in."""

    id: str
    csrf: str
    signed_in: bool
    expires: float


class Sessions:
    """Signed-in sessions in memory, each valid ``ttl`` seconds (the oldest go past
    ``limit``); anonymous ones are not kept at all.

    A visitor who has not signed in gets a random id whose CSRF token is derived from it
    with this process's secret key: nothing is stored, so no number of anonymous page
    views can push out another page's session (and its form token).
    """

    def __init__(self, ttl: float = 12 * 3600, limit: int = 1000,
                 clock: Clock = time.monotonic) -> None:
        self.ttl, self.limit = ttl, limit
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def _anonymous(self, sid: str) -> Session:
        csrf = hmac.new(self._key, sid.encode(), hashlib.sha256).hexdigest()
        return Session(sid, csrf, False, float("inf"))

    def new(self, signed_in: bool = False) -> Session:
        """A fresh session (a new id on sign-in, so a planted id is worth nothing)."""
        sid = secrets.token_urlsafe(32)
        if not signed_in:
            return self._anonymous(sid)
        s = Session(sid, secrets.token_urlsafe(32), True, self._clock() + self.ttl)
        with self._lock:
            if len(self._by_id) >= self.limit:
                order = sorted(self._by_id.values(), key=lambda x: x.expires)
                for old in order[: len(self._by_id) - self.limit + 1]:
                    del self._by_id[old.id]
            self._by_id[s.id] = s
        return s

    def get(self, sid: str | None) -> Session | None:
        """The session with this id: a live signed-in one, else an anonymous one (None
        for an id this page never hands out)."""
        if not sid or not _SESSION_ID.fullmatch(sid):
            return None
        with self._lock:
            s = self._by_id.get(sid)
            if s is not None and s.expires <= self._clock():
                del self._by_id[sid]
                s = None
        return s or self._anonymous(sid)

    def drop(self, sid: str) -> None:
        """End a session (sign-out)."""
        with self._lock:
            self._by_id.pop(sid, None)


def csrf_ok(session: Session | None, token: str | None) -> bool:
    """Whether a form's token is its session's (constant-time comparison)."""
    if session is None or not token:
        return False
    return hmac.compare_digest(session.csrf.encode(), token.encode("utf-8", "replace"))
