"""Load and validate ``config.toml``, with the user's ``config.local.toml`` over it.

The one rule: settings in ``X.local.toml`` override those of ``X.toml`` beside it, key
by key (a table such as ``[web]`` merges; a list such as ``watch`` is replaced whole).
Without ``--config`` X is ``./config``; ``--config path/X.toml`` (or ``X.local.toml``)
names the pair. Either file may be missing. The running service watches both, so a
``config.local.toml`` created while it runs is applied like an edit.

Every key has a default, so an empty file is a valid configuration. Unknown keys and
wrong values are refused with a :class:`ConfigError` that names the key and the file,
because a typo silently ignored in a service that runs for years is worse than a
refusal. Relative paths resolve against the folder of the config files.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

AlbumMode = Literal["symlink", "hardlink", "copy"]
NoFacePolicy = Literal["skip", "album", "all"]
DetectorName = Literal["auto", "yunet", "dlib-hog"]
EmbedderName = Literal["auto", "sface", "dlib"]

DEFAULT_CONFIG_NAME = "config.toml"
LOCAL_CONFIG_NAME = "config.local.toml"
"""Your own settings, over config.toml's and ignored by git, so `git pull` of the
project never collides with them (put only the keys you change in it)."""
_LOCAL_SUFFIX = ".local.toml"


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or holds a wrong key or value."""


@dataclass(frozen=True)
class EngineConfig:
    """Which face detector and embedder to use; ``auto`` picks from the models present."""

    detector: DetectorName = "auto"
    embedder: EmbedderName = "auto"
    models_dir: Path = Path("models")


@dataclass(frozen=True)
class DetectionConfig:
    """Filters applied to detected faces before they are embedded."""

    min_score: float = 0.8
    """Detector confidence below which a face is dropped (YuNet score, 0..1)."""
    min_face_px: int = 36
    """Faces whose shorter box side (in original pixels) is smaller are dropped."""
    max_side: int = 960
    """Photos are downscaled so their longer side is at most this before detection."""
    max_pixels: int = 100_000_000
    """Photos whose header claims more pixels are refused before decoding (bomb guard)."""
    max_file_mb: int = 512
    """Files larger than this (MiB) are refused unread: far above any photo's size."""

    @property
    def max_file_bytes(self) -> int:
        return self.max_file_mb * 1024 * 1024


@dataclass(frozen=True)
class ClusterConfig:
    """DBSCAN settings; ``eps = 0`` means "the engine's measured default"."""

    eps: float = 0.0
    min_samples: int = 0
    """0 means the engine's measured default."""


@dataclass(frozen=True)
class DaemonConfig:
    """Behaviour of ``facecluster run``."""

    settle_seconds: float = 2.0
    """A photo is read only once its size and mtime have been still this long."""
    polling: bool = False
    """Use polling instead of OS events (SMB/NFS shares deliver no inotify events)."""
    poll_interval: float = 10.0
    rescan_interval: float = 3600.0
    """Full rescan every so many seconds to catch missed events; 0 disables it."""
    recluster_after_faces: int = 200
    """Full re-clustering after this many new faces..."""
    recluster_quiet_seconds: float = 10.0
    """...or once no photo has arrived for this long after some new faces (at least twice
    the last re-clustering's duration, so a large library is not re-clustered non-stop)."""
    recluster_interval: float = 86400.0
    """And on this schedule regardless (seconds; 0 disables)."""
    queue_limit: int = 10000
    """Most paths held in memory at once; beyond, the rescan catches them up."""
    nice: int = 10


@dataclass(frozen=True)
class WebConfig:
    """The web page for seeing and naming people (off unless enabled)."""

    enabled: bool = False
    """Serve the page from ``facecluster run`` (``facecluster web`` serves it alone)."""
    listen: str = "127.0.0.1"
    """Address to bind: an IP address or ``localhost``. Any non-loopback address requires
    sign-in with the password set by ``facecluster web passwd``."""
    port: int = 8765
    password_file: Path | None = None
    """A file holding the password itself (a container or systemd secret), used instead
    of the one ``facecluster web passwd`` stores; read again at every sign-in."""
    behind_https: bool = False
    """True when a TLS reverse proxy serves the page: session cookies get ``Secure``, and
    everyone must sign in (the page needs a password to start)."""


