"""The user's names for people: ``labels.toml``.

Clustering gives every person a stable id, shown as ``person-0007``; the album of a
person nobody has named yet is the folder ``person-0007``. The user names, merges,
hides and corrects people in one small TOML file::

    [people]
    person-0001 = "Grandma"            # a name: the album folder becomes "Grandma"
    person-0004 = "Grandma"            # same name again: merged into one album
    person-0009 = { name = "Tom", exclude = ["2019/IMG_0042.jpg", "face-1234"] }
    person-0012 = { hide = true }      # no album for this person
    person-0007 = { name = "Mia", born = "2019-03", same_as = ["person-0031", "face-88"],
                    not = ["person-0012", "face-90"] }   # answers to review questions

A value is either a name (a string) or an inline table with any of

``name``
    the person's name (string). Names are compared after Unicode NFC normalisation and
    trimming of surrounding spaces; equal names merge their people into one album.
``hide``
    ``true`` for no album at all (strangers, the photographer's thumb, ...).
``exclude``
    "not this person": a list of photo paths, relative to any watched folder or
    absolute, and/or face ids written ``face-1234`` (as shown by ``facecluster``).
``same_as``
    people (``person-0031``) and faces (``face-88``) that *are* this person: the answers
    "yes" of ``facecluster review``. Every clustering keeps them together.
``not``
    people and faces that are *not* this person (the answers "no"); every clustering
    keeps them apart, and so their consequences: A same as B and B not C keeps A from C.
``born``
    the person's birth date, ``"2019"``, ``"2019-03"`` or ``"2019-03-14"`` (or a TOML
    date): a face in a photo taken before it is not this person.

The file is checked strictly: a syntax error, a key that is not ``person-<digits>``,
a wrong type or an unknown option raises :class:`LabelsError` naming the key and, when
it can be found, the line; every such problem of the file is reported at once (a syntax
error stops the reading, so it comes alone). A missing file means "no labels yet". While
the file is broken the last good labels stay in force: :func:`load_live_labels` keeps a
copy of them in the state folder, so the service and a separate ``facecluster people``
agree on what is in force.

Folder names are made from names by :func:`safe_folder_name`, which never yields a path
separator, a hidden or Windows-reserved name, or more than 255 bytes.
"""

from __future__ import annotations

import datetime
import os
import re
import sys
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from daemon.fsutil import atomic_write

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

MAX_LABELS_BYTES = 8 * 1024 * 1024
"""A labels file larger than this is refused: it is typed by a person, not generated."""
MAX_PERSON_ID = 10**12 - 1
"""The largest id a ``person-<digits>`` key can hold (labels.toml allows 12 digits)."""
MAX_FOLDER_BYTES = 255
"""The usual file-name limit of ext4, btrfs, ZFS, NTFS and SMB, in UTF-8 bytes."""

