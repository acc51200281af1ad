"""The labels.toml editor: layout kept byte for byte, validation, conflicts, undo."""

from __future__ import annotations

import difflib
import hashlib
import os
from pathlib import Path

import pytest

import daemon.people.naming as naming
from daemon.people.labels import PersonLabel, load_labels
from daemon.people.naming import (
    LabelsConflict,
    NamingError,
    exclude,
    hide_person,
    labels_digest,
    name_people,
    undo,
)

USER_FILE = """\
# Our family. Edited by hand on the NAS; keep these notes!
#   - Grandma appears twice (two clusters), hence the merge.

[people]
person-0001 = "Grandma"            # a name
person-4 = 'Grandma'               # same name again: merged into one album
person-0009 = { name = "Tom", exclude = ["2019/IMG_0042.jpg", "face-1234"] }  # Tom!
person-0012 = { hide = true }      # the photographer's thumb

# People still to sort out:
#   person-0020 might be uncle Bob
"""


@pytest.fixture
def labels_file(tmp_path: Path) -> Path:
    f = tmp_path / "labels.toml"
    f.write_text(USER_FILE, encoding="utf-8")
    return f


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """Lines removed from ``before`` and lines added in ``after``, by a line diff."""
    removed, added = [], []
    for line in difflib.ndiff(before.splitlines(True), after.splitlines(True)):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


def test_rename_changes_one_line_and_keeps_its_comment(labels_file: Path) -> None:
    edit = name_people(labels_file, [9], "Thomas")
    after = labels_file.read_text(encoding="utf-8")
    assert edit.before == USER_FILE and edit.after == after
    removed, added = changed_lines(USER_FILE, after)
    assert removed == [
        'person-0009 = { name = "Tom", exclude = ["2019/IMG_0042.jpg", "face-1234"] }  # Tom!\n'
    ]
    assert len(added) == 1 and "# Tom!" in added[0] and '"Thomas"' in added[0]
    assert load_labels(labels_file).people[9] == PersonLabel(
        "Thomas", False, ("2019/IMG_0042.jpg", "face-1234")
    )


def test_naming_a_new_person_adds_one_line_after_the_last_person(labels_file: Path) -> None:
    name_people(labels_file, [20], "Uncle Bob")
    after = labels_file.read_text(encoding="utf-8")
    removed, added = changed_lines(USER_FILE, after)
    assert removed == [] and added == ['person-0020 = "Uncle Bob"\n']
    # Inserted with the people, not below the closing comment block.
    assert after.index("person-0020") < after.index("# People still to sort out")
    assert load_labels(labels_file).people[20].name == "Uncle Bob"


def test_plain_string_rename_keeps_the_key_as_written(labels_file: Path) -> None:
    name_people(labels_file, [4], "Nana")
    removed, added = changed_lines(USER_FILE, labels_file.read_text(encoding="utf-8"))
    assert len(removed) == 1 and removed[0].startswith("person-4 ")
    assert added == ['person-4 = "Nana"               # same name again: merged into one album\n']


def test_merge_writes_the_same_name_on_each(labels_file: Path) -> None:
    name_people(labels_file, [1, 4, 30, 30], "  Oma  ")
    people = load_labels(labels_file).people
    assert [people[i].name for i in (1, 4, 30)] == ["Oma", "Oma", "Oma"]
    assert people[9].name == "Tom" and people[12].hidden


def test_unicode_and_quotes_round_trip(labels_file: Path) -> None:
    name = 'Zoë "Zo" O\'Neil \\ 山田'
    name_people(labels_file, [5], name)
    assert load_labels(labels_file).people[5].name == name


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "Tom\nperson-0002 = 'x'", "tab\there", "person-0003", "PERSON-12",
     "person-0004.", ".person-0004 .", 7, None],
)
def test_invalid_name_refused_and_file_untouched(labels_file: Path, bad: object) -> None:
    with pytest.raises(NamingError):
        name_people(labels_file, [1], bad)  # type: ignore[arg-type]
    assert labels_file.read_text(encoding="utf-8") == USER_FILE


@pytest.mark.parametrize("bad", [[], [-1], [True], ["3"], [10**12], "12"])
def test_invalid_person_id_refused(labels_file: Path, bad: object) -> None:
    with pytest.raises(NamingError):
        name_people(labels_file, bad, "X")  # type: ignore[arg-type]
    with pytest.raises(NamingError):
        hide_person(labels_file, bad[0] if bad else None)  # type: ignore[arg-type,index]
    assert labels_file.read_text(encoding="utf-8") == USER_FILE


