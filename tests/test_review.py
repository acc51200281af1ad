"""Review questions and answers without a store: labels, the editor, ids, ranking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.people.labels import LabelsError, born_on, load_labels, parse_labels
from daemon.people.naming import NamingError, answer, set_born
from daemon.review.answers import answer_closure
from daemon.review.ids import parse_question_id, question_id
from daemon.review.questions import Library, rank_questions
from daemon.review.record import read_unsure, record_answer
from tests.synthetic import blobs


def test_labels_read_answers_and_birth_dates() -> None:
    labels = parse_labels(
        "[people]\n"
        'person-0007 = { name = "Mia", born = "2019-03", same_as = ["person-31", "face-88"],'
        ' not = ["person-0012", "face-90"] }\n'
        "person-0008 = { born = 2001-02-03 }\n"
    )
    mia = labels.people[7]
    assert mia.same_as == ("person-0031", "face-88")  # written canonically
    assert mia.different == ("person-0012", "face-90")
    assert born_on(mia) == "2019-03-01"
    assert born_on(labels.people[8]) == "2001-02-03"


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ('person-0001 = { same_as = ["bob"] }', "same_as"),
        ("person-0001 = { not = [3] }", "not"),
        ('person-0001 = { not = ["person-0001"] }', "itself"),
        ('person-0001 = { same_as = ["face-3"], not = ["face-3"] }', "both"),
        ('person-0001 = { born = "2019-13" }', "born"),
        ('person-0001 = { born = "last year" }', "born"),
    ],
)
def test_bad_answers_are_refused_with_their_line(text: str, word: str) -> None:
    with pytest.raises(LabelsError) as e:
        parse_labels(f"# mine\n[people]\n{text}\n")
    assert word in str(e.value) and "line 3" in str(e.value)


def test_answer_keeps_the_users_layout_and_the_later_answer_wins(tmp_path: Path) -> None:
    path = tmp_path / "labels.toml"
    path.write_text('# my family\n[people]\nperson-0001 = "Mia"   # the little one\n'
                    "# end\n")
    answer(path, 1, "person-0004", same=True)
    answer(path, 1, "face-12", same=False)
    text = path.read_text()
    assert text.startswith("# my family\n[people]\n") and "# the little one" in text
    assert text.rstrip().endswith("# end")
    mia = load_labels(path).people[1]
    assert (mia.name, mia.same_as, mia.different) == ("Mia", ("person-0004",), ("face-12",))
    answer(path, 1, "face-12", same=True)  # changed their mind
    mia = load_labels(path).people[1]
    assert mia.same_as == ("person-0004", "face-12") and mia.different == ()
    assert not answer(path, 1, "face-12", same=True).changed
    with pytest.raises(NamingError):
        answer(path, 1, "person-0001", same=True)
    with pytest.raises(NamingError):
        answer(path, 1, "someone", same=True)
    set_born(path, 1, "2019-03")
    assert load_labels(path).people[1].born == "2019-03"
    with pytest.raises(NamingError):
        set_born(path, 1, "March")


def test_question_ids_are_stable_and_checked() -> None:
    assert question_id("face-3", "person-0012") == "person-0012+face-3"
    assert question_id("person-0012", "person-0007") == "person-0007+person-0012"
    assert parse_question_id("person-12+person-7") == ("person-0007", "person-0012")
    for bad in ("person-0007", "face-1+face-2", "person-1+person-1", "x+person-1", ""):
        with pytest.raises(LabelsError):
            parse_question_id(bad)


def _library() -> tuple[Library, np.ndarray]:
    """Three people; person 0 cut in two parts (ids 1 and 2); person 1 whole (id 3);
    person 2's faces all unassigned but one (id 4)."""
    v, truth = blobs(3, 16, 0.03, seed=7)
    persons = np.array([1] * 8 + [2] * 8 + [3] * 16 + [-1] * 15 + [4], dtype=np.int64)
    return Library(np.arange(100, 148), v, persons), truth


