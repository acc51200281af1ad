"""The names the album tree uses: plain folder names and stable, collision-free file names.

An entry is named ``<stem>~<hash><suffix>``: the original's file name plus the first 8
hex digits of the SHA-1 of its absolute path. The name is a pure function of the source,
so two ``IMG_0001.jpg`` from different folders never collide, an entry keeps its name
from run to run, and it keeps it when its person is renamed (the entry is then moved, not
re-created). A name longer than a file system allows is shortened in its head, never in
its tag, so it stays unique.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

MAX_NAME_BYTES = 255
_MAX_SUFFIX_BYTES = 16  # a longer "extension" is part of the name, not a file type


def is_plain_name(name: str) -> bool:
    """Whether ``name`` is one visible path component (no separator, dot-name or NUL)."""
    return (
        bool(name)
        and "/" not in name
        and "\0" not in name
        and not name.startswith(".")
        and len(os.fsencode(name)) <= MAX_NAME_BYTES
    )


def short_hash(text: str) -> str:
    """The first 8 hex digits of the SHA-1 of ``text`` (as file-system bytes)."""
    return hashlib.sha1(os.fsencode(text)).hexdigest()[:8]


def fit_name(head: str, tail: str) -> str:
    """``head + tail``, with ``head`` shortened until the name fits in a file system."""
    room = MAX_NAME_BYTES - len(os.fsencode(tail))
    while len(os.fsencode(head)) > room:
        head = head[:-1]
    return head + tail


def entry_name(source: Path) -> str:
    """The stable, collision-free name of ``source``'s entry in an album."""
    absolute = str(source) if source.is_absolute() else os.path.abspath(source)
    stem, suffix = os.path.splitext(source.name)
    if len(os.fsencode(suffix)) > _MAX_SUFFIX_BYTES:
        stem, suffix = source.name, ""
    return fit_name(stem, f"~{short_hash(absolute)}{suffix}")
