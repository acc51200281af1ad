"""The ``facecluster`` command line.

Every failure a user can cause or meet (bad config, missing model, broken store, a
second instance) ends with one readable line on stderr and a non-zero exit code; the
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from daemon import __version__
from daemon import log as logsetup
from daemon.config import Config, ConfigError, load_config

log = structlog.get_logger(__name__)

EXIT_ERROR = 1
EXIT_USAGE = 2


class UserError(Exception):
    """A failure to report as one line, without a traceback."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="facecluster",
        description="Turn folders of photos into per-person albums.",
    )
    p.add_argument("--config", type=Path, help="config file (default: ./config.toml)")
    p.add_argument("--debug", action="store_true", help="debug logs and full tracebacks")
    p.add_argument("--version", action="version", version=f"facecluster {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("scan", help="index the watched folders once, cluster, write albums")
    sub.add_parser("run", help="run the service: watch folders and keep albums current")
    st = sub.add_parser("status", help="photos by status, faces, people, engine, last run")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    pe = sub.add_parser("people", help="list people with their names, counts and albums")
    pe.add_argument("--json", action="store_true", help="machine-readable output")
    ex = sub.add_parser("export", help="write one person's album as a ZIP file")
    ex.add_argument("person", help="album folder, name, or id such as person-0007")
    ex.add_argument("--zip", type=Path, required=True, dest="zip_path", help="ZIP to write")
    im = sub.add_parser("import", help="add a ZIP of photos to the first watched folder")
    im.add_argument("archive", type=Path, help="ZIP archive of photos")
    sub.add_parser(
        "rebuild", help="set the store aside and re-derive it from the photos"
    )

    we = sub.add_parser("web", help="serve the page for naming people (see [web] in config)")
    wsub = we.add_subparsers(dest="web_command", metavar="ACTION")
    wsub.add_parser("passwd", help="set the password for signing in from other machines")

    mo = sub.add_parser("models", help="fetch, verify or list the model files")
    msub = mo.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    fe = msub.add_parser("fetch", help="download (or copy) missing models, verified by sha256")
    fe.add_argument("--from", dest="source", type=Path, help="copy from this folder instead")
    fe.add_argument("keys", nargs="*", metavar="MODEL", help="only these (yunet, sface)")
    msub.add_parser("verify", help="check the model files against the manifest")
    msub.add_parser("list", help="list the known model files and their state")
    return p


def _cmd_scan(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.lock import hold
    from daemon.progress import Progress
    from daemon.scan import Pipeline

    bar: list[Progress] = []

    def start(total: int | None):
        bar.append(Progress(total))
        return lambda n: bar[0].update(n)

    # One writer per store: a scan while the service runs is refused by the lock.
    with hold(cfg.state_dir), Pipeline(cfg, create=True) as pipeline:
        try:
            report = pipeline.scan(progress=start)
        finally:
            for b in bar:
                b.close()
    i = report.index
    print(
        f"photos: {i.indexed} indexed, {i.skipped} unchanged, {i.moved} moved, "
        f"{i.copied} duplicates, {i.failed} failed, {report.removed} removed\n"
        f"people: {report.cluster.people} from {report.cluster.faces} faces "
        f"({report.cluster.noise} unmatched)\n"
        f"albums: {report.albums.added} entries added, {report.albums.removed} removed "
        f"in {cfg.albums_dir}\n"
        f"took {report.seconds:.1f} s"
    )
    return 0


def _cmd_run(cfg: Config, args: argparse.Namespace) -> int:
    from daemon import service

    return service.run(cfg)


def _cmd_status(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.scan import Pipeline
    from daemon.service import read_service_status

    with Pipeline(cfg) as pipeline:
        status = pipeline.status().as_dict()
    svc = read_service_status(cfg.state_dir)
    status["service"] = svc.as_dict() if svc is not None else None
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    photos = ", ".join(f"{n} {k}" for k, n in sorted(status["photos"].items())) or "none"
    lines = [
        ("engine", status["engine"]),
        ("photos", photos),
        ("faces", status["faces"]),
        ("people", status["people"]),
        ("last scan", status["last_scan"] or "never"),
        ("last clustering", status["last_recluster"] or "never"),
    ]
    if status["labels_error"]:
        lines.append(("labels.toml", f"ERROR {status['labels_error']}"))
    if svc is None:
        lines.append(("service", "not running"))
    else:
        lines.append(("service", f"pid {svc.pid}, {svc.phase}, queue {svc.queue_length}"))
        if svc.labels_error:
            lines.append(("labels (live)", f"ERROR {svc.labels_error}"))
    for key, value in lines:
        print(f"{key + ':':<17}{value}")
    return 0


def _cmd_people(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.scan import Pipeline

    with Pipeline(cfg) as pipeline:
        rows = pipeline.people()
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no people yet: run `facecluster scan` first")
        return 0
    print(f"{'id':<12} {'name':<24} {'faces':>6} {'photos':>6}  album")
    for r in rows:
        album = r.album or "(hidden)"
        print(f"{r.key:<12} {r.name or '-':<24} {r.faces:>6} {r.photos:>6}  {album}")
    return 0


def _cmd_export(cfg: Config, args: argparse.Namespace) -> int:
    from daemon import albums
    from daemon.scan import Pipeline

    with Pipeline(cfg) as pipeline:
        folder = pipeline.find_album(args.person)
    if folder is None:
        raise UserError(f"no album for {args.person!r}: see `facecluster people`")
    n = albums.export_zip(cfg.albums_dir, folder, args.zip_path)
    print(f"wrote {n} photos of {folder} to {args.zip_path}")
    return 0


def _cmd_import(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.inbox import ImportError_, import_zip

    try:
        report = import_zip(args.archive, cfg.watch[0])
    except ImportError_ as e:
        raise UserError(str(e)) from e
    print(f"imported {report.photos} photos into {report.folder}")
    for s in report.skipped:
        print(f"  skipped {s}")
    return 0


def _cmd_rebuild(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.rebuild import rebuild

    aside = rebuild(cfg)
    print(f"old store kept at {aside}; rebuilt from the photos")
    return _cmd_scan(cfg, args)


def _cmd_web(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.web.command import WebCommandError, web_command

    try:
        return web_command(cfg, args.web_command)
    except WebCommandError as e:
        raise UserError(str(e)) from e


def _cmd_models(cfg: Config, args: argparse.Namespace) -> int:
    from daemon import models

    mdir = cfg.engine.models_dir
    if args.models_command == "fetch":
        try:
            results = models.fetch(mdir, args.keys or None, source_dir=args.source)
        except models.FetchError as e:
            for r in e.results:
                print(f"{r.key:<8} {r.action:<10} {r.path}")
            raise
        for r in results:
            print(f"{r.key:<8} {r.action:<10} {r.path}")
        return 0
    rows = models.list_models(mdir)
    bad = 0
    for r in rows:
        print(f"{r.key:<8} {r.state:<11} {r.filename:<40} {r.size:>10,}  {r.license}")
        bad += r.state != "ok"
    if args.models_command == "verify" and bad:
        print(
            f"{bad} model file(s) missing or wrong: `facecluster models fetch`, or place them "
            f"in {mdir} by hand; the offline dlib engine needs none of them but YuNet"
        )
        return EXIT_ERROR
    return 0


COMMANDS = {
    "scan": _cmd_scan,
    "run": _cmd_run,
    "status": _cmd_status,
    "people": _cmd_people,
    "export": _cmd_export,
    "import": _cmd_import,
    "rebuild": _cmd_rebuild,
    "models": _cmd_models,
    "web": _cmd_web,
}


def _known_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "tell the user", gathered lazily from each stage."""
    from daemon.albums import AlbumError
    from daemon.indexer import EngineError
    from daemon.labels import LabelsError
    from daemon.lock import AlreadyRunning
    from daemon.models import ManifestError, MissingModelError
    from daemon.store import StoreError

    return (
        EngineError, LabelsError, AlreadyRunning,
        MissingModelError, ManifestError, StoreError, AlbumError, OSError,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``facecluster`` console script and ``python -m daemon``."""
    args = _parser().parse_args(argv)
    try:
        cfg = load_config(args.config)
        logsetup.configure("debug" if args.debug else cfg.log_level)
        return COMMANDS[args.command](cfg, args)
    except KeyboardInterrupt:
        print("facecluster: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `facecluster people | head`: the reader left; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (UserError, ConfigError) as e:
        if args.debug:
            raise
        print(f"facecluster: error: {e}", file=sys.stderr)
        return EXIT_USAGE if isinstance(e, ConfigError) else EXIT_ERROR
    except Exception as e:  # noqa: BLE001 - one readable line unless --debug
        if args.debug:
            raise
        if isinstance(e, _known_errors()):
            print(f"facecluster: error: {e}", file=sys.stderr)
        else:
            print(
                f"facecluster: internal error: {type(e).__name__}: {e} "
                "(run with --debug for the traceback)",
                file=sys.stderr,
            )
        return EXIT_ERROR