def test_a_fragment_of_a_person_is_asked_first() -> None:
    lib, _ = _library()
    questions = rank_questions(lib, answer_closure(parse_labels("")))
    first = questions[0]
    assert (first.id, first.kind) == ("person-0001+person-0002", "fragment")
    assert first.a.person == 1 and len(first.a.faces) == 6 and first.b.size == 8
    assert all(q.gain <= first.gain for q in questions)
    # Nobody suggests that person 1 and person 3 (strangers far apart) are one.
    assert "person-0001+person-0003" not in {q.id for q in questions}


def test_an_answered_question_is_never_asked_again_nor_its_consequences() -> None:
    lib, _ = _library()
    labels = parse_labels('[people]\nperson-0001 = { same_as = ["person-0002"] }\n')
    ids = {q.id for q in rank_questions(lib, answer_closure(labels))}
    assert "person-0001+person-0002" not in ids
    labels = parse_labels('[people]\nperson-0001 = { same_as = ["person-0002"] }\n'
                          'person-0002 = { not = ["face-124"] }\n')
    answers = answer_closure(labels)
    assert answers.different("person-0001", "face-124")  # 1 = 2, 2 != face => 1 != face
    assert all(not answers.settled(q.a.ref, q.b.ref)
               for q in rank_questions(lib, answers))


def test_not_sure_comes_back_only_when_new_faces_arrive(tmp_path: Path) -> None:
    lib, _ = _library()
    none = answer_closure(parse_labels(""))
    first = rank_questions(lib, none)[0]
    record_answer(tmp_path / "labels.toml", tmp_path, parse_labels(""), first.id, "unsure")
    assert not (tmp_path / "labels.toml").exists()  # "not sure" is not the user's data
    skip = read_unsure(tmp_path)
    assert first.id in skip
    skip[first.id] = first.a.size + first.b.size
    assert first.id not in {q.id for q in rank_questions(lib, none, skip)}
    skip[first.id] -= 1  # a side has gained a face since
    assert first.id in {q.id for q in rank_questions(lib, none, skip)}


def test_a_yes_goes_on_the_named_person_and_a_no_too(tmp_path: Path) -> None:
    path = tmp_path / "labels.toml"
    path.write_text('[people]\nperson-0009 = "Tom"\n')
    record_answer(path, tmp_path, load_labels(path), "person-0002+person-0009", "yes")
    assert load_labels(path).people[9].same_as == ("person-0002",)
    record_answer(path, tmp_path, load_labels(path), "person-0003+face-5", "no")
    assert load_labels(path).people[3].different == ("face-5",)
    with pytest.raises(NamingError):
        record_answer(path, tmp_path, load_labels(path), "person-0003+face-5", "maybe")


def test_naive_order_walks_the_look_alike_lists() -> None:
    lib, _ = _library()
    naive = rank_questions(lib, answer_closure(parse_labels("")), order="naive")
    assert naive and all(q.kind == "fragment" for q in naive)
    assert naive[0].a.person == 1  # the lists in person order


def test_exif_dates_and_the_birth_rule() -> None:
    from daemon.review.dates import before_birth, born_after, parse_exif_date

    assert parse_exif_date("2019:03:14 10:00:00") == "2019-03-14"
    assert parse_exif_date(b"2019:03:14 10:00:00\x00") == "2019-03-14"
    assert parse_exif_date("0000:00:00 00:00:00") is None
    assert parse_exif_date("    :  :     :  :  ") is None and parse_exif_date(None) is None
    labels = parse_labels('[people]\nperson-0007 = { name = "Mia", born = "2019-03" }\n')
    born = born_after(labels, {9: 7})  # person 9 was answered to be Mia too
    assert born == {7: "2019-03-01", 9: "2019-03-01"}
    faces = [(1, "old"), (2, "march"), (3, "undated"), (4, None)]
    dates = {"old": "2019-02-28", "march": "2019-03-01", "undated": ""}
    assert before_birth(faces, dates, born) == {(1, 7), (1, 9)}