def test_hide_and_show_again(labels_file: Path) -> None:
    hide_person(labels_file, 1)
    assert load_labels(labels_file).people[1] == PersonLabel("Grandma", hidden=True)
    removed, added = changed_lines(USER_FILE, labels_file.read_text(encoding="utf-8"))
    assert len(removed) == len(added) == 1 and "# a name" in added[0]
    hide_person(labels_file, 1, hidden=False)
    # Back to the plain form, so the file reads as the user wrote it.
    assert labels_file.read_text(encoding="utf-8") == USER_FILE.replace(
        'person-0001 = "Grandma"            # a name', 'person-0001 = "Grandma"            # a name'
    )
    assert load_labels(labels_file).people[1] == PersonLabel("Grandma")


def test_show_a_person_who_only_was_hidden_removes_the_line(labels_file: Path) -> None:
    hide_person(labels_file, 12, hidden=False)
    assert 12 not in load_labels(labels_file).people
    removed, added = changed_lines(USER_FILE, labels_file.read_text(encoding="utf-8"))
    assert removed == ["person-0012 = { hide = true }      # the photographer's thumb\n"]
    assert added == []


def test_showing_someone_never_hidden_writes_nothing(labels_file: Path) -> None:
    before = labels_file.stat().st_mtime_ns
    edit = hide_person(labels_file, 1, hidden=False)
    assert not edit.changed and labels_file.stat().st_mtime_ns == before


def test_exclude_faces_and_photos(labels_file: Path, tmp_path: Path) -> None:
    photo = str(tmp_path / "photos" / "a.jpg")
    exclude(labels_file, 9, ["face-77", "2020/./b.jpg", "face-1234"])
    exclude(labels_file, 1, [photo])
    exclude(labels_file, 9, ["face-77"])  # already listed: nothing to add
    people = load_labels(labels_file).people
    assert people[9].exclude == ("2019/IMG_0042.jpg", "face-1234", "face-77", "2020/b.jpg")
    assert people[9].name == "Tom"
    assert people[1] == PersonLabel("Grandma", exclude=(photo,))
    removed, added = changed_lines(USER_FILE, labels_file.read_text(encoding="utf-8"))
    assert [r.split(" ")[0] for r in removed] == ["person-0001", "person-0009"]
    assert "# Tom!" in added[1] and "# a name" in added[0]


@pytest.mark.parametrize("bad", [[], ["../outside.jpg"], [""], ["face-12a"], ["a\nb"], "x.jpg"])
def test_bad_exclude_entry_refused(labels_file: Path, bad: object) -> None:
    with pytest.raises(NamingError):
        exclude(labels_file, 9, bad)  # type: ignore[arg-type]
    assert labels_file.read_text(encoding="utf-8") == USER_FILE


def test_expected_digest_detects_an_edit_made_meanwhile(labels_file: Path) -> None:
    digest = labels_digest(labels_file)
    assert digest == hashlib.sha256(USER_FILE.encode()).hexdigest()
    edited = USER_FILE + 'person-0033 = "Ann"\n'.replace("person", "# person")
    labels_file.write_text(edited, encoding="utf-8")
    with pytest.raises(LabelsConflict, match="changed since"):
        name_people(labels_file, [1], "Oma", expected_digest=digest)
    assert labels_file.read_text(encoding="utf-8") == edited


