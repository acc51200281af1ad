"""Model files: making sure each one the engines need is in place and is the right file.

The manifest (``models/manifest.toml``) names each model file with its size, sha256,
download addresses and licence. A file counts as present only when its sha256 matches, so
a truncated download or a different release is never loaded by mistake. Hashing a 38 MB
file at every start (and in every indexing worker) would be wasteful, so each verdict is
remembered per (path, size, mtime_ns, inode) in memory and in a small JSON file beside the
models.

Fetching never leaves a partial file under the final name: bytes go to a temporary file in
the same folder, are checked, and only then moved into place with ``os.replace``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import structlog

from daemon.fsutil import atomic_write, atomic_writer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

log = structlog.get_logger(__name__)

MANIFEST_NAME = "manifest.toml"
PACKAGED_MANIFEST = Path(__file__).resolve().parents[2] / "models" / MANIFEST_NAME
"""The manifest shipped in the repository, used when a models folder has none of its own."""
HASH_CACHE_NAME = ".verified.json"
_CHUNK = 1 << 20
_USER_AGENT = "facecluster-model-fetch/1"

ModelState = Literal["ok", "missing", "wrong-size", "wrong-hash"]
FetchAction = Literal["present", "copied", "downloaded"]


class ManifestError(ValueError):
    """The manifest is missing, malformed, or does not list the requested model key."""


class MissingModelError(Exception):
    """A model file is not available; the message says what is missing and the ways out."""


class FetchError(MissingModelError):
    """Fetching one or more model files failed.

    ``results`` holds what did succeed, so a caller can report partial progress.
    """

    def __init__(self, message: str, results: list[FetchResult] | None = None) -> None:
        super().__init__(message)
        self.results = results or []


@dataclass(frozen=True)
class ModelFile:
    """One entry of the manifest."""

    key: str
    filename: str
    url: str
    size: int
    sha256: str
    licence: str
    licence_url: str = ""
    description: str = ""
    mirrors: tuple[str, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        """The download addresses in the order they are tried."""
        return (self.url, *self.mirrors)


@dataclass(frozen=True)
class ModelStatus:
    """What was found on disk for one model."""

    model: ModelFile
    path: Path
    state: ModelState
    actual_size: int | None = None


@dataclass(frozen=True)
class FetchResult:
    """How one model came to be in place."""

    model: ModelFile
    path: Path
    action: FetchAction
    source: str | None = None
    """The URL or local file it came from; None when it was already present."""

    @property
    def key(self) -> str:
        """The manifest key of the model."""
        return self.model.key


@dataclass(frozen=True)
class ModelRow:
    """One line of ``facecluster models list``."""

    key: str
    filename: str
    size: int
    licence: str
    state: ModelState

    @property
    def license(self) -> str:
        """US spelling of :attr:`licence`, which the CLI uses."""
        return self.licence


# --- manifest -------------------------------------------------------------------------

_REQUIRED = ("filename", "url", "size", "sha256", "licence")


def _parse_entry(key: str, table: object, source: Path) -> ModelFile:
    """Validate one manifest table and turn it into a :class:`ModelFile`."""
    if not isinstance(table, dict):
        raise ManifestError(f"{source}: [{key}] must be a table")
    missing = [name for name in _REQUIRED if name not in table]
    if missing:
        raise ManifestError(f"{source}: [{key}] lacks {', '.join(missing)}")
    known = {*_REQUIRED, "licence_url", "description", "mirrors"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ManifestError(f"{source}: [{key}] has unknown keys {', '.join(unknown)}")
    filename, sha, size = table["filename"], table["sha256"], table["size"]
    # The filename is joined onto models_dir, so it must not climb out of it.
    if not isinstance(filename, str) or not filename or Path(filename).name != filename:
        raise ManifestError(f"{source}: [{key}] filename must be a plain file name")
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ManifestError(f"{source}: [{key}] sha256 must be 64 lowercase hex digits")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ManifestError(f"{source}: [{key}] size must be a positive integer")
    mirrors = table.get("mirrors", [])
    if not isinstance(mirrors, list) or not all(isinstance(m, str) for m in mirrors):
        raise ManifestError(f"{source}: [{key}] mirrors must be a list of URLs")
    return ModelFile(
        key=key,
        filename=filename,
        url=str(table["url"]),
        size=size,
        sha256=sha,
        licence=str(table["licence"]),
        licence_url=str(table.get("licence_url", "")),
        description=str(table.get("description", "")),
        mirrors=tuple(mirrors),
    )


def manifest_path(models_dir: Path) -> Path:
    """The manifest that applies to ``models_dir``: its own if it has one, else the shipped one."""
    own = Path(models_dir) / MANIFEST_NAME
    return own if own.is_file() else PACKAGED_MANIFEST


def load_manifest(models_dir: Path) -> list[ModelFile]:
    """Read the manifest for ``models_dir`` (see :func:`manifest_path`), in file order.

    Raises :class:`ManifestError` when it is missing or malformed.
    """
    path = manifest_path(models_dir)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ManifestError(f"model manifest not found at {path}") from e
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ManifestError(f"cannot read model manifest {path}: {e}") from e
    return [_parse_entry(key, entry, path) for key, entry in table.items()]


def _model(models_dir: Path, key: str) -> ModelFile:
    models = load_manifest(models_dir)
    for m in models:
        if m.key == key:
            return m
    known = ", ".join(m.key for m in models)
    raise ManifestError(f"unknown model {key!r} (known: {known})")


# --- hashing with a remembered verdict ------------------------------------------------

_memory_cache: dict[tuple[str, int, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stat_key(path: Path, st: os.stat_result) -> tuple[str, int, int, int]:
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


def _read_disk_cache(models_dir: Path) -> dict[str, dict]:
    try:
        data = json.loads((models_dir / HASH_CACHE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_disk_cache(models_dir: Path, data: dict[str, dict]) -> None:
    """Best effort: a read-only models folder only costs a re-hash at the next start."""
    target = models_dir / HASH_CACHE_NAME
    try:
        atomic_write(target, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))
    except OSError as e:
        log.debug("model_hash_cache_not_written", path=str(target), error=str(e))


def cached_sha256(path: Path, *, on_disk: bool = True) -> str:
    """The sha256 of ``path``, re-hashed only when its size, mtime or inode changed.

    ``on_disk=False`` remembers it in this process only, for files in a folder that is
    not ours to write (dlib's models in site-packages).
    """
    st = path.stat()
    key = _stat_key(path, st)
    if key in _memory_cache:
        return _memory_cache[key]
    if not on_disk:
        _memory_cache[key] = sha256_file(path)
        return _memory_cache[key]
    disk = _read_disk_cache(path.parent)
    entry = disk.get(path.name)
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}
    if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items()):
        digest = str(entry.get("sha256", ""))
        if digest:
            _memory_cache[key] = digest
            return digest
    digest = sha256_file(path)
    _memory_cache[key] = digest
    disk[path.name] = {**stamp, "sha256": digest}
    _write_disk_cache(path.parent, disk)
    return digest


# --- checking ---------------------------------------------------------------------------


def check_model(models_dir: Path, model: ModelFile) -> ModelStatus:
    """Inspect the file for one manifest entry in ``models_dir``."""
    path = Path(models_dir) / model.filename
    try:
        st = path.stat()
    except FileNotFoundError:
        return ModelStatus(model, path, "missing")
    if not path.is_file():
        return ModelStatus(model, path, "missing")
    if st.st_size != model.size:
        return ModelStatus(model, path, "wrong-size", st.st_size)
    state: ModelState = "ok" if cached_sha256(path) == model.sha256 else "wrong-hash"
    return ModelStatus(model, path, state, st.st_size)


def verify(models_dir: Path) -> list[ModelStatus]:
    """The state of every model in the manifest: ok, missing, wrong-size or wrong-hash."""
    return [check_model(models_dir, m) for m in load_manifest(models_dir)]


def verified_model(models_dir: Path, key: str) -> Path | None:
    """The path of model ``key`` ("yunet", "sface") if present with the right sha256, else None.

    Raises :class:`ManifestError` for a key the manifest does not list.
    """
    status = check_model(Path(models_dir), _model(Path(models_dir), key))
    if status.state == "ok":
        return status.path
    if status.state != "missing":
        log.warning(
            "model_file_rejected",
            key=key,
            path=str(status.path),
            state=status.state,
            size=status.actual_size,
            expected_size=status.model.size,
        )
    return None


def alternatives_text(model: ModelFile, models_dir: Path) -> str:
    """The ways to get ``model`` in place, for error messages and the CLI."""
    lines = [
        f"  - place {model.filename} ({model.size:,} bytes, sha256 {model.sha256}) "
        f"in {models_dir} by hand;",
        "  - or copy it from a local folder: facecluster models fetch --from DIR;",
    ]
    # Without SFace only the embedder changes; without YuNet the detector must too.
    setting = 'embedder = "dlib"' if model.key == "sface" else 'detector = "dlib-hog"'
    lines.append(f"  - or use the offline dlib engine, which needs no download: [engine] {setting}")
    return "\n".join(lines)


def missing_message(status: ModelStatus, models_dir: Path) -> str:
    """A readable explanation of why a model file cannot be used and what to do about it."""
    m = status.model
    if status.state == "wrong-size":
        what = f"has {status.actual_size or 0:,} bytes instead of {m.size:,}"
    elif status.state == "wrong-hash":
        what = "has the right size but the wrong sha256 (a different or damaged file)"
    else:
        what = "is missing" if status.state == "missing" else "is present"
    return (
        f"model {m.key!r}: {status.path} {what}.\n"
        f"It comes from {m.url} ({m.licence}).\nAlternatives:\n"
        f"{alternatives_text(m, models_dir)}"
    )


def require_model(models_dir: Path, key: str) -> Path:
    """Like :func:`verified_model` but raises :class:`MissingModelError` explaining the way out."""
    models_dir = Path(models_dir)
    status = check_model(models_dir, _model(models_dir, key))
    if status.state != "ok":
        raise MissingModelError(missing_message(status, models_dir))
    return status.path


def list_models(models_dir: Path) -> list[ModelRow]:
    """One row per manifest entry for ``facecluster models list``."""
    return [
        ModelRow(s.model.key, s.model.filename, s.model.size, s.model.licence, s.state)
        for s in verify(models_dir)
    ]


# --- fetching ---------------------------------------------------------------------------


def _copy_checked(src: IO[bytes], dest: IO[bytes], model: ModelFile) -> None:
    """Copy a stream while hashing it; raise ``ValueError`` unless size and sha256 match."""
    h = hashlib.sha256()
    size = 0
    while chunk := src.read(_CHUNK):
        size += len(chunk)
        # Stop early on something far bigger than expected (an error page, a wrong file).
        if size > model.size:
            raise ValueError(f"got more than the expected {model.size:,} bytes")
        h.update(chunk)
        dest.write(chunk)
    if size != model.size:
        raise ValueError(f"got {size:,} bytes, expected {model.size:,}")
    if h.hexdigest() != model.sha256:
        raise ValueError(f"sha256 {h.hexdigest()} does not match the manifest's {model.sha256}")


def _install_from(
    open_source: Callable[[], AbstractContextManager[IO[bytes]]],
    models_dir: Path,
    model: ModelFile,
) -> Path:
    """Write the bytes from ``open_source()`` to a temp file, check them, move into place.

    The temp file lives in ``models_dir`` so ``os.replace`` is atomic; it is removed on
    any failure, so an interrupted fetch leaves nothing behind under any name.
    """
    final = models_dir / model.filename
    with atomic_writer(final) as out, open_source() as src:
        _copy_checked(src, out, model)
    return final


def _download(model: ModelFile, models_dir: Path, timeout: float) -> tuple[Path, str]:
    """Try each URL of ``model`` in turn; return the installed path and the URL used."""
    errors: list[str] = []
    for url in model.urls:
        request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
        log.info("model_download_started", key=model.key, url=url, size=model.size)
        try:
            path = _install_from(
                lambda r=request: urllib.request.urlopen(r, timeout=timeout), models_dir, model
            )
        except (OSError, ValueError) as e:  # URLError/HTTPError/timeouts are OSErrors
            reason = getattr(e, "reason", None) or e
            errors.append(f"  {url}: {reason}")
            log.warning("model_download_failed", key=model.key, url=url, error=str(reason))
            continue
        return path, url
    raise FetchError(
        f"model {model.key!r}: could not download {model.filename} into {models_dir}:\n"
        + "\n".join(errors)
        + "\nAlternatives:\n"
        + alternatives_text(model, models_dir)
    )


def _copy_from_dir(model: ModelFile, models_dir: Path, source_dir: Path) -> tuple[Path, str]:
    src = Path(source_dir) / model.filename
    if not src.is_file():
        raise FetchError(
            f"model {model.key!r}: {model.filename} is not in {source_dir}.\n"
            f"It comes from {model.url}.\nAlternatives:\n{alternatives_text(model, models_dir)}"
        )
    try:
        path = _install_from(lambda: src.open("rb"), models_dir, model)
    except (OSError, ValueError) as e:
        raise FetchError(
            f"model {model.key!r}: {src} cannot be used: {e}.\nAlternatives:\n"
            f"{alternatives_text(model, models_dir)}"
        ) from e
    return path, str(src)


def fetch(
    models_dir: Path,
    keys: Iterable[str] | None = None,
    *,
    source_dir: Path | None = None,
    timeout: float = 60,
) -> list[FetchResult]:
    """Make sure the model files ``keys`` (default: all in the manifest) are in ``models_dir``.

    A file already present with the right sha256 is kept, however it got there. Otherwise
    it is copied from ``source_dir`` when given (offline installs, CI; the network is then
    not touched), or downloaded from the manifest's URLs. Every model is attempted; if any
    could not be put in place, :class:`FetchError` lists them with the alternatives and
    carries the successful results in ``.results``.
    """
    models_dir = Path(models_dir)
    manifest = load_manifest(models_dir)
    by_key = {m.key: m for m in manifest}
    wanted = list(by_key) if keys is None else list(keys)
    unknown = [k for k in wanted if k not in by_key]
    if unknown:
        raise ManifestError(f"unknown model {', '.join(unknown)} (known: {', '.join(by_key)})")
    models_dir.mkdir(parents=True, exist_ok=True)

    results: list[FetchResult] = []
    failures: list[str] = []
    for key in wanted:
        model = by_key[key]
        status = check_model(models_dir, model)
        if status.state == "ok":
            results.append(FetchResult(model, status.path, "present"))
            continue
        try:
            if source_dir is not None:
                path, source = _copy_from_dir(model, models_dir, source_dir)
                action: FetchAction = "copied"
            else:
                path, source = _download(model, models_dir, timeout)
                action = "downloaded"
        except FetchError as e:
            failures.append(str(e))
            continue
        log.info("model_installed", key=key, path=str(path), source=source, action=action)
        results.append(FetchResult(model, path, action, source))
    if failures:
        raise FetchError("\n\n".join(failures), results)
    return results