def test_photo_dates_are_read_once_per_content_jpeg_and_heic(tmp_path: Path) -> None:
    import io

    import pillow_heif
    from PIL import Image

    from daemon.review.dates import exif_date, photo_dates

    def exif(when: str) -> bytes:
        tags = Image.Exif()
        tags.get_ifd(0x8769)[36867] = when
        return tags.tobytes()

    picture = Image.new("RGB", (64, 48), (120, 90, 60))
    jpeg, heic, bare = tmp_path / "a.jpg", tmp_path / "b.heic", tmp_path / "c.jpg"
    picture.save(jpeg, exif=exif("2018:07:01 12:00:00"))
    buf = io.BytesIO()
    pillow_heif.from_pillow(picture).save(buf, quality=80, exif=exif("2021:01:02 08:00:00"))
    heic.write_bytes(buf.getvalue())
    picture.save(bare)
    (tmp_path / "d.jpg").write_bytes(b"not a photo")
    assert [exif_date(p) for p in (jpeg, heic, bare, tmp_path / "d.jpg")] == [
        "2018-07-01", "2021-01-02", None, None]
    state = tmp_path / "state"
    state.mkdir()
    assert photo_dates(state, [("h1", jpeg), ("h2", bare)]) == {"h1": "2018-07-01", "h2": ""}
    jpeg.unlink()  # kept by content: not read again
    assert photo_dates(state, [("h1", jpeg), ("h3", heic)])["h1"] == "2018-07-01"


def _merged_library() -> tuple[Library, np.ndarray]:
    """Person 5 holds two humans: 20 faces of one, 8 of another (ids 120-127); person 6
    is one human of 10 faces."""
    v, truth = blobs(3, 20, 0.03, seed=11)
    keep = np.r_[np.arange(0, 28), np.arange(40, 50)]
    persons = np.array([5] * 28 + [6] * 10, dtype=np.int64)
    return Library(np.arange(100, 100 + len(keep)), v[keep], persons), truth[keep]


def test_a_part_of_a_person_is_asked_against_the_rest_of_them() -> None:
    from daemon.cluster.dbscan import ClusterParams

    lib, _ = _merged_library()
    none = answer_closure(parse_labels(""))
    assert all(q.kind != "part" for q in rank_questions(lib, none))  # no settings: none
    parts = [q for q in rank_questions(lib, none, params=ClusterParams(0.5, 2))
             if q.kind == "part"]
    assert [q.id for q in parts] == [f"person-0005+part-{parts[0].b.members[0]}"]
    q = parts[0]
    assert sorted(q.b.members) == list(range(120, 128)) and q.b.size == 8
    assert q.a.person == 5 and q.a.size == 20 and set(q.a.faces) <= set(range(100, 120))
    assert q.gain > 0 and set(q.b.faces) <= set(q.b.members) and len(q.b.faces) == 6


def test_a_no_to_a_part_moves_all_its_faces_and_it_is_not_asked_again(
        tmp_path: Path) -> None:
    from daemon.cluster.dbscan import ClusterParams
    from daemon.review.record import remember_parts

    lib, _ = _merged_library()
    params = ClusterParams(0.5, 2)
    q = next(q for q in rank_questions(lib, answer_closure(parse_labels("")), params=params)
             if q.kind == "part")
    remember_parts(tmp_path, {q.id: q.b.members})
    path = tmp_path / "labels.toml"
    record_answer(path, tmp_path, parse_labels(""), q.id, "no")
    labels = load_labels(path)
    assert labels.people[5].different == tuple(f"face-{f}" for f in q.b.members)
    assert q.id not in {x.id for x in rank_questions(lib, answer_closure(labels),
                                                     params=params)}
    # A "yes" names the faces that were shown: enough that it is not asked again.
    path.unlink()
    record_answer(path, tmp_path, parse_labels(""), q.id, "yes")
    labels = load_labels(path)
    assert labels.people[5].same_as == tuple(f"face-{f}" for f in q.b.members[:6])
    assert q.id not in {x.id for x in rank_questions(lib, answer_closure(labels),
                                                     params=params)}