_PERSON_KEY = re.compile(r"person-([0-9]{1,12})", re.ASCII)
_FACE_KEY = re.compile(r"face-([0-9]{1,18})", re.ASCII)
_LABEL_OPTIONS = ("name", "hide", "exclude", "same_as", "not", "born")
_BORN = re.compile(r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?", re.ASCII)
# Characters Windows clients cannot show in a name; Samba would mangle them.
_WINDOWS_FORBIDDEN = set('<>:"|?*')
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {
    f"{dev}{n}" for dev in ("COM", "LPT") for n in (*"0123456789", "¹", "²", "³")
}


LAST_GOOD_NAME = "labels.last-good.toml"
"""In the state folder: the text of the labels in force while labels.toml is broken."""


class LabelsError(ValueError):
    """``labels.toml`` cannot be used; ``line`` is the 1-based line at fault, if known.

    ``problems`` lists every problem found (each naming its line), first one first.
    ``partial`` holds the entries that were fine, when the file's syntax was (so the
    ids it mentions can be checked while it is broken).
    """

    def __init__(
        self,
        message: str,
        line: int | None = None,
        problems: tuple[str, ...] = (),
        partial: Labels | None = None,
    ) -> None:
        super().__init__(message)
        self.line = line
        self.problems = problems or (message,)
        self.partial = partial


@dataclass(frozen=True)
class PersonLabel:
    """What the user said about one person id."""

    name: str | None = None
    hidden: bool = False
    exclude: tuple[str, ...] = ()
    """Photo paths (relative to a watched folder, or absolute) and ``face-N`` ids."""
    same_as: tuple[str, ...] = ()
    """``person-NNNN`` and ``face-N`` references that are this person (answers "yes")."""
    different: tuple[str, ...] = ()
    """``person-NNNN`` and ``face-N`` references that are not this person (key ``not``)."""
    born: str | None = None
    """Birth date as written, ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD`` (see :func:`born_on`)."""


UNLABELLED = PersonLabel()


@dataclass(frozen=True)
class Labels:
    """The parsed labels file: person id -> label."""

    people: Mapping[int, PersonLabel] = field(default_factory=lambda: MappingProxyType({}))
    lines: Mapping[int, int] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )
    """Person id -> the line that labels it, where it could be found (for messages)."""

    def label(self, person_id: int) -> PersonLabel:
        """The label of ``person_id``; an unnamed, visible label if the file says nothing."""
        return self.people.get(person_id, UNLABELLED)


def person_key(person_id: int) -> str:
    """The user-facing key of a person id: ``person_key(7) == "person-0007"``."""
    if person_id < 0:
        raise ValueError(f"person id must not be negative, got {person_id}")
    return f"person-{person_id:04d}"


def parse_person_key(key: str) -> int:
    """The id in a key like ``person-0007``; raises :class:`LabelsError` for any other form."""
    m = _PERSON_KEY.fullmatch(key)
    if m is None:
        raise LabelsError(f"{key!r} is not a person key like 'person-0007'")
    return int(m.group(1))


def parse_face_key(entry: str) -> int | None:
    """The face id of an exclude entry like ``face-1234``, or None for a photo path."""
    m = _FACE_KEY.fullmatch(entry)
    return int(m.group(1)) if m else None


def parse_ref(entry: str) -> tuple[str, int] | None:
    """``("person", 7)`` for ``person-0007``, ``("face", 12)`` for ``face-12``, else None."""
    m = _PERSON_KEY.fullmatch(entry)
    if m is not None:
        return ("person", int(m.group(1)))
    n = parse_face_key(entry)
    return ("face", n) if n is not None else None


def ref_key(kind: str, number: int) -> str:
    """The written form of a reference: ``person-0007`` or ``face-12``."""
    return person_key(number) if kind == "person" else f"face-{number}"


def parse_born(value: object) -> str | None:
    """A birth date as kept (``YYYY[-MM[-DD]]``), or None when ``value`` is not one."""
    if isinstance(value, datetime.datetime):
        value = value.date()
    if isinstance(value, datetime.date):
        return value.isoformat()
    if not isinstance(value, str):
        return None
    m = _BORN.fullmatch(value.strip())
    if m is None:
        return None
    year, month, day = int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1)
    try:
        datetime.date(year, month, day)
    except ValueError:
        return None
    return value.strip()


def born_on(label: PersonLabel) -> str | None:
    """The earliest day the person can have been born, ``YYYY-MM-DD``, or None.

    ``born = "2019-03"`` means some day of March 2019, so a photo of February 2019
    cannot show her but one of 1 March can.
    """
    if label.born is None:
        return None
    parts = label.born.split("-")
    parts += ["01"] * (3 - len(parts))
    return "-".join(parts)


def normalize_name(name: str) -> str:
    """A name as compared for merging: NFC-normalised, surrounding whitespace removed."""
    return unicodedata.normalize("NFC", name).strip()


