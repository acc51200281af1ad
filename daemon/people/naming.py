"""Editing ``labels.toml`` on the user's behalf: name, merge, hide and exclude.

The command line (``facecluster name`` ...) and the web page change the user's labels
file through these functions, so that nobody has to hand-edit TOML for the common
things. The file stays the user's: comments, key order, quoting and blank lines are
kept byte for byte outside the lines an edit touches (tomlkit round-trips them), the
result must parse with :func:`daemon.people.labels.parse_labels` and mean exactly the intended
labels (else nothing is written), and the file is replaced atomically with its mode kept.

Two editors (a terminal and a browser, or a text editor) can race. Every edit holds one
lock while it reads, changes and replaces the file (``flock`` on ``.labels.toml.lock``
beside it: the file itself is replaced by a rename, so it cannot carry the lock), so two
facecluster writers never interleave. Under the lock the edit reads the file, checks
the caller's ``expected_digest`` (the :func:`labels_digest` it showed the user), and
re-reads the file just before replacing it (a text editor takes no lock): if it changed,
:class:`LabelsConflict` is raised and nothing is written. The file keeps its mode, owner
and group. The running service picks the new file up as it does a hand edit; the
service itself never writes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import tomlkit
from tomlkit.items import Comment, InlineTable, Item, Table, Whitespace

from daemon.fsutil import LockTimeout, atomic_writer, file_lock, remove_stale_temps
from daemon.people.labels import (
    MAX_LABELS_BYTES,
    MAX_PERSON_ID,
    UNLABELLED,
    LabelsError,
    PersonLabel,
    looks_like_person_key,
    normalize_name,
    parse_born,
    parse_face_key,
    parse_labels,
    parse_person_key,
    parse_ref,
    person_key,
    ref_key,
)

STALE_TEMP_SECONDS = 600.0
"""A temporary file of ours beside labels.toml older than this is a killed edit's."""
LOCK_WAIT_SECONDS = 10.0

class LabelsConflict(Exception):
    """``labels.toml`` changed since the caller read it; nothing was written."""


class NamingError(ValueError):
    """The edit is impossible (bad name, person id or entry); the message is for the user."""


@dataclass(frozen=True)
class LabelsEdit:
    """One change to the labels file: its text before and after."""

    path: Path
    before: str
    """The file's text before the edit ('' if it did not exist)."""
    after: str
    """The text written."""

    @property
    def digest(self) -> str:
        """:func:`labels_digest` of the file right after this edit."""
        return _digest(self.after.encode("utf-8"))

    @property
    def changed(self) -> bool:
        """False when the file already said what the edit asked for (nothing written)."""
        return self.before != self.after


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def labels_digest(path: Path) -> str:
    """SHA-256 (hex) of the file's current bytes; a missing file counts as empty."""
    return _digest(_read_bytes(Path(os.path.realpath(path))))


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_LABELS_BYTES + 1)
    except FileNotFoundError:
        return b""
    if len(data) > MAX_LABELS_BYTES:
        raise NamingError(f"{path} is larger than {MAX_LABELS_BYTES // (1024 * 1024)} MiB")
    return data


def _conflict(path: Path) -> LabelsConflict:
    return LabelsConflict(
        f"{path} changed since it was read (edited elsewhere?); nothing was written. "
        "Look at it again and retry."
    )


def _check_person_id(person_id: object) -> int:
    if isinstance(person_id, bool) or not isinstance(person_id, int):
        raise NamingError(f"a person id is a whole number, got {person_id!r}")
    if not 0 <= person_id <= MAX_PERSON_ID:
        raise NamingError(f"no person {person_id}: ids run from 0 to {MAX_PERSON_ID}")
    return person_id


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") for ch in text)


def check_name(name: object) -> str:
    """``name`` as it will be written (normalised); :class:`NamingError` if unusable."""
    if not isinstance(name, str):
        raise NamingError(f"a name is text, got {name!r}")
    clean = normalize_name(name)
    if not clean:
        raise NamingError("a name must not be empty")
    if _has_control(clean):
        raise NamingError(f"a name must be one line of text without control characters: {name!r}")
    if not looks_like_person_key(clean):
        return clean
    # The album of an unnamed person is the folder person-NNNN: a name of that form
    # (or one that becomes it as a folder name: "person-0004.") would take another
    # person's folder.
    raise NamingError(f"{clean!r} looks like a person id; choose a real name")


