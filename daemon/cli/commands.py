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
from shlex import quote

import structlog

from daemon import __version__
from daemon import log as logsetup
from daemon.config import Config, ConfigError, load_config

log = structlog.get_logger(__name__)

EXIT_ERROR = 1
EXIT_USAGE = 2


class UserError(Exception):
    """A failure to report as one line, without a traceback."""


class _Subcommands:
    """``add_parser`` that gives every command the common options."""

    def __init__(self, action: argparse._SubParsersAction, common: argparse.ArgumentParser):
        self._action = action
        self._common = common

    def add_parser(self, name: str, **kwargs: object) -> argparse.ArgumentParser:
        return self._action.add_parser(name, parents=[self._common], **kwargs)


def _common(default: object) -> argparse.ArgumentParser:
    """--config and --debug, accepted before the command and after it alike."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--config", type=Path, default=default,
        help="config file (default: ./config.toml, with ./config.local.toml over it)",
    )
    p.add_argument("--debug", action="store_true", default=default or False,
                   help="debug logs and full tracebacks")
    return p


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="facecluster",
        description="Turn folders of photos into per-person albums.",
        parents=[_common(None)],
    )
    p.add_argument("--version", action="version", version=f"facecluster {__version__}")
    # SUPPRESS: a command's own --config/--debug set the value only when given, so the
    # one given before the command is not reset to the default.
    after = _common(argparse.SUPPRESS)
    sub = _Subcommands(p.add_subparsers(dest="command", required=True, metavar="COMMAND"), after)

    sub.add_parser("scan", help="index the watched folders once, cluster, write albums")
    ru = sub.add_parser("run", help="run the service: watch folders and keep albums current")
    ru.add_argument(
        "--create-folders", action="store_true",
        help="create missing watched folders first and say where photos go (`make run`)",
    )
    st = sub.add_parser("status", help="photos by status, faces, people, engine, last run")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.add_argument("--failed", action="store_true", help="list failed photos and why")
    pe = sub.add_parser("people", help="list people with their names, counts and albums")
    pe.add_argument("person", nargs="?", help="only this person (id, name or album folder)")
    pe.add_argument("--faces", action="store_true", help="list the person's faces (face-N)")
    pe.add_argument("--json", action="store_true", help="machine-readable output")
    na = sub.add_parser("name", help='name a person: name person-0007 "Grandma"')
    na.add_argument("person", help="id such as person-0007, a name, or an album folder")
    na.add_argument("name", help="the name (the album folder becomes this)")
    me = sub.add_parser("merge", help="merge people into one album under one name")
    me.add_argument("people", nargs="+", metavar="PERSON", help="two or more people")
    me.add_argument("--name", help="the name of the merged album (default: their name)")
    hi = sub.add_parser("hide", help="no album for this person (--show to undo)")
    hi.add_argument("person", help="id such as person-0007, a name, or an album folder")
    hi.add_argument("--show", action="store_true", help="show the person again")
    no = sub.add_parser("not", help="this photo or face is not this person")
    no.add_argument("person", help="id such as person-0007, a name, or an album folder")
    no.add_argument("what", metavar="PHOTO|face-N", help="a photo path or a face id")
    rv = sub.add_parser("review", help='answer "same person?" questions that fix the most faces')
    rv.add_argument("--json", action="store_true", help="print the questions for scripts")
    rv.add_argument("--limit", type=int, default=25, help="at most this many (default 25)")
    rv.add_argument("--order", choices=("gain", "naive"), default="gain",
                    help="gain: most faces fixed first (default); naive: the look-alike "
                    "lists top to bottom (for comparing)")
    rsub = rv.add_subparsers(dest="review_command", metavar="ACTION")
    an = rsub.add_parser("answer", help="record one answer: answer ID yes|no|unsure")
    an.add_argument("id", help="a question id, e.g. person-0007+person-0012")
    an.add_argument("answer", choices=("yes", "no", "unsure"))
    sp = sub.add_parser("split", help="a person who is two: re-cluster their faces stricter "
                        "and ask about the parts")
    sp.add_argument("person", help="id such as person-0007, a name, or an album folder")
    sp.add_argument("--json", action="store_true", help="print the parts for scripts")
    ex = sub.add_parser("export", help="write one person's album as a ZIP file")
    ex.add_argument("person", help="album folder, name, or id such as person-0007")
    ex.add_argument(
        "--zip", required=True, dest="zip_path", metavar="FILE",
        help="ZIP to write (a folder: <album>.zip in it)",
    )
    im = sub.add_parser("import", help="add a ZIP of photos to the first watched folder")
    im.add_argument("archive", type=Path, help="ZIP archive of photos")
    sub.add_parser(
        "rebuild", help="set the store aside and re-derive it from the photos"
    )

    we = sub.add_parser("web", help="serve the page for naming people (see [web] in config)")
    wsub = _Subcommands(we.add_subparsers(dest="web_command", metavar="ACTION"), after)
    wsub.add_parser("passwd", help="set the password for signing in from other machines")

    mo = sub.add_parser("models", help="fetch, verify or list the model files")
    msub = _Subcommands(
        mo.add_subparsers(dest="models_command", required=True, metavar="ACTION"), after
    )
    fe = msub.add_parser("fetch", help="download (or copy) missing models, verified by sha256")
    fe.add_argument("--from", dest="source", type=Path, help="copy from this folder instead")
    fe.add_argument("keys", nargs="*", metavar="MODEL", help="only these (yunet, sface)")
    msub.add_parser("verify", help="check the model files against the manifest")
    msub.add_parser("list", help="list the known model files and their state")
    from daemon.remote.commands import add_parsers

    add_parsers(sub)  # worker, cluster
    return p


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


def _cmd_run(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.cli import firstrun
    from daemon.service import loop as service

    if args.create_folders:
        message = firstrun.prepare(cfg)
        if message:
            print(message, flush=True)
    return service.run(cfg)


def _config_note(cfg: Config) -> str:
    from daemon.config import searched_paths

    if cfg.config_path is not None:
        return f"config {cfg.config_path}"
    looked = " and ".join(str(p) for p in searched_paths())
    return f"no config file (looked for {looked}; using the defaults)"


def _reader(cfg: Config):  # noqa: ANN202 - a Pipeline, imported lazily
    """The pipeline for a reading command, which must never create a store.

    It describes the store as it is: the engine is the one the store was indexed with
    (a model file that appeared since changes the engine only at the next start).
    """
    from daemon.stages.pipeline import Pipeline, _has_traces
    from daemon.store.db import DB_NAME

    db = cfg.state_dir / DB_NAME
    # A deleted store (albums left behind) is the Pipeline's to report: "rebuild".
    if not db.exists() and not _has_traces(cfg):
        raise UserError(
            f"no photos indexed yet: there is no store at {db} ({_config_note(cfg)}); "
            "start the service (`make run`) or run `facecluster scan`"
        )
    return Pipeline(cfg, as_indexed=True, report_labels=False)


def _engine_lines(cfg: Config, store_engine: str, svc) -> list[tuple[str, str]]:  # noqa: ANN001
    from daemon.indexer import EngineError, engine_id_for
    from daemon.indexer.engine import unmeasured_note

    current = svc.engine if svc is not None and svc.engine else store_engine
    lines = [("engine", current)]
    try:
        upcoming = engine_id_for(cfg.engine)
    except EngineError as e:
        lines.append(("engine (next)", f"ERROR {e}"))
        upcoming = current
    if upcoming != current:
        when = "reload (SIGHUP) or restart" if svc is not None else "start"
        lines.append(("engine (next)", f"{upcoming}: the model files changed; the next "
                      f"{when} uses it and re-embeds every photo"))
    note = unmeasured_note(upcoming) or unmeasured_note(current)
    if note:
        lines.append(("engine note", note))
    return lines


def _failed_photos(pipeline) -> list[dict]:  # noqa: ANN001
    from daemon.stages.sync import given_up

    return [
        {"path": str(r.path), "reason": r.error or "unknown", "will_retry": not given_up(r)}
        for r in pipeline.store.iter_photos()
        if r.status == "failed"
    ]


def _last_scan(status: dict, svc) -> str:  # noqa: ANN001
    if svc is not None and svc.phase in ("starting", "reconciling", "indexing"):
        return f"in progress ({svc.message})"
    return status["last_scan"] or "never"


def _cmd_status(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.service.status import read_service_status

    with _reader(cfg) as pipeline:
        status = pipeline.status().as_dict()
        problems = pipeline.labels_problems()
        broken = pipeline.labels_error is not None
        failed = _failed_photos(pipeline) if args.failed or args.json else []
    svc = read_service_status(cfg.state_dir)
    status["service"] = svc.as_dict() if svc is not None else None
    status["labels_problems"] = problems
    status["config"] = str(cfg.config_path) if cfg.config_path else None
    engine_lines = _engine_lines(cfg, status["engine"], svc)
    status["engine_notes"] = {k: v for k, v in engine_lines[1:]}
    if args.json:
        status["failed_photos"] = failed
        print(json.dumps(status, indent=2, default=str))
        return 0
    photos = ", ".join(f"{n} {k}" for k, n in sorted(status["photos"].items())) or "none"
    lines = [
        *engine_lines,
        ("photos", photos),
        ("faces", status["faces"]),
        ("people", status["people"]),
        ("last scan", _last_scan(status, svc)),
        ("last clustering", status["last_recluster"] or "never"),
    ]
    lines += _labels_lines(problems, broken)
    for c in status.get("identity_conflicts") or []:  # see daemon.people.identity.conflict
        lines.append(("CONFLICT", c["message"]))
    if svc is None:
        lines.append(("service", "not running"))
    else:
        lines.append(("service", f"pid {svc.pid}, {svc.phase}, queue {svc.queue_length}"))
        lines += _indexing_lines(svc.indexing)
    for key, value in lines:
        print(f"{key + ':':<17}{value}")
    if args.failed:
        print(f"\nfailed photos ({len(failed)}):" if failed else "\nno failed photos")
        for f in failed:
            retry = "will retry" if f["will_retry"] else "until the file changes"
            print(f"  {f['path']}\n      {f['reason']} ({retry})")
    elif status["photos"].get("failed"):
        print("(`facecluster status --failed` lists the failed photos and why)")
    return 0


def _indexing_lines(indexing: dict) -> list[tuple[str, str]]:
    """The cluster's part of ``status``: its workers, or why the local pool stands in."""
    if indexing.get("lost"):
        return [("cluster", f"LOST, indexing on this machine: {indexing['lost']}")]
    if indexing.get("mode") != "cluster":
        return []
    workers = indexing.get("workers", [])
    out = [("cluster", f"{indexing.get('scheduler', '?')}, {len(workers)} worker(s)")]
    out += [("  worker", f"{w['name']}: {w['photos_per_s']} photos/s") for w in workers]
    out += [("  refused", f"{a}: {why}") for a, why in indexing.get("refused", {}).items()]
    return out


