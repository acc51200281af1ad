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
import threading
from collections.abc import Sequence
from pathlib import Path
from shlex import quote

import structlog

from daemon import log as logsetup
from daemon.cli.parser import build_parser
from daemon.cli.reader import UserError, reader
from daemon.config import Config, ConfigError, load_config

log = structlog.get_logger(__name__)

EXIT_ERROR = 1
EXIT_USAGE = 2


def _cmd_scan(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.cli.progress import Progress
    from daemon.remote import make_indexer
    from daemon.service.lock import hold

    bar: list[Progress] = []

    def start(total: int | None):
        bar.append(Progress(total))
        return lambda n: bar[0].update(n)

    cfg = cfg.in_foreground()  # the user waits for it: every core (workers = 0)
    # One writer per store: a scan while the service runs is refused by the lock.
    with hold(cfg.state_dir):
        # The workers load the models while this process imports the rest and opens the
        # store: a small scan's start-up is mostly that loading (issue 15).
        workers = make_indexer(cfg).start()
        try:
            from daemon.stages.pipeline import Pipeline

            pipeline = Pipeline(cfg, create=True, workers=workers)
        except BaseException:
            workers.close()
            raise
        with pipeline:
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


def _status(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.cli.status import cmd_status

    return cmd_status(cfg, args)


def _cmd_run(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.cli import firstrun
    from daemon.service import loop as service

    if args.create_folders:
        message = firstrun.prepare(cfg)
        if message:
            print(message, flush=True)
    return service.run(cfg)


def _cmd_people(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.cli import naming as naming_cli

    with reader(cfg) as pipeline:
        if args.faces or args.person:
            if not args.person:
                raise UserError("--faces needs a PERSON: facecluster people person-0007 --faces")
            if args.faces:
                return naming_cli.cmd_faces(pipeline, args)
            ids = naming_cli.resolve(pipeline, args.person)
            rows = [r for r in pipeline.people() if r.id in ids]
        else:
            rows = pipeline.people()
        error = pipeline.labels_error
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2, ensure_ascii=False))
        return 0
    if error:
        print(f"labels.toml has an error; the last good labels are shown: {error}",
              file=sys.stderr)
    if not rows:
        print("no people yet: run `facecluster scan` first")
        return 0
    print(f"{'id':<12} {'name':<24} {'faces':>6} {'photos':>6}  {'sample':<40}  album")
    for r in rows:
        album = r.album or ("(hidden)" if r.hidden else "(no album: all excluded)")
        sample = _sample(r, cfg.watch)
        print(f"{r.key:<12} {r.name or '-':<24} {r.faces:>6} {r.photos:>6}  {sample:<40}  {album}")
    return 0


def _sample(row, roots: Sequence[Path]) -> str:  # noqa: ANN001 - a PersonRow
    """The sample photo as the user finds it (relative to its watched folder) and its face."""
    if not row.sample:
        return "-"
    from daemon.people.labels import photo_entry

    photo = photo_entry(Path(row.sample), roots)
    return f"{photo} ({row.sample_face})" if row.sample_face else photo


def _naming(command: str):  # noqa: ANN202
    def run(cfg: Config, args: argparse.Namespace) -> int:
        from daemon.cli import naming as naming_cli

        with reader(cfg) as pipeline:
            return getattr(naming_cli, f"cmd_{command}")(pipeline, args)

    return run


def _cmd_review(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.review import command

    if args.review_command == "answer":
        return command.cmd_answer(cfg, args.id, args.answer)
    if args.limit < 0:
        raise UserError("--limit must not be negative")
    with reader(cfg) as pipeline:
        if args.json:
            return command.cmd_json(pipeline, args.limit, args.order)
        return command.cmd_loop(pipeline, args.limit, args.order)


def _cmd_split(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.cli import naming as naming_cli
    from daemon.review import command

    with reader(cfg) as pipeline:
        ids = naming_cli.resolve(pipeline, args.person)
        if len(ids) != 1:
            raise UserError(f"{args.person!r} is {len(ids)} people (a merged album): "
                            "split one of them, by id")
        return command.cmd_split(pipeline, ids[0], args.json)


def _cmd_export(cfg: Config, args: argparse.Namespace) -> int:
    from daemon import albums

    with reader(cfg) as pipeline:
        plan = pipeline.find_album(args.person)
    if plan is None:
        raise UserError(f"no album for {quote(args.person)}: see `facecluster people`")
    # Only what the store puts in this album now; the manifest on the share is not proof.
    known = albums.KnownPhotos(frozenset(plan.photos), cfg.watch)
    target = albums.zip_target(args.zip_path, plan.folder)
    n = albums.export_zip(cfg.albums_dir, plan.folder, target, known=known)
    print(f"wrote {n} photos of {plan.folder} to {target}")
    return 0


def _cmd_import(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.cli.inbox import ArchiveError, import_zip

    try:
        report = import_zip(args.archive, cfg.watch[0])
    except ArchiveError as e:
        raise UserError(str(e)) from e
    print(f"imported {report.photos} photos into {report.folder}")
    for s in report.skipped:
        print(f"  skipped {s}")
    return 0


def _cmd_rebuild(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.cli.rebuild import rebuild

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
    from daemon.indexer import models

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
    "status": _status,
    "people": _cmd_people,
    "review": _cmd_review,
    "split": _cmd_split,
    "export": _cmd_export,
    "import": _cmd_import,
    "rebuild": _cmd_rebuild,
    "models": _cmd_models,
    "name": _naming("name"),
    "merge": _naming("merge"),
    "hide": _naming("hide"),
    "not": _naming("not"),
    "web": _cmd_web,
    "worker": lambda cfg, args: _remote("cmd_worker", cfg, args),
    "cluster": lambda cfg, args: _remote("cmd_cluster", cfg, args),
}


def _remote(name: str, cfg: Config, args: argparse.Namespace) -> int:
    from daemon.remote import commands

    return getattr(commands, name)(cfg, args)


def _known_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "tell the user", gathered lazily from each stage."""
    from daemon.albums import AlbumError
    from daemon.cli.naming import PersonNotFound
    from daemon.indexer import EngineError
    from daemon.indexer.models import ManifestError, MissingModelError
    from daemon.people.labels import LabelsError
    from daemon.people.naming import LabelsConflict, NamingError
    from daemon.service.lock import AlreadyRunning
    from daemon.store import StoreError

    return (
        EngineError, LabelsError, AlreadyRunning, LabelsConflict, NamingError, PersonNotFound,
        MissingModelError, ManifestError, StoreError, AlbumError, OSError,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The command line run in this process (the console script goes through :func:`entry`)."""
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """One parsed command line: its exit code, errors as one readable line."""
    try:
        cfg = load_config(args.config)
        if args.command in ("run", "worker"):
            logsetup.configure("debug" if args.debug else cfg.log_level)
        elif args.debug or cfg.log_level == "debug":
            logsetup.configure("debug")  # asked for everything, machine-readable if piped
        else:
            # A command's output is for a person or a pipe: warnings only, never JSON
            # lines mixed into it (the service's log is the place for the rest).
            logsetup.configure("error" if cfg.log_level == "error" else "warning", json=False)
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


LEAVE_AT_ONCE = frozenset({"scan"})
"""Commands whose process ends without the interpreter's teardown once they are done."""


def entry() -> None:
    """The ``facecluster`` console script and ``python -m daemon``: :func:`main`, then exit.

    After a ``scan`` everything is written and closed, and freeing the modules one by
    one (numpy, faiss, OpenCV, SQLite...) would cost ~0.1 s more of the command's time;
    its output is flushed and the process ends at once. Not when a thread is still
    running (it would be cut off), and ``main`` itself never does it (tests call it).
    """
    args = build_parser().parse_args(sys.argv[1:])
    code = run(args)
    if args.command in LEAVE_AT_ONCE and threading.active_count() == 1:
        logsetup.leave_now(code)
    sys.exit(code)