def check_entry(entry: object) -> str:
    """An exclude entry as it will be written: ``face-N`` or a photo path."""
    if not isinstance(entry, str) or not entry.strip():
        raise NamingError(f"an exclude entry is a photo path or face-N, got {entry!r}")
    if _has_control(entry):
        raise NamingError(f"an exclude entry must not contain control characters: {entry!r}")
    if parse_face_key(entry) is not None:
        return entry
    if entry.startswith("face-"):
        raise NamingError(f"{entry!r}: a face id is written face-1234 (digits only)")
    norm = os.path.normpath(entry)
    if not os.path.isabs(norm) and (norm == os.curdir or norm.split(os.sep)[0] == os.pardir):
        raise NamingError(
            f"{entry!r} is not a photo inside a watched folder (use a path relative to a "
            "watched folder, or an absolute one)"
        )
    return norm


# -- the edit itself ------------------------------------------------------------------

_Change = Callable[[tomlkit.TOMLDocument, dict[int, PersonLabel]], None]


def lock_path(target: Path) -> Path:
    """The file every writer of ``target`` locks (beside it, never replaced)."""
    return target.with_name(f".{target.name}.lock")


@contextmanager
def _editing(target: Path, shown: Path) -> Iterator[None]:
    """Hold the one lock of ``target``'s writers; clear what killed edits left."""
    try:
        with file_lock(lock_path(target), wait=LOCK_WAIT_SECONDS):
            remove_stale_temps(target.parent, older_than=STALE_TEMP_SECONDS)
            yield
    except LockTimeout as e:
        raise LabelsConflict(
            f"{shown} is being edited by another facecluster process; nothing was written. "
            "Retry in a moment."
        ) from e


def clear_leftovers(path: Path) -> int:
    """Remove temporary files killed edits left beside ``path`` (the service's start)."""
    target = Path(os.path.realpath(path))
    if not target.parent.is_dir():
        return 0
    with file_lock(lock_path(target), wait=LOCK_WAIT_SECONDS):
        return len(remove_stale_temps(target.parent, older_than=STALE_TEMP_SECONDS))


def _apply(path: Path, change: _Change, expected_digest: str | None) -> LabelsEdit:
    """Read, change, validate, re-check and atomically replace the labels file."""
    target = Path(os.path.realpath(path))  # a symlinked labels.toml stays a symlink
    with _editing(target, path):
        return _apply_locked(path, target, change, expected_digest)


def _apply_locked(
    path: Path, target: Path, change: _Change, expected_digest: str | None
) -> LabelsEdit:
    data = _read_bytes(target)
    if expected_digest is not None and _digest(data) != expected_digest:
        raise _conflict(path)
    try:
        text = data.decode("utf-8")
        labels = dict(parse_labels(text).people)
        doc = tomlkit.parse(text)
    except (UnicodeDecodeError, LabelsError, tomlkit.exceptions.TOMLKitError) as e:
        raise NamingError(f"{path} has a problem; fix it by hand first: {e}") from e
    try:
        change(doc, labels)
        after = doc.as_string()
    except NamingError:
        raise
    except Exception as e:  # noqa: BLE001 - tomlkit meets an unusual layout (dotted keys...)
        raise NamingError(f"could not edit {path} safely ({e}); please edit it by hand") from e
    try:
        written = dict(parse_labels(after).people)
    except LabelsError as e:  # pragma: no cover - would be a tomlkit bug
        raise NamingError(f"the edit would break {path} ({e}); nothing was written") from e
    if _meaningful(written) != _meaningful(labels):
        # The layout was too unusual to edit safely (e.g. dotted keys): never write a
        # file that means something other than what was asked.
        raise NamingError(f"could not edit {path} safely; please edit it by hand")
    if after == text:
        return LabelsEdit(path, text, after)
    _replace(target, data, after.encode("utf-8"), path)
    return LabelsEdit(path, text, after)