def _line_of(text: str, key: str, table: str | None = None) -> int | None:
    """Best-effort 1-based line where ``key`` is defined (``table.key`` or ``[table.key]``)."""
    k = rf"""(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')"""
    patterns = [rf"^\s*{k}\s*[=.]", rf"^\s*\[\[?\s*{k}\s*[\].]"]
    if table:
        patterns.append(rf"^\s*\[\s*{re.escape(table)}\s*\.\s*{k}\s*[\].]")
    # One search over the text (a file of many answers has hundreds of keys): spaces
    # within one line only, as a line-by-line match would have it.
    found = re.search("|".join(patterns).replace(r"\s*", r"[^\S\n]*"), text, re.MULTILINE)
    return text.count("\n", 0, found.start()) + 1 if found else None


def _error(text: str, message: str, key: str, table: str | None = None) -> LabelsError:
    line = _line_of(text, key, table)
    where = f"line {line}: " if line is not None else ""
    return LabelsError(f"{where}{message}", line)


def _parse_label(text: str, key: str, value: object) -> PersonLabel:
    """Validate one ``[people]`` value."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise _error(
            text, f"{key}: expected a name or a table {{ name = ..., hide = ..., exclude = "
            f"[...] }}, got {type(value).__name__}", key, "people",
        )
    unknown = sorted(str(k) for k in value if k not in _LABEL_OPTIONS)
    if unknown:
        raise _error(
            text, f"{key}: unknown option {unknown[0]!r} (known: {', '.join(_LABEL_OPTIONS)})",
            key, "people",
        )
    name = value.get("name")
    if name is not None:
        if not isinstance(name, str):
            raise _error(text, f"{key}.name: expected a string, got {name!r}", key, "people")
        name = normalize_name(name)
        if not name:
            raise _error(text, f"{key}.name: must not be empty", key, "people")
    hidden = value.get("hide", False)
    if not isinstance(hidden, bool):
        raise _error(text, f"{key}.hide: expected true or false, got {hidden!r}", key, "people")
    exclude = value.get("exclude", [])
    if isinstance(exclude, str):
        exclude = [exclude]
    if not isinstance(exclude, list) or not all(isinstance(e, str) and e for e in exclude):
        raise _error(
            text, f"{key}.exclude: expected a list of photo paths or face-N ids",
            key, "people",
        )
    entries = tuple(e if parse_face_key(e) is not None else os.path.normpath(e) for e in exclude)
    same_as = _refs(text, key, value, "same_as")
    different = _refs(text, key, value, "not")
    own = person_key(parse_person_key(key))
    if own in same_as or own in different:
        raise _error(text, f"{key}: a person cannot list itself in same_as or not", key,
                     "people")
    both = sorted(set(same_as) & set(different))
    if both:
        raise _error(text, f"{key}: {both[0]} is in both same_as and not", key, "people")
    born = value.get("born")
    if born is not None and (born := parse_born(born)) is None:
        raise _error(text, f"{key}.born: expected a date like \"2019-03\", got "
                     f"{value.get('born')!r}", key, "people")
    return PersonLabel(name=name, hidden=hidden, exclude=entries, same_as=same_as,
                       different=different, born=born)


def _refs(text: str, key: str, value: dict, option: str) -> tuple[str, ...]:
    """A ``same_as`` / ``not`` list: ``person-NNNN`` and ``face-N``, written canonically."""
    refs = value.get(option, [])
    if isinstance(refs, str):
        refs = [refs]
    parsed = [parse_ref(r) if isinstance(r, str) else None for r in refs] if isinstance(
        refs, list) else [None]
    if any(p is None for p in parsed):
        raise _error(text, f"{key}.{option}: expected a list of person-NNNN and face-N",
                     key, "people")
    out: list[str] = []
    for kind, number in parsed:  # type: ignore[misc]
        written = ref_key(kind, number)
        if written not in out:
            out.append(written)
    return tuple(out)


def parse_labels(text: str) -> Labels:
    """Parse the text of a labels file; raises :class:`LabelsError`."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        line = getattr(e, "lineno", None)
        if line is None:
            m = re.search(r"at line (\d+)", str(e))
            line = int(m.group(1)) if m else None
        raise LabelsError(f"syntax error: {e}", line) from e
    except RecursionError as e:
        raise LabelsError("syntax error: nested too deeply") from e
    problems: list[LabelsError] = [
        _error(text, f"unknown key {key!r} (only [people] is allowed)", key)
        for key in table
        if key != "people"
    ]
    people_table = table.get("people", {})
    if not isinstance(people_table, dict):
        problems.append(_error(text, "people: expected a table [people]", "people"))
        people_table = {}
    people: dict[int, PersonLabel] = {}
    lines: dict[int, int] = {}
    for key, value in people_table.items():
        try:
            person_id = parse_person_key(key)
        except LabelsError:
            problems.append(
                _error(text, f"{key!r} is not a person key like 'person-0007'", key, "people")
            )
            continue
        try:
            if person_id in people:
                raise _error(text, f"{key}: person {person_id} is listed twice", key, "people")
            people[person_id] = _parse_label(text, key, value)
        except LabelsError as e:
            problems.append(e)
            continue
        line = _line_of(text, key, "people")
        if line is not None:
            lines[person_id] = line
    good = Labels(MappingProxyType(people), MappingProxyType(lines))
    if problems:
        raise _all_of(problems, good)
    return good


