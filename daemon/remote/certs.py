"""``facecluster cluster certs``: a private CA and a certificate for each cluster member.

Dask's TLS is mutual: every member (the service, each worker) shows a certificate signed
by the cluster's CA, and a peer without one is refused at the handshake. Dask does not
check host names, so one certificate per member is all it takes; the CA's key signs
members and must stay on the service's machine. Keys are EC P-256, written 0600.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from daemon.fsutil import atomic_write, atomic_writer

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "facecluster"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    with atomic_writer(path, mode=0o600) as f:  # never readable by others, not even briefly
        f.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    atomic_write(path, cert.public_bytes(serialization.Encoding.PEM))


def _ca(directory: Path, days: int, now: dt.datetime):  # noqa: ANN202
    """The CA in ``directory``, made once and reused (new members join the same cluster)."""
    key_path, cert_path = directory / "ca.key", directory / "ca.pem"
    if key_path.exists() and cert_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        return key, x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name("facecluster CA"))
        .issuer_name(_name("facecluster CA")).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return key, cert


def _member(cn: str, ca_key, ca_cert, days: int, now: dt.datetime):  # noqa: ANN001, ANN202
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # Every member both serves (it listens) and connects: server and client auth.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def make_certs(directory: Path, names: list[str], *, days: int = 3650,
               now: dt.datetime | None = None) -> list[Path]:
    """Write ``ca.pem``/``ca.key`` (reused when present) and ``NAME.pem``/``NAME.key`` for
    each name; returns the files written. Raises ValueError for a bad name."""
    for n in names:
        if not _NAME.match(n) or n == "ca":
            raise ValueError(f"{n!r} is not a usable member name (letters, digits, . _ -)")
    now = now or dt.datetime.now(dt.timezone.utc)
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _ca(directory, days, now)
    written = [directory / "ca.pem"]
    for n in names:
        key, cert = _member(n, ca_key, ca_cert, days, now)
        _write_key(directory / f"{n}.key", key)
        _write_cert(directory / f"{n}.pem", cert)
        written += [directory / f"{n}.pem", directory / f"{n}.key"]
    return written