def _meaningful(people: Mapping[int, PersonLabel]) -> dict[int, PersonLabel]:
    return {k: v for k, v in people.items() if v != UNLABELLED}


def _replace(target: Path, expected: bytes, data: bytes, shown: Path) -> None:
    """Write ``data`` over ``target`` unless it no longer holds ``expected``.

    Called with the writers' lock held; the last look catches a text editor's save.
    """
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    with atomic_writer(target) as f:
        f.write(data)
        if old is not None:
            _keep_owner(f.fileno(), old)
            os.fchmod(f.fileno(), stat.S_IMODE(old.st_mode))
        f.flush()
        # Last look before the rename: someone saving in between must not be overwritten.
        if _read_bytes(target) != expected:
            raise _conflict(shown)


def _keep_owner(fd: int, old: os.stat_result) -> None:
    """Give the new file the old one's owner and group (root editing a user's file)."""
    if (old.st_uid, old.st_gid) == (os.geteuid(), os.getegid()):
        return
    try:
        os.fchown(fd, old.st_uid, old.st_gid)
    except PermissionError:
        # Not root: the group alone may still be ours to keep.
        with contextlib.suppress(OSError):
            os.fchown(fd, -1, old.st_gid)


def _people_table(doc: tomlkit.TOMLDocument) -> Table:
    if "people" not in doc:
        doc.add("people", tomlkit.table())
    table = doc["people"]
    if not isinstance(table, Table):  # e.g. people.person-0001 = "A" at the top level
        raise NamingError(
            "labels.toml writes [people] in a form (dotted keys) this editor cannot change "
            "safely; please edit it by hand"
        )
    return table


def _find(table: Table, person_id: int) -> str | None:
    """The key (as written: ``person-7``, ``person-0007``) of ``person_id``, if any."""
    for key in table:
        try:
            if parse_person_key(key) == person_id:
                return key
        except LabelsError:
            continue
    return None


def _options(item: Item) -> dict[str, object]:
    if isinstance(item, (InlineTable, Table)):
        return {str(k): v for k, v in item.items()}
    return {"name": item}


def _set_options(table: Table, person_id: int, changes: Mapping[str, object | None]) -> None:
    """Set (or, for None, remove) options of one person's entry, adding it if needed.

    A plain ``person-0007 = "Name"`` stays a plain string while a name is all it says;
    an inline table is rewritten on its own line only; a ``[people.person-0007]`` table
    is edited key by key.
    """
    key = _find(table, person_id)
    item = table[key] if key is not None else None
    if isinstance(item, Table) and not isinstance(item, InlineTable):
        for option, value in changes.items():
            if value is None:
                if option in item:
                    del item[option]
            else:
                item[option] = value
        return
    trivia = _trivia(item)  # before building: adding items to a new table clears theirs
    options = _options(item) if item is not None else {}
    for option, value in changes.items():
        if value is None:
            options.pop(option, None)
        else:
            options[option] = value
    value = _as_value(options, item)
    if key is None:
        if value is not None:
            _append(table, person_key(person_id), value)
    elif value is None:
        del table[key]
    elif value is not item:
        table[key] = _with_trivia(value, trivia)


_TRIVIA = ("indent", "comment_ws", "comment", "trail")


def _trivia(item: Item | None) -> dict[str, str]:
    return {part: getattr(item.trivia, part) for part in _TRIVIA} if item is not None else {}


def _with_trivia(value: object, trivia: Mapping[str, str]) -> Item:
    """``value`` as an item carrying the old line's comment and spacing, so they survive."""
    new = tomlkit.item(value)
    for part, text in trivia.items():
        setattr(new.trivia, part, text)
    return new


def _as_value(options: dict[str, object], old: Item | None) -> object | None:
    if not options:
        return None
    if list(options) == ["name"]:
        return options["name"]
    if isinstance(old, InlineTable) and list(old.keys()) == list(options):
        # Same keys: update in place so the user's spacing inside the braces survives.
        for option, value in options.items():
            if old[option] is not value:
                old[option] = value
        return old
    inline = tomlkit.inline_table()
    for option, value in options.items():
        inline.add(option, value)
    return inline