def test_change_between_read_and_replace_is_not_overwritten(
    labels_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A text editor saving while the edit is being made wins; the edit is refused."""
    real_parse = naming.parse_labels
    calls = []

    def parse_then_someone_saves(text: str):  # type: ignore[no-untyped-def]
        calls.append(text)
        if len(calls) == 2:  # validating the result: the file is saved by someone else
            labels_file.write_text(USER_FILE + "# saved by vim\n", encoding="utf-8")
        return real_parse(text)

    monkeypatch.setattr(naming, "parse_labels", parse_then_someone_saves)
    with pytest.raises(LabelsConflict):
        name_people(labels_file, [1], "Oma")
    assert labels_file.read_text(encoding="utf-8") == USER_FILE + "# saved by vim\n"
    left = {p.name for p in labels_file.parent.iterdir()} - {"labels.toml", ".labels.toml.lock"}
    assert not left, "temporary file left behind"


def test_undo_restores_and_refuses_after_a_later_change(labels_file: Path) -> None:
    edit = name_people(labels_file, [1, 4], "Oma")
    assert labels_digest(labels_file) == edit.digest
    back = undo(labels_file, edit)
    assert labels_file.read_text(encoding="utf-8") == USER_FILE
    assert back.after == USER_FILE and back.before == edit.after
    second = hide_person(labels_file, 9)
    labels_file.write_text(second.after + "# more notes\n", encoding="utf-8")
    with pytest.raises(LabelsConflict):
        undo(labels_file, second)
    assert labels_file.read_text(encoding="utf-8").endswith("# more notes\n")


def test_missing_file_is_created_and_undo_empties_it(tmp_path: Path) -> None:
    f = tmp_path / "labels.toml"
    assert labels_digest(f) == hashlib.sha256(b"").hexdigest()
    edit = name_people(f, [7], "Ann")
    assert edit.before == "" and load_labels(f).people[7].name == "Ann"
    undo(f, edit)
    assert load_labels(f).people == {}


def test_broken_file_is_refused_untouched(labels_file: Path) -> None:
    broken = USER_FILE + "person-0040 = \n"
    labels_file.write_text(broken, encoding="utf-8")
    with pytest.raises(NamingError, match="fix it by hand"):
        name_people(labels_file, [1], "Oma")
    labels_file.write_text("[people]\nperson-1 = { colour = 'red' }\n", encoding="utf-8")
    with pytest.raises(NamingError, match="colour"):
        hide_person(labels_file, 1)


def test_mode_kept_and_symlink_followed(tmp_path: Path, labels_file: Path) -> None:
    os.chmod(labels_file, 0o600)
    link = tmp_path / "link.toml"
    link.symlink_to(labels_file)
    name_people(link, [2], "Ann")
    assert link.is_symlink()
    assert load_labels(labels_file).people[2].name == "Ann"
    assert labels_file.stat().st_mode & 0o777 == 0o600


def test_table_sections_edited_key_by_key(tmp_path: Path) -> None:
    text = (
        "[people]\n"
        'person-0001 = "A"\n'
        "\n"
        "[people.person-0009]   # Tom's section\n"
        'name = "Tom"          # his name\n'
        'exclude = ["x.jpg"]\n'
    )
    f = tmp_path / "labels.toml"
    f.write_text(text, encoding="utf-8")
    hide_person(f, 9)
    name_people(f, [9], "Thomas")
    out = f.read_text(encoding="utf-8")
    assert "[people.person-0009]   # Tom's section\n" in out
    assert 'name = "Thomas"          # his name\n' in out
    assert load_labels(f).people[9] == PersonLabel("Thomas", True, ("x.jpg",))


def test_crlf_file_keeps_its_line_endings(tmp_path: Path) -> None:
    f = tmp_path / "labels.toml"
    f.write_bytes(USER_FILE.replace("\n", "\r\n").encode())
    name_people(f, [1], "Oma")
    data = f.read_bytes()
    assert data.count(b"\r\n") == data.count(b"\n")
    assert load_labels(f).people[1].name == "Oma"


@pytest.mark.parametrize(
    "text",
    [
        '[people]\nperson-0009.name = "Tom"\nperson-0009.hide = false\n',
        'people.person-0001 = "A"\npeople.person-0009 = "Tom"\n',
    ],
)
def test_unusual_layouts_are_refused_not_mangled(tmp_path: Path, text: str) -> None:
    """Dotted keys are valid labels but tomlkit cannot edit them in place: refuse cleanly."""
    f = tmp_path / "labels.toml"
    f.write_text(text, encoding="utf-8")
    for edit in (
        lambda: name_people(f, [9], "Tim"),
        lambda: exclude(f, 9, ["face-1"]),
        lambda: hide_person(f, 9),
    ):
        try:
            edit()
        except NamingError as e:
            assert "by hand" in str(e)
            assert f.read_text(encoding="utf-8") == text
        else:  # an edit that went through must mean exactly what was asked
            people = load_labels(f).people
            assert people[9].name in ("Tom", "Tim")
        text = f.read_text(encoding="utf-8")