def _labels_lines(problems: list[str], broken: bool) -> list[tuple[str, str]]:
    """labels.toml's problems as status rows: one row, each problem on a line of its own."""
    if not problems:
        return []
    note = " (the last good labels stay in force until it is fixed)" if broken else ""
    if len(problems) == 1:
        return [("labels.toml", f"ERROR {problems[0]}{note}")]
    indent = "\n" + " " * 19
    return [("labels.toml", f"ERROR {len(problems)} problems{note}:"
             + "".join(indent + p for p in problems))]


def _cmd_people(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.cli import naming as naming_cli

    with _reader(cfg) as pipeline:
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

        with _reader(cfg) as pipeline:
            return getattr(naming_cli, f"cmd_{command}")(pipeline, args)

    return run


def _cmd_review(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.review import command

    if args.review_command == "answer":
        return command.cmd_answer(cfg, args.id, args.answer)
    if args.limit < 0:
        raise UserError("--limit must not be negative")
    with _reader(cfg) as pipeline:
        if args.json:
            return command.cmd_json(pipeline, args.limit, args.order)
        return command.cmd_loop(pipeline, args.limit, args.order)


def _cmd_split(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.cli import naming as naming_cli
    from daemon.review import command

    with _reader(cfg) as pipeline:
        ids = naming_cli.resolve(pipeline, args.person)
        if len(ids) != 1:
            raise UserError(f"{args.person!r} is {len(ids)} people (a merged album): "
                            "split one of them, by id")
        return command.cmd_split(pipeline, ids[0], args.json)


def _cmd_export(cfg: Config, args: argparse.Namespace) -> int:
    from daemon import albums

    with _reader(cfg) as pipeline:
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
    "status": _cmd_status,
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
    """Entry point of the ``facecluster`` console script and ``python -m daemon``."""
    args = _parser().parse_args(argv)
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