def _append(table: Table, key: str, value: object) -> None:
    """Add ``key`` right after the last person line, above a closing comment block.

    tomlkit keeps comments and blank lines that follow the last key as items of the
    table, so a plain ``add`` would land below them; and it offers no public insert
    (0.13 had a private ``_insert_after``, 0.15 dropped it). The trailing trivia is lifted
    off the table's item list, the key added, and the trivia put back after it: only
    ``body``, ``add`` and ``append``, which every tomlkit since 0.7 has.
    """
    body = table.value.body
    tail: list[Item] = []
    while body and body[-1][0] is None and isinstance(body[-1][1], (Comment, Whitespace)):
        tail.append(body.pop()[1])
    table.add(key, value)
    for item in reversed(tail):
        table.value.append(None, item)


def _dedupe_ids(person_ids: Sequence[int]) -> list[int]:
    ids: list[int] = []
    for person_id in person_ids:
        checked = _check_person_id(person_id)
        if checked not in ids:
            ids.append(checked)
    return ids


# -- public edits -----------------------------------------------------------------------


def name_people(
    path: Path, person_ids: Sequence[int], name: str, *, expected_digest: str | None = None
) -> LabelsEdit:
    """Give ``name`` to each person: one id names or renames, several merge them.

    People with the same name share one album (the labels.toml rule), so merging is
    writing the same name on each.
    """
    if isinstance(person_ids, (str, bytes)) or not person_ids:
        raise NamingError("name at least one person")
    ids = _dedupe_ids(person_ids)
    clean = check_name(name)

    def change(doc: tomlkit.TOMLDocument, labels: dict[int, PersonLabel]) -> None:
        table = _people_table(doc)
        for person_id in ids:
            _set_options(table, person_id, {"name": clean})
            labels[person_id] = replace(labels.get(person_id, UNLABELLED), name=clean)

    return _apply(Path(path), change, expected_digest)


def hide_person(
    path: Path, person_id: int, hidden: bool = True, *, expected_digest: str | None = None
) -> LabelsEdit:
    """Hide the person (no album), or with ``hidden=False`` show them again."""
    checked = _check_person_id(person_id)

    def change(doc: tomlkit.TOMLDocument, labels: dict[int, PersonLabel]) -> None:
        table = _people_table(doc) if hidden or "people" in doc else None
        if table is None:
            return
        _set_options(table, checked, {"hide": True if hidden else None})
        labels[checked] = replace(labels.get(checked, UNLABELLED), hidden=bool(hidden))

    return _apply(Path(path), change, expected_digest)


def exclude(
    path: Path, person_id: int, entries: Sequence[str], *, expected_digest: str | None = None
) -> LabelsEdit:
    """Say "not this person" for photos (paths) or single faces (``face-N``).

    Entries already listed are not repeated; the rest are appended in the given order.
    """
    checked = _check_person_id(person_id)
    if isinstance(entries, (str, bytes)) or not entries:
        raise NamingError("give at least one photo or face-N to exclude")
    clean = [check_entry(e) for e in entries]

    def change(doc: tomlkit.TOMLDocument, labels: dict[int, PersonLabel]) -> None:
        table = _people_table(doc)
        old = labels.get(checked, UNLABELLED)
        listed = list(old.exclude)
        for entry in clean:
            if entry not in listed:
                listed.append(entry)
        if listed == list(old.exclude):
            return
        key = _find(table, checked)
        written = _written_excludes(table[key]) if key is not None else []
        new = [e for e in listed if e not in old.exclude]
        array = tomlkit.array()
        array.extend(written + new)
        _set_options(table, checked, {"exclude": array})
        labels[checked] = replace(old, exclude=tuple(listed))

    return _apply(Path(path), change, expected_digest)


def _written_excludes(item: Item) -> list[str]:
    """The exclude entries exactly as the user wrote them (before normalisation)."""
    value = _options(item).get("exclude", [])
    if isinstance(value, str):
        return [str(value)]
    return [str(v) for v in value]  # type: ignore[union-attr]