@dataclass(frozen=True)
class ClusterSettings:
    """Indexing on more machines through a Dask scheduler (``[cluster]``; off when absent).

    Validated by :func:`daemon.remote.settings.check` (no Dask import here).
    """

    scheduler: str = ""
    """"" (off), ``serve`` (this service runs the scheduler) or ``tcp://``/``tls://host:port``."""
    listen: str = "127.0.0.1:8786"
    """Where a served scheduler listens; any non-loopback address requires the tls_* files."""
    index_here: bool = True
    """With ``serve``: this machine's ``workers`` processes index as cluster workers too."""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    path_map: dict[str, str] = field(default_factory=dict)
    """For ``facecluster worker``: the service's folder → the same folder seen here."""


@dataclass(frozen=True)
class Config:
    """The whole validated configuration. Paths are absolute."""

    watch: tuple[Path, ...] = (Path("photos"),)
    albums_dir: Path = Path("albums")
    state_dir: Path = Path("state")
    labels_file: Path = Path("labels.toml")
    album_mode: AlbumMode = "symlink"
    no_face: NoFacePolicy = "skip"
    workers: int = 0
    """Indexing worker processes; 0 means cores - 1, at least 1."""
    log_level: str = "info"
    engine: EngineConfig = field(default_factory=EngineConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    clustering: ClusterConfig = field(default_factory=ClusterConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    web: WebConfig = field(default_factory=WebConfig)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    config_path: Path | None = None
    """The file with the user's settings: the local one if it exists, else the main one
    (None: neither exists, the defaults are in force)."""
    config_files: tuple[Path, ...] = ()
    """The main and the local file (absolute, existing or not): what a reload re-reads."""

    @property
    def worker_count(self) -> int:
        """The effective number of indexing workers."""
        if self.workers > 0:
            return self.workers
        return max(1, (os.cpu_count() or 2) - 1)

    def in_foreground(self) -> Config:
        """This config for a one-shot command the user waits for (``scan``): ``workers = 0``
        then means every core. The service keeps one core free for the rest of the NAS."""
        if self.workers > 0:
            return self
        return replace(self, workers=os.cpu_count() or 1)


_LOG_LEVELS = ("debug", "info", "warning", "error")


def _check_value(key: str, hint: Any, value: Any) -> Any:
    """Coerce ``value`` to the annotated type ``hint`` or raise ConfigError naming ``key``."""
    origin = get_origin(hint)
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if value < 0:
            raise ConfigError(f"{key}: must not be negative, got {value}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if value < 0:
            raise ConfigError(f"{key}: must not be negative, got {value}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if get_args(hint) and type(None) in get_args(hint):  # ``Path | None``: absent is None
        (inner,) = (a for a in get_args(hint) if a is not type(None))
        return _check_value(key, inner, value)
    if origin is dict:  # dict[str, str]
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k and v for k, v in value.items()
        ):
            raise ConfigError(f"{key}: expected a table of non-empty strings, got {value!r}")
        return dict(value)
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: expected a path string, got {value!r}")
        return Path(os.path.expanduser(value))
    if origin is tuple:  # tuple[Path, ...]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{key}: expected a list of paths, got {value!r}")
        return tuple(_check_value(f"{key}[{i}]", Path, v) for i, v in enumerate(value))
    raise AssertionError(f"unhandled config type {hint!r} for {key}")  # pragma: no cover


def _build(cls: type, table: dict[str, Any], prefix: str) -> Any:
    """Build dataclass ``cls`` from a TOML table, refusing unknown keys."""
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls) if f.name not in ("config_path", "config_files")}
    for key in table:
        if key not in known:
            where = f"{prefix}{key}"
            raise ConfigError(
                f"unknown key {where!r} (known here: {', '.join(sorted(known))})"
            )
    values: dict[str, Any] = {}
    for name in known:
        if name not in table:
            continue
        hint = hints[name]
        if is_dataclass(hint):
            sub = table[name]
            if not isinstance(sub, dict):
                raise ConfigError(f"{prefix}{name}: expected a table [{prefix}{name}]")
            values[name] = _build(hint, sub, f"{prefix}{name}.")
        else:
            values[name] = _check_value(f"{prefix}{name}", hint, table[name])
    return cls(**values)


def _check_web(web: WebConfig) -> None:
    if not 1 <= web.port <= 65535:
        raise ConfigError(f"web.port: must be between 1 and 65535, got {web.port}")
    if web.listen != "localhost":
        try:
            ipaddress.ip_address(web.listen)
        except ValueError:
            raise ConfigError(
                f"web.listen: {web.listen!r} is not an IP address (or 'localhost'); "
                "use 0.0.0.0 or the NAS's LAN address to serve the LAN"
            ) from None


def _resolve(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else (base / path).resolve()


def from_dict(table: dict[str, Any], base_dir: Path, config_path: Path | None = None) -> Config:
    """Validate a parsed TOML table and return a :class:`Config` with absolute paths."""
    cfg: Config = _build(Config, table, "")
    if cfg.log_level not in _LOG_LEVELS:
        raise ConfigError(f"log_level: {cfg.log_level!r} is not one of {', '.join(_LOG_LEVELS)}")
    if not 0.0 <= cfg.detection.min_score <= 1.0:
        raise ConfigError(
            f"detection.min_score: must be between 0 and 1, got {cfg.detection.min_score}"
        )
    if cfg.detection.max_file_mb < 1:
        raise ConfigError(
            f"detection.max_file_mb: must be at least 1, got {cfg.detection.max_file_mb}"
        )
    if cfg.detection.max_side < 64:
        raise ConfigError(f"detection.max_side: must be at least 64, got {cfg.detection.max_side}")
    if cfg.clustering.eps > 2.0:
        raise ConfigError(
            f"clustering.eps: must be at most 2 (L2 on unit vectors), got {cfg.clustering.eps}"
        )
    _check_web(cfg.web)
    base = base_dir.resolve()
    if cfg.cluster != ClusterSettings():
        from daemon.remote.settings import check  # only read when [cluster] is there

        cfg = replace(cfg, cluster=check(cfg.cluster, base))
    cfg = replace(
        cfg,
        watch=tuple(_resolve(p, base) for p in cfg.watch),
        albums_dir=_resolve(cfg.albums_dir, base),
        state_dir=_resolve(cfg.state_dir, base),
        labels_file=_resolve(cfg.labels_file, base),
        engine=replace(cfg.engine, models_dir=_resolve(cfg.engine.models_dir, base)),
        web=replace(cfg.web, password_file=cfg.web.password_file
                    and _resolve(cfg.web.password_file, base)),
        config_path=config_path,
    )
    for w in cfg.watch:
        for name, d in (("albums_dir", cfg.albums_dir), ("state_dir", cfg.state_dir)):
            if w == d or w.is_relative_to(d):
                raise ConfigError(f"watch: {w} lies inside {name} {d}; photos must live elsewhere")
    return cfg


def config_pair(path: Path) -> tuple[Path, Path]:
    """(main, local) for a named file: ``X.toml`` -> ``X.toml, X.local.toml``; a named
    ``X.local.toml`` is the local half of the same pair."""
    name = path.name
    if name.endswith(_LOCAL_SUFFIX):
        return path.with_name(name[: -len(_LOCAL_SUFFIX)] + ".toml"), path
    return path, path.with_name(f"{path.stem}{_LOCAL_SUFFIX}")


def load_config(path: Path | str | None = None) -> Config:
    """Read and validate the configuration: a main file with its local file over it.

    ``path`` defaults to ``$FACECLUSTER_CONFIG``, else ``./config.toml``; either way its
    ``.local.toml`` sibling overrides it (see the module's rule). A missing named file is
    an error; without a name, missing files mean the defaults (``config_path`` None).
    """
    named = path or os.environ.get("FACECLUSTER_CONFIG")
    p = Path(named or DEFAULT_CONFIG_NAME)
    if named and not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    return _load_pair(*config_pair(p))


def reload_config(cfg: Config) -> Config:
    """The configuration from the files ``cfg`` was read from, as they are now."""
    if not cfg.config_files:
        return load_config(cfg.config_path)
    main, local = cfg.config_files
    return _load_pair(main, local)


def _read_table(p: Path) -> dict[str, Any] | None:
    if not p.exists():
        return None
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {p}: {e}") from e
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: {e}") from e
    try:
        _build(Config, table, "")  # unknown keys and wrong types, named with their file
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from e
    return table


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over``'s keys over ``base``'s; tables merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _load_pair(main: Path, local: Path) -> Config:
    main, local = Path(os.path.abspath(main)), Path(os.path.abspath(local))
    tables = [(p, t) for p in (main, local) if (t := _read_table(p)) is not None]
    table: dict[str, Any] = {}
    for _, t in tables:
        table = _merged(table, t)
    shown = tables[-1][0].resolve() if tables else None
    try:
        cfg = from_dict(table, main.parent, shown)
    except ConfigError as e:
        where = " over ".join(str(p) for p, _ in reversed(tables)) or "the defaults"
        raise ConfigError(f"{where}: {e}") from e
    return replace(cfg, config_files=(main, local))


def searched_paths() -> tuple[Path, ...]:
    """Where :func:`load_config` looks when no file is named (for "no config" messages)."""
    return tuple(Path.cwd() / name for name in (DEFAULT_CONFIG_NAME, LOCAL_CONFIG_NAME))
