"""labels.toml parsing, person keys, excludes and safe folder names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.people.labels import (
    Labels,
    LabelsError,
    PersonLabel,
    excludes_face,
    excludes_photo,
    load_labels,
    parse_labels,
    parse_person_key,
    person_key,
    safe_folder_name,
)

EXAMPLE = """\
[people]
person-0001 = "Grandma"            # a name
person-0004 = "Grandma"            # same name again: merged into one album
person-0009 = { name = "Tom", exclude = ["2019/IMG_0042.jpg", "face-1234"] }
person-0012 = { hide = true }      # no album for this person
"""


def test_person_key_round_trip() -> None:
    assert person_key(7) == "person-0007"
    assert person_key(12345) == "person-12345"
    assert parse_person_key("person-0007") == 7
    assert parse_person_key(person_key(98765)) == 98765
    for bad in ("person-", "person-x1", "Person-0001", "person-٣", "person-1 ", "p-1"):
        with pytest.raises(LabelsError):
            parse_person_key(bad)


def test_documented_example_parses(tmp_path: Path) -> None:
    f = tmp_path / "labels.toml"
    f.write_text(EXAMPLE, encoding="utf-8")
    labels = load_labels(f)
    assert labels.people[1] == PersonLabel(name="Grandma")
    assert labels.people[4].name == "Grandma"
    assert labels.people[9] == PersonLabel("Tom", False, ("2019/IMG_0042.jpg", "face-1234"))
    assert labels.people[12].hidden and labels.people[12].name is None
    assert labels.label(99) == PersonLabel()


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert load_labels(tmp_path / "nope.toml") == Labels()


def test_names_are_normalised() -> None:
    labels = parse_labels('[people]\nperson-1 = "  Zoe\\u0308 "\n')
    assert labels.people[1].name == "Zoë"  # NFC, trimmed


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("[people]\nperson-0001 = \n", 2, "syntax"),
        ("[people]\nperson-0001 = 'a'\n\nbob = 'x'\n", 4, "bob"),
        ("[people]\nperson-0001 = 3\n", 2, "person-0001"),
        ("[people]\nperson-0002 = { name = 'a', colour = 1 }\n", 2, "colour"),
        ("[people]\nperson-0002 = { hide = 'yes' }\n", 2, "hide"),
        ("[people]\nperson-0002 = { exclude = [1] }\n", 2, "exclude"),
        ("[people]\nperson-0002 = ''\n", 2, "empty"),
        ("names = 1\n[people]\n", 1, "names"),
        ("[people]\nperson-1 = 'a'\nperson-0001 = 'b'\n", 3, "twice"),
        ("\n\n[people.person-0003]\nname = 5\n", 3, "person-0003.name"),
    ],
)
def test_errors_name_key_and_line(text: str, line: int, words: str) -> None:
    with pytest.raises(LabelsError) as info:
        parse_labels(text)
    assert info.value.line == line
    assert words in str(info.value)
    assert f"line {line}" in str(info.value)


def test_file_errors_carry_path_and_line(tmp_path: Path) -> None:
    f = tmp_path / "labels.toml"
    f.write_bytes(b"[people]\nperson-1 = 'ok'\nperson-2 = '\xff'\n")
    with pytest.raises(LabelsError) as info:
        load_labels(f)
    assert info.value.line == 3 and str(f) in str(info.value)
    with pytest.raises(LabelsError):
        load_labels(tmp_path)  # a directory


def test_huge_and_deep_files_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "labels.toml"
    f.write_bytes(b"#" * (9 * 1024 * 1024))
    with pytest.raises(LabelsError, match="larger"):
        load_labels(f)
    f.write_text("[people]\nperson-1 = " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(LabelsError):
        load_labels(f)


def test_excludes() -> None:
    label = PersonLabel("Tom", False, ("2019/IMG_0042.jpg", "face-1234", "/abs/x.jpg"))
    roots = [Path("/photos/a"), Path("/photos/b")]
    assert excludes_face(label, 1234)
    assert not excludes_face(label, 123)
    assert excludes_photo(label, Path("/photos/b/2019/IMG_0042.jpg"), roots)
    assert excludes_photo(label, Path("/abs/x.jpg"), roots)
    assert not excludes_photo(label, Path("/photos/b/2020/IMG_0042.jpg"), roots)
    assert not excludes_photo(label, Path("/elsewhere/2019/IMG_0042.jpg"), roots)
    # "./" and doubled slashes in the file are the same path
    tidy = parse_labels('[people]\nperson-1 = { exclude = ["./2019//IMG_0042.jpg"] }\n')
    assert excludes_photo(tidy.people[1], Path("/photos/a/2019/IMG_0042.jpg"), roots)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Zoë", "Zoë"),
        ("王芳", "王芳"),
        ("..", "_"),
        (".", "_"),
        ("", "_"),
        ("/etc", "_etc"),
        ("a/../b", "a_.._b"),
        ("C:\\Windows", "C__Windows"),
        ("CON", "CON_"),
        ("nul.txt", "nul_.txt"),
        ("com1", "com1_"),
        ("COM10", "COM10"),
        (".hidden", "hidden"),
        ("Tom. ", "Tom"),
        ("a\x00b\x1fc", "a_b_c"),
        ("Tom\u202eevil", "Tom_evil"),
        ("  Mary   Ann  ", "Mary Ann"),
    ],
)
def test_safe_folder_name_cases(name: str, expected: str) -> None:
    assert safe_folder_name(name) == expected


def _check_safe(folder: str, base: Path) -> None:
    assert folder and folder not in (".", "..")
    assert not folder.startswith(".") and not folder.endswith((".", " "))
    assert not any(c in folder for c in "/\\\0")
    assert all(ord(c) >= 32 for c in folder)
    assert len(folder.encode("utf-8")) <= 255
    assert folder.split(".")[0].rstrip(" ").upper() not in {"CON", "PRN", "AUX", "NUL", "COM1"}
    assert os.path.dirname(os.path.normpath(os.path.join(base, folder))) == str(base)
    assert safe_folder_name(folder) == folder  # idempotent


def test_long_names_are_cut_on_character_boundaries() -> None:
    for name in ("x" * 300, "é" * 200, "王" * 100, "a" + "😀" * 70):
        out = safe_folder_name(name)
        assert len(out.encode()) <= 255
        assert name.startswith(out)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_safe_folder_name_fuzz(name: str) -> None:
    _check_safe(safe_folder_name(name), Path("/albums"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes_raise_only_labels_error(data: bytes) -> None:
    try:
        labels = parse_labels(data.decode("utf-8", "replace"))
    except LabelsError:
        return
    for label in labels.people.values():
        assert label.name is None or isinstance(label.name, str)


_hostile = st.sampled_from(
    ["..", ".", "/etc", "../../etc/passwd", "CON", "nul", "a\x00b", "Zoë", "王芳", "x" * 400,
     " ", ".git", "COM1.txt", "person-0001", "Tom\u202e", "\\\\server\\share"]
)
_names = st.one_of(_hostile, st.text(max_size=300))


def _toml_string(s: str) -> str:
    """A TOML basic string holding ``s`` (every non-printable char escaped)."""
    out = []
    for c in s:
        if c in '"\\' or not c.isprintable() or 0xD800 <= ord(c) <= 0xDFFF:
            out.append(f"\\U{ord(c):08x}" if not 0xD800 <= ord(c) <= 0xDFFF else "?")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.integers(0, 10**6), _names, max_size=8))
def test_fuzzed_label_files_give_safe_folders(people: dict[int, str]) -> None:
    text = "[people]\n" + "".join(
        f"{person_key(pid)} = {_toml_string(name)}\n" for pid, name in people.items()
    )
    try:
        labels = parse_labels(text)
    except LabelsError as e:
        assert "empty" in str(e)  # a name of only spaces is the one refusal here
        return
    assert set(labels.people) == set(people)
    for label in labels.people.values():
        assert label.name is not None
        _check_safe(safe_folder_name(label.name), Path("/albums"))


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """Bug 5 (issue 10): a file with several mistakes names all of them, each with its line."""
    text = (
        "colour = 1\n"  # line 1
        "[people]\n"
        "person-0001 = 'ok'\n"
        "person-0002 = 3\n"  # line 4
        "bob = 'x'\n"  # line 5
        "person-0003 = { hide = 'yes' }\n"  # line 6
    )
    f = tmp_path / "labels.toml"
    f.write_text(text)
    with pytest.raises(LabelsError) as info:
        load_labels(f)
    e = info.value
    assert e.line == 1 and len(e.problems) == 4
    for line, word in ((1, "colour"), (4, "person-0002"), (5, "bob"), (6, "hide")):
        assert any(f"line {line}" in p and word in p for p in e.problems), (line, e.problems)
        assert f"line {line}" in str(e)
    assert str(f) in str(e)


def test_unknown_people_named_with_their_line() -> None:
    from daemon.people.labels import unknown_people

    labels = parse_labels("[people]\nperson-0001 = 'a'\n\nperson-0099 = 'typo'\n")
    assert unknown_people(labels, [1, 2]) == [
        "line 4: person-0099 is not a known person (a typo? see `facecluster people`)"
    ]
    assert unknown_people(labels, [1, 99]) == []


def test_live_labels_fall_back_to_the_last_good_ones(tmp_path: Path) -> None:
    """Bug 4 (issue 10): while labels.toml is broken, every process uses the last good."""
    from daemon.people.labels import LAST_GOOD_NAME, load_live_labels

    state = tmp_path / "state"
    f = tmp_path / "labels.toml"
    f.write_text("[people]\nperson-0001 = 'Grandma'\n")
    # No state folder yet (a reading command): nothing is created.
    labels, error = load_live_labels(f, state)
    assert error is None and labels.people[1].name == "Grandma" and not state.exists()
    state.mkdir()
    load_live_labels(f, state)
    assert (state / LAST_GOOD_NAME).read_text() == f.read_text()
    f.write_text("[people\nbroken")
    labels, error = load_live_labels(f, state)  # as a second process would see it
    assert error is not None and str(f) in str(error) and error.line == 1
    assert labels.people[1].name == "Grandma"
    assert load_labels(state / LAST_GOOD_NAME).people[1].name == "Grandma"


def test_the_service_logs_every_labels_problem_and_unknown_ids(tmp_path: Path) -> None:
    """Bug 5 (issue 10): the log names each broken line, and ids that name nobody."""
    from structlog.testing import capture_logs

    from daemon.config import from_dict
    from daemon.stages.pipeline import Pipeline

    f = tmp_path / "labels.toml"
    f.write_text("[people]\nperson-0001 = 3\nbob = 'x'\n")
    cfg = from_dict({"engine": {"detector": "dlib-hog", "embedder": "dlib"}}, tmp_path)
    with capture_logs() as logs, Pipeline(cfg, create=True) as pipeline:
        pipeline.store.new_person_id()  # person 1 exists
        assert pipeline.labels_error and "line 2" in pipeline.labels_error
        f.write_text("[people]\nperson-0001 = 'Ann'\nperson-0099 = 'typo'\n")
        assert pipeline.reload_labels() is None
    invalid = next(e for e in logs if e["event"] == "labels_invalid")
    assert [p.split(":")[0] for p in invalid["problems"]] == ["line 2", "line 3"]
    unknown = next(e for e in logs if e["event"] == "labels_unknown_people")
    assert unknown["problems"] == [
        "line 3: person-0099 is not a known person (a typo? see `facecluster people`)"
    ]
