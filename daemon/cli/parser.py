"""The ``facecluster`` command line's grammar: its commands, their arguments and help.

What each command does is in :mod:`daemon.cli.commands`; this module only says what
may be typed. ``--config`` and ``--debug`` are accepted before the command and after it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from daemon import __version__

PERSON_HELP = "id such as person-0007, a name, or an album folder"


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


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
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
    _library_commands(sub)
    _people_commands(sub)
    _review_commands(sub)
    _tool_commands(sub, after)
    from daemon.remote.commands import add_parsers

    add_parsers(sub)  # worker, cluster
    return p


def _library_commands(sub: _Subcommands) -> None:
    """Scanning, the service, and what they report."""
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


def _people_commands(sub: _Subcommands) -> None:
    """The edits of labels.toml."""
    na = sub.add_parser("name", help='name a person: name person-0007 "Grandma"')
    na.add_argument("person", help=PERSON_HELP)
    na.add_argument("name", help="the name (the album folder becomes this)")
    me = sub.add_parser("merge", help="merge people into one album under one name")
    me.add_argument("people", nargs="+", metavar="PERSON", help="two or more people")
    me.add_argument("--name", help="the name of the merged album (default: their name)")
    hi = sub.add_parser("hide", help="no album for this person (--show to undo)")
    hi.add_argument("person", help=PERSON_HELP)
    hi.add_argument("--show", action="store_true", help="show the person again")
    no = sub.add_parser("not", help="this photo or face is not this person")
    no.add_argument("person", help=PERSON_HELP)
    no.add_argument("what", metavar="PHOTO|face-N", help="a photo path or a face id")


def _review_commands(sub: _Subcommands) -> None:
    """The "same person?" questions and the split of a person who is two."""
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
    sp.add_argument("person", help=PERSON_HELP)
    sp.add_argument("--json", action="store_true", help="print the parts for scripts")


def _tool_commands(sub: _Subcommands, after: argparse.ArgumentParser) -> None:
    """ZIPs out and in, rebuild, the page alone and the model files."""
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
