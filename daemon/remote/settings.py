"""Checking ``[cluster]`` and cluster addresses, before anything listens or connects.

The rule: nothing unauthenticated on a LAN address, ever. A scheduler served on, or a
worker joining, anything but loopback must use Dask's TLS with certificates (mutual: the
CA signs every member's certificate, and a peer without one is refused at the handshake).
Pure functions, no Dask: ``load_config`` calls :func:`check` for a config with the table.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from pathlib import Path

from daemon.config import ClusterSettings, ConfigError

DEFAULT_PORT = 8786
NO_DASHBOARD = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
"""Dask nodes always run an HTTP server (health, metrics): keep it off the network."""


@dataclass(frozen=True)
class Address:
    """A Dask address split up: ``tcp://127.0.0.1:8786`` → scheme, host, port."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses; False for names and LAN addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything: treat it as the LAN


def parse_address(text: str, *, default_scheme: str = "tcp") -> Address:
    """Split ``[scheme://]host[:port]``; raises ValueError naming what is wrong."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = default_scheme, text
    if scheme not in ("tcp", "tls"):
        raise ValueError(f"{text!r}: the scheme must be tcp:// or tls://")
    if rest.startswith("["):  # [ipv6]:port
        host, _, tail = rest[1:].partition("]")
        port_text = tail.removeprefix(":")
    else:
        host, _, port_text = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
    if not host:
        raise ValueError(f"{text!r}: no host")
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise ValueError(f"{text!r}: the port must be a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{text!r}: the port must be between 0 and 65535")
    return Address(scheme, host, port)


def require_safe(address: Address, *, tls: bool, what: str) -> None:
    """Refuse an unauthenticated listener or connection on a non-loopback address.

    ``tls``: the three certificate files are given. Raises ValueError saying what to do.
    """
    if address.scheme == "tls" and not tls:
        raise ValueError(f"{what} {address} is tls:// but no --tls-ca/--tls-cert/--tls-key "
                         "(tls_ca, tls_cert, tls_key in [cluster]) were given")
    if is_loopback(address.host):
        return
    if address.scheme != "tls" or not tls:
        raise ValueError(
            f"{what} {address} is not loopback: refusing an unauthenticated cluster on the "
            "network; use tls:// with certificates (`facecluster cluster certs` makes them)"
        )


def _resolve(value: str, base: Path, key: str) -> str:
    if not value:
        return ""
    p = Path(value).expanduser()
    p = p if p.is_absolute() else (base / p).resolve()
    if not p.is_file():
        raise ConfigError(f"cluster.{key}: {p} is not a file")
    return str(p)


def check(c: ClusterSettings, base: Path) -> ClusterSettings:
    """Validate ``[cluster]``; TLS file paths come back absolute. Raises ConfigError."""
    c = replace(c, **{k: _resolve(getattr(c, k), base, k)
                      for k in ("tls_ca", "tls_cert", "tls_key")})
    given = [bool(c.tls_ca), bool(c.tls_cert), bool(c.tls_key)]
    if any(given) and not all(given):
        raise ConfigError("cluster: tls_ca, tls_cert and tls_key go together (all or none)")
    tls = all(given)
    try:
        if c.scheduler == "serve":
            listen = parse_address(c.listen, default_scheme="tls" if tls else "tcp")
            require_safe(listen, tls=tls, what="cluster.listen")
        elif c.scheduler:
            target = parse_address(c.scheduler)
            require_safe(target, tls=tls, what="cluster.scheduler")
    except ValueError as e:
        raise ConfigError(f"cluster: {e}") from None
    for remote, local in c.path_map.items():
        if not (Path(remote).is_absolute() and Path(local).is_absolute()):
            raise ConfigError(f"cluster.path_map: {remote!r} = {local!r} must both be absolute")
    return c


def listen_address(c: ClusterSettings) -> Address:
    """Where a served scheduler listens (``c`` already checked)."""
    return parse_address(c.listen, default_scheme="tls" if c.tls_ca else "tcp")