def check_ref(ref: object) -> str:
    """A ``same_as`` / ``not`` reference as written: ``person-0007`` or ``face-N``."""
    parsed = parse_ref(ref) if isinstance(ref, str) else None
    if parsed is None:
        raise NamingError(f"expected a person-NNNN or face-N, got {ref!r}")
    return ref_key(*parsed)


def answer(
    path: Path, person_id: int, refs: str | Sequence[str], same: bool, *,
    expected_digest: str | None = None,
) -> LabelsEdit:
    """Record an answer: ``refs`` (people and faces) are (``same``) or are not this person.

    The references go into the person's ``same_as`` or ``not`` list; one the other list
    held (the user changed their mind) leaves that one: the later answer wins.
    """
    checked = _check_person_id(person_id)
    wanted = [check_ref(r) for r in ([refs] if isinstance(refs, str) else refs)]
    if not wanted:
        raise NamingError("give at least one person-NNNN or face-N")
    if person_key(checked) in wanted:
        raise NamingError(f"{person_key(checked)} is itself; ask about two different people")
    add, drop = ("same_as", "not") if same else ("not", "same_as")
    add_field, drop_field = ("same_as", "different") if same else ("different", "same_as")

    def change(doc: tomlkit.TOMLDocument, labels: dict[int, PersonLabel]) -> None:
        table = _people_table(doc)
        old = labels.get(checked, UNLABELLED)
        had, other = list(getattr(old, add_field)), list(getattr(old, drop_field))
        new = [r for r in dict.fromkeys(wanted) if r not in had]
        kept = [r for r in other if r not in wanted]
        if not new and len(kept) == len(other):
            return
        key = _find(table, checked)
        item = table[key] if key is not None else None
        changes: dict[str, object | None] = {}
        if new:
            added = _ref_array(item, add, lambda r: True)
            added.extend(new)
            changes[add] = added
        if len(kept) != len(other):
            rest = _ref_array(item, drop, lambda r: check_ref(r) not in wanted)
            changes[drop] = rest if len(rest) else None
        _set_options(table, checked, changes)
        labels[checked] = replace(old, **{add_field: (*had, *new), drop_field: tuple(kept)})

    return _apply(Path(path), change, expected_digest)


def _ref_array(item: Item | None, option: str, keep: Callable[[str], bool]) -> tomlkit.items.Array:
    """The option's references as the user wrote them (those ``keep`` accepts), as a
    fresh array to write back."""
    value = _options(item).get(option, []) if item is not None else []
    written = [str(value)] if isinstance(value, str) else [str(v) for v in value]  # type: ignore[union-attr]
    array = tomlkit.array()
    array.extend(r for r in written if keep(r))
    return array


def set_born(
    path: Path, person_id: int, born: str | None, *, expected_digest: str | None = None
) -> LabelsEdit:
    """Set the person's birth date (``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``), or remove it."""
    checked = _check_person_id(person_id)
    clean = None if born is None else parse_born(born)
    if born is not None and clean is None:
        raise NamingError(f"{born!r} is not a date like 2019, 2019-03 or 2019-03-14")

    def change(doc: tomlkit.TOMLDocument, labels: dict[int, PersonLabel]) -> None:
        table = _people_table(doc)
        _set_options(table, checked, {"born": clean})
        labels[checked] = replace(labels.get(checked, UNLABELLED), born=clean)

    return _apply(Path(path), change, expected_digest)


def undo(path: Path, edit: LabelsEdit) -> LabelsEdit:
    """Put back ``edit.before``, if the file still holds exactly what ``edit`` wrote."""
    target = Path(os.path.realpath(path))
    with _editing(target, Path(path)):
        data = _read_bytes(target)
        if data != edit.after.encode("utf-8"):
            raise LabelsConflict(
                f"{path} changed after that edit (edited elsewhere?); it was not undone."
            )
        if edit.before != edit.after:
            _replace(target, data, edit.before.encode("utf-8"), Path(path))
    return LabelsEdit(Path(path), edit.after, edit.before)