def _all_of(problems: list[LabelsError], partial: Labels) -> LabelsError:
    """One error carrying every problem, so the user fixes the file in one go."""
    problems.sort(key=lambda e: (e.line is None, e.line or 0))
    texts = tuple(str(e) for e in problems)
    if len(texts) == 1:
        problems[0].partial = partial
        return problems[0]
    return LabelsError(
        f"{len(texts)} problems: " + "; ".join(texts), problems[0].line, texts, partial
    )


def read_labels_text(path: Path) -> str:
    """The text of ``labels.toml`` ('' if missing); LabelsError if unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_LABELS_BYTES + 1)
    except FileNotFoundError:
        return ""
    except OSError as e:
        raise LabelsError(f"cannot read {path}: {e.strerror or e}") from e
    if len(data) > MAX_LABELS_BYTES:
        raise LabelsError(f"{path} is larger than {MAX_LABELS_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise LabelsError(f"{path}: line {line}: not UTF-8 text", line) from e
    return text


def load_labels(path: Path) -> Labels:
    """Read ``labels.toml``; a missing file is empty labels, a broken one a LabelsError."""
    text = read_labels_text(path)
    try:
        return parse_labels(text)
    except LabelsError as e:
        raise LabelsError(f"{path}: {e}", e.line, e.problems, e.partial) from e


def load_last_good(state_dir: Path) -> Labels:
    """The labels last in force (see :func:`load_live_labels`); empty if none were kept."""
    try:
        return parse_labels(read_labels_text(state_dir / LAST_GOOD_NAME))
    except LabelsError:
        return Labels()


def load_live_labels(path: Path, state_dir: Path) -> tuple[Labels, LabelsError | None]:
    """The labels in force: the file's if it is good, else the last good ones, and the error.

    A good file is remembered in ``state_dir`` (when that folder exists: a reading command
    never creates it), so that every process, the service or a ``facecluster people``
    started later, falls back to the same labels while the file is broken.
    """
    try:
        text = read_labels_text(path)
        labels = parse_labels(text)
    except LabelsError as e:
        error = (
            e if str(path) in str(e) else LabelsError(f"{path}: {e}", e.line, e.problems, e.partial)
        )
        return load_last_good(state_dir), error
    if state_dir.is_dir():
        keep = state_dir / LAST_GOOD_NAME
        try:
            if read_labels_text(keep) != text:
                atomic_write(keep, text.encode("utf-8"))
        except (OSError, LabelsError):
            pass  # only a fallback; the labels themselves are fine
    return labels, None


def unknown_people(labels: Labels, known_ids: Iterable[int]) -> list[str]:
    """A message for each person in ``labels`` the store never had (a typo, an old id)."""
    known = set(known_ids)
    problems = []
    for person_id in sorted(set(labels.people) - known):
        line = labels.lines.get(person_id)
        where = f"line {line}: " if line is not None else ""
        problems.append(
            f"{where}{person_key(person_id)} is not a known person (a typo? "
            "see `facecluster people`)"
        )
    return problems


def excludes_face(label: PersonLabel, face_id: int) -> bool:
    """Whether the user said face ``face_id`` is not this person."""
    return any(parse_face_key(e) == face_id for e in label.exclude)


def photo_entry(photo_path: Path, watch_roots: Iterable[Path]) -> str:
    """How an exclude list names a photo: relative to its watched folder (``/``
    separated), or its absolute path when it lies in none."""
    absolute = Path(os.path.abspath(photo_path))
    for root in watch_roots:
        if absolute.is_relative_to(root):
            return absolute.relative_to(root).as_posix()
    return str(absolute)


def excludes_photo(label: PersonLabel, photo_path: Path, watch_roots: Iterable[Path]) -> bool:
    """Whether the user said ``photo_path`` does not show this person.

    An exclude entry matches the photo's absolute path or its path relative to any
    watched root (``/`` separated, as the user sees it in a file browser).
    """
    paths = [e for e in label.exclude if parse_face_key(e) is None]
    if not paths:
        return False
    photo = os.path.normpath(os.path.abspath(photo_path))
    candidates = {photo}
    for root in watch_roots:
        rel = os.path.relpath(photo, os.path.normpath(os.path.abspath(root)))
        if rel != os.curdir and not rel.startswith(os.pardir):
            candidates.add(Path(rel).as_posix())
    return any(e in candidates for e in paths)


def truncate_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` that fits ``max_bytes`` of UTF-8, whole characters."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", "ignore")


def _clean_char(ch: str) -> str:
    if ch in "/\\" or ch in _WINDOWS_FORBIDDEN:
        return "_"
    # Control, format (bidi overrides), lone surrogates and line/paragraph separators;
    # zero-width (non-)joiners stay, Persian and Indic names and emoji sequences need them.
    if ch not in "\u200c\u200d" and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
        return "_" if ch not in "\t\n\r" else " "
    return ch


def _is_reserved(name: str) -> bool:
    """Windows refuses ``CON``, ``com1.txt``, ``NUL .jpg`` and the like as names."""
    return name.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_RESERVED


def looks_like_person_key(name: str) -> bool:
    """Whether ``name``, as a folder, is an unnamed person's (``person-0004.`` is)."""
    return _PERSON_KEY.fullmatch(safe_folder_name(name).casefold()) is not None


def safe_folder_name(name: str, max_bytes: int = MAX_FOLDER_BYTES) -> str:
    """A folder name for ``name`` that is safe on Linux, macOS and SMB/Windows shares.

    Separators, Windows-forbidden characters and control characters become ``_``;
    leading dots (hidden) and trailing dots and spaces (dropped by Windows) are removed;
    reserved device names get a ``_`` appended; the result is at most ``max_bytes``
    bytes of UTF-8. Letters of any script are kept. Never empty, ``.`` or ``..``.
    """
    text = "".join(_clean_char(ch) for ch in unicodedata.normalize("NFC", name))
    text = " ".join(text.split())  # runs of whitespace (incl. tabs) become one space
    text = text.lstrip(". ").rstrip(". ")
    text = truncate_utf8(text, max_bytes).rstrip(". ")
    if not text:
        return "_"
    if _is_reserved(text):
        head, dot, tail = text.partition(".")
        text = truncate_utf8(f"{head.rstrip(' ')}_{dot}{tail}", max_bytes).rstrip(". ")
    return text