def test_a_part_answered_without_its_listing_names_its_central_face(tmp_path: Path) -> None:
    path = tmp_path / "labels.toml"
    record_answer(path, tmp_path, parse_labels(""), "person-0005+part-120", "no")
    assert load_labels(path).people[5].different == ("face-120",)
    assert parse_question_id("part-120+person-5") == ("person-0005", "part-120")
    for bad in ("face-1+part-2", "part-1+part-2", "part-1"):
        with pytest.raises(LabelsError):
            parse_question_id(bad)


def test_a_split_is_stricter_than_the_users_own_settings() -> None:
    from daemon.cluster.dbscan import configured_params, default_params
    from daemon.config import ClusterConfig
    from daemon.review.split import stricter

    engine = "yunet-2023mar+dlib-resnet-v1"
    mine = configured_params(engine, ClusterConfig(eps=0.30, min_samples=4))
    assert (mine.eps, mine.min_samples) == (0.30, 4)
    assert stricter(mine).eps == pytest.approx(0.30 * 0.85)
    assert configured_params(engine, ClusterConfig()) == default_params(engine)


def test_many_noes_to_close_people_lower_the_chance_of_the_next_ones() -> None:
    from daemon.review.learn import FRAGMENT_PRIOR, Observed, person_answers

    labels = parse_labels('[people]\nperson-0001 = { same_as = ["person-0002"], '
                          'not = ["person-0003", "person-0004", "face-9"] }\n'
                          'person-0005 = { not = ["person-0006"] }\n')
    assert person_answers(labels) == Observed(yes=1, no=3)  # faces are not counted
    assert Observed().scale() == pytest.approx(1.0)
    relatives, strangers = Observed(yes=1, no=40), Observed(yes=20, no=20)
    assert relatives.scale() < 0.6 < 1.0 < strangers.scale()
    assert relatives.scale() == pytest.approx((1 + 20 * FRAGMENT_PRIOR) / 61 / FRAGMENT_PRIOR)
    lib, _ = _library()
    none = answer_closure(parse_labels(""))
    before = {q.id: q.gain for q in rank_questions(lib, none) if q.kind == "fragment"}
    after = {q.id: q.gain for q in rank_questions(lib, none, observed=relatives)
             if q.kind == "fragment"}
    assert before.keys() == after.keys() and before
    assert all(after[k] == pytest.approx(before[k] * relatives.scale(), abs=1e-3)
               for k in before)


def test_after_a_no_the_faces_between_the_two_people_come_first() -> None:
    from tests.synthetic import unit

    v, _ = blobs(2, 12, 0.03, seed=5)  # humans A (rows 0-11) and B (12-23)
    persons = np.array([7] * 12 + [8] * 12, dtype=np.int64)
    none = answer_closure(parse_labels(""))
    apart = answer_closure(parse_labels('[people]\nperson-0007 = { not = ["person-0008"] }\n'))

    def edge_gain(mix: float, answers) -> float:  # noqa: ANN001
        w = v.copy()
        w[0] = unit((1 - mix) * v[1:12].mean(axis=0) + mix * v[12:].mean(axis=0))
        lib = Library(np.arange(200, 224), w, persons)
        found = {q.id: q.gain for q in rank_questions(lib, answers)}
        return found.get("person-0007+face-200", 0.0)

    pairs = [(edge_gain(m, none), edge_gain(m, apart)) for m in np.linspace(0.3, 0.6, 31)]
    assert all(after >= before for before, after in pairs)
    assert any(after > before > 0 for before, after in pairs)  # a face between, ranked up
