"""The web page's Review: one question at a time, answers into labels.toml, CSRF, keys."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from daemon.people.labels import load_labels
from tests.test_web import client_for, form_tokens, labels_text, scanned  # noqa: F401
from tests.test_web import lib as web_lib  # noqa: F401

pytestmark = pytest.mark.slow


@pytest.fixture()
def lib(web_lib: Path, shared_photos: Path) -> Path:  # noqa: F811
    """The web tests' library and a collage of four bald actors (faces nobody was given,
    some close enough to a known person to be asked about), scanned in once."""
    from daemon.cli import main

    collage = web_lib / "photos" / "groups" / "bald_guys.jpg"
    if not collage.exists():
        shutil.copy2(shared_photos / "groups" / collage.name, collage)
        assert main(["--config", str(web_lib / "config.toml"), "scan"]) == 0
    return web_lib


def _shown(html: str) -> tuple[str, int]:
    qid = re.search(r'name="question" value="([^"]+)"', html).group(1)
    left = int(re.search(r"(\d+) questions? left", html).group(1))
    return qid, left


def test_review_page_asks_one_question_and_records_the_answer(lib: Path) -> None:
    client = client_for(lib)
    page = client.get("/review")
    assert page.status_code == 200
    qid, left = _shown(page.text)
    assert left >= 2
    faces = re.findall(r'src="/face/(\d+)\.jpg"', page.text)
    assert 2 <= len(faces) <= 12
    assert all(client.get(f"/face/{f}.jpg").status_code == 200 for f in faces[:2])
    assert 'data-key="y"' in page.text and "<script>" not in page.text  # keys: app.js
    r = client.post("/review/answer", data={**form_tokens(client, "/review"),
                                            "question": qid, "answer": "no"})
    assert r.status_code == 200 and "Answer saved" in r.text
    a, b = qid.split("+")
    labels = load_labels(lib / "labels.toml")
    assert b in labels.label(int(a.removeprefix("person-"))).different
    nxt, now_left = _shown(r.text)
    assert nxt != qid and now_left == left - 1


def test_not_sure_stays_out_of_labels_and_out_of_the_page(lib: Path) -> None:
    client = client_for(lib)
    qid, left = _shown(client.get("/review").text)
    r = client.post("/review/answer", data={**form_tokens(client, "/review"),
                                            "question": qid, "answer": "unsure"})
    assert r.status_code == 200
    assert labels_text(lib) == ""
    assert qid in json.loads((lib / "state" / "review.json").read_text())["unsure"]
    assert _shown(r.text)[0] != qid
    (lib / "state" / "review.json").unlink()


def test_review_answers_need_the_token_and_a_real_answer(lib: Path) -> None:
    client = client_for(lib)
    qid, _ = _shown(client.get("/review").text)
    tokens = form_tokens(client, "/review")
    r = client.post("/review/answer", data={"digest": tokens["digest"], "question": qid,
                                            "answer": "yes"})
    assert r.status_code == 403
    r = client.post("/review/answer", data={**tokens, "question": qid, "answer": "perhaps"})
    assert r.status_code == 400
    r = client.post("/review/answer", data={**tokens, "question": "bob", "answer": "yes"})
    assert r.status_code == 400
    (lib / "labels.toml").write_text("# edited by hand meanwhile\n")
    r = client.post("/review/answer", data={**tokens, "question": qid, "answer": "yes"})
    assert r.status_code == 409
    assert labels_text(lib) == "# edited by hand meanwhile\n"


def test_split_page_offers_the_parts_and_a_no_makes_a_person(lib: Path) -> None:
    # Runs last in this module: it re-clusters the module's library.
    from daemon.cli import main
    from tests.test_web import albums

    cfg = str(lib / "config.toml")
    owner = {photo: album for album, photos in albums(lib).items() for photo in photos}
    kit, rose = owner["john1.jpeg"], owner["img2.jpg"]
    assert kit != rose
    assert main(["--config", cfg, "review", "answer", "+".join(sorted([kit, rose])),
                 "yes"]) == 0
    assert main(["--config", cfg, "scan"]) == 0
    both_id = next(a for a, photos in albums(lib).items() if "john1.jpeg" in photos)
    assert "img2.jpg" in albums(lib)[both_id]  # the answer made them one
    pid = int(both_id.removeprefix("person-"))
    client = client_for(lib)
    assert 'href="/split/' in client.get(f"/person/{pid}").text
    page = client.get(f"/split/{pid}")
    assert page.status_code == 200 and "Part 2" in page.text
    first = re.search(r'name="first" value="(\d+)"', page.text).group(1)
    tokens = form_tokens(client, f"/split/{pid}")
    r = client.post("/split", data={**tokens, "person": str(pid), "first": "999999",
                                    "answer": "no"})
    assert r.status_code == 400
    r = client.post("/split", data={**tokens, "person": str(pid), "first": first,
                                    "answer": "no"})
    assert r.status_code == 200
    assert len(load_labels(lib / "labels.toml").label(pid).different) == 2
    assert main(["--config", cfg, "scan"]) == 0
    after = {photo: album for album, photos in albums(lib).items() for photo in photos}
    assert after["john1.jpeg"] != after["img2.jpg"]
    (lib / "labels.toml").unlink()
