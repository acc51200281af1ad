"""What answers earn: an oracle answers the product's own questions, round by round.

A library of photos with known people is scanned once by the real ``facecluster scan``.
Then, for each question order (``gain``: the product's ranking; ``naive``: the look-alike
lists top to bottom, what a user without the ranking would work through), from a copy of
that store and an empty labels.toml:

1. ``facecluster review --json --limit 25`` (the scripts' contract);
2. an oracle answers each question through ``facecluster review answer ID yes|no|unsure``:
   each side is the most common true person of its faces, ``unsure`` when it does not
   know a side's faces;
3. ``facecluster scan`` applies the answers (nothing is new: it only re-clusters);

and reports quality after 0, 25, 50, 100 and 250 answers: pair and BCubed P/R/F over the
faces whose person is known, same-photo pairs, the share of faces in an album of another
family, and for every person with at least 40 faces the share of them in their largest
album (the smallest such share is shown). Scan times are the seconds of each applying
scan beside a scan with nothing to apply, measured in the same run.

Libraries (``--library``):

- ``fiw``: Families In the Wild train families (``FACECLUSTER_FIW``, e.g.
  ``/work/fiw/train-faces-det``), each original photo rebuilt as one group shot (see
  ``bench/family_corpus.py``), whole families in folder order up to ``--faces`` crops;
- ``mixed``: the same plus every LFW-dev person with at least 20 photos, each photo
  centre-cropped to 170x170 (``FACECLUSTER_TESTDATA``).

Research data: the library, stores and results stay under ``.bench-cache/`` (gitignored).

    python bench/review.py --library fiw --faces 5000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.family_corpus import CELL, HOW_TO_GET, PER_ROW, compose, fiw_root, list_crops  # noqa: E402
from bench.family_quality import other_family_share  # noqa: E402
from daemon.cli import main as cli  # noqa: E402
from daemon.cluster.constraints import same_photo_pairs  # noqa: E402
from daemon.cluster.metrics import bcubed_scores, pairwise_scores  # noqa: E402
from daemon.store import Store  # noqa: E402

CHECKPOINTS = (0, 25, 50, 100, 250)
BIG = 40
"""People with at least this many faces count as big (the issue's bar)."""
LFW_MIN = 20
LFW_CROP = 170


# -- the library ------------------------------------------------------------------------


def _fiw_shots(root: Path, max_faces: int) -> dict[str, list[tuple[Path, str]]]:
    """Group shot name -> its crops and their people, whole families up to ``max_faces``."""
    by_family: dict[str, list[tuple[Path, str, str]]] = defaultdict(list)
    for path, family, person, photo in list_crops(root):
        by_family[family].append((path, person, photo))
    shots: dict[str, list[tuple[Path, str]]] = defaultdict(list)
    total = 0
    for family in sorted(by_family):
        crops = by_family[family]
        if total + len(crops) > max_faces:
            break
        total += len(crops)
        for path, person, photo in crops:
            shots[photo.replace("/", "-")].append((path, person))
    return shots


def build_library(folder: Path, library: str, max_faces: int) -> dict[str, list[str]]:
    """Write the photos (once) and return photo file -> the person of each grid cell."""
    import cv2

    truth_file = folder / "truth.json"
    if truth_file.is_file():
        return json.loads(truth_file.read_text())
    fiw = fiw_root()
    if fiw is None or not fiw.is_dir():
        raise SystemExit(f"FACECLUSTER_FIW is not set or missing. {HOW_TO_GET}")
    photos = folder / "photos"
    truth: dict[str, list[str]] = {}
    for name, crops in sorted(_fiw_shots(fiw, max_faces).items()):
        rel = f"fiw/{name}.jpg"
        (photos / "fiw").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(photos / rel), compose([p for p, _ in crops]),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        truth[rel] = [person for _, person in crops]
    if library == "mixed":
        lfw = Path(os.environ.get("FACECLUSTER_TESTDATA", REPO.parent / "shared")) / "faces"
        for line in (lfw / "lfw-dev.tsv").read_text().splitlines()[1:]:
            person, count = line.split("\t")
            if int(count) < LFW_MIN:
                continue
            (photos / "lfw" / person).mkdir(parents=True, exist_ok=True)
            for src in sorted((lfw / "lfw-dev" / person).glob("*.jpg")):
                image = cv2.imread(str(src))
                h, w = image.shape[:2]
                y0, x0 = (h - LFW_CROP) // 2, (w - LFW_CROP) // 2
                rel = f"lfw/{person}/{src.name}"
                cv2.imwrite(str(photos / rel), image[y0:y0 + LFW_CROP, x0:x0 + LFW_CROP],
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
                truth[rel] = [f"LFW/{person}"]
    truth_file.write_text(json.dumps(truth))
    return truth


def _config(run: Path, photos: Path) -> Path:
    cfg = run / "config.toml"
    cfg.write_text(
        f'watch = ["{photos}"]\nalbums_dir = "albums"\nstate_dir = "state"\n'
        'labels_file = "labels.toml"\nworkers = 2\n'
        f'[engine]\ndetector = "yunet"\nembedder = "dlib"\nmodels_dir = "{REPO / "models"}"\n'
    )
    return cfg


def _call(cfg: Path, *args: str) -> str:
    """One ``facecluster`` command in this process; its standard output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli(["--config", str(cfg), *args])
    if code != 0:
        raise SystemExit(f"facecluster {' '.join(args)} failed ({code})")
    return out.getvalue()


# -- truth and quality --------------------------------------------------------------------


def face_truth(store: Store, photos: Path, truth: dict[str, list[str]]) -> dict[int, str]:
    """Face id -> true person, from the grid cell its box centre falls in (LFW photos:
    the face nearest the centre). Faces of no cell are unknown (left out)."""
    out: dict[int, str] = {}
    nearest: dict[str, tuple[float, int]] = {}
    for f in store.faces():
        rel = f.path.relative_to(photos).as_posix()
        people = truth.get(rel)
        if people is None:
            continue
        x, y, w, h = f.box
        if rel.startswith("lfw/"):
            d = abs(x + w / 2 - LFW_CROP / 2) + abs(y + h / 2 - LFW_CROP / 2)
            if rel not in nearest or d < nearest[rel][0]:
                nearest[rel] = (d, f.id)
            continue
        cell = int((y + h / 2) // CELL) * PER_ROW + int((x + w / 2) // CELL)
        if 0 <= cell < len(people):
            out[f.id] = people[cell]
    for rel, (_, face) in nearest.items():
        out[face] = truth[rel][0]
    return out


def quality(state: Path, known: dict[int, str]) -> dict:
    with Store.open_readonly(state) as store:
        persons = {f.id: (f.person_id, f.photo_id) for f in store.faces() if f.id in known}
    ids = sorted(persons)
    truth = np.array([known[f] for f in ids])
    labels = np.array([-1 if persons[f][0] is None else persons[f][0] for f in ids])
    photos = np.array([persons[f][1] for f in ids])
    family = np.array([t.split("/")[0] if not t.startswith("LFW/") else t for t in truth])
    pw, b3 = pairwise_scores(truth, labels), bcubed_scores(truth, labels)
    shares = []
    for person, n in Counter(truth.tolist()).items():
        if n >= BIG:
            lab = labels[truth == person]
            lab = lab[lab >= 0]
            shares.append(Counter(lab.tolist()).most_common(1)[0][1] / n if len(lab) else 0.0)
    return {"pair": (pw.precision, pw.recall, pw.f), "b3": (b3.precision, b3.recall, b3.f),
            "same_photo": same_photo_pairs(labels, photos, truth),
            "other_family": other_family_share(labels, family),
            "big": (min(shares) if shares else float("nan"), len(shares)),
            "faces": len(ids)}


# -- the oracle ---------------------------------------------------------------------------


def oracle(question: dict, known: dict[int, str]) -> str:
    """yes / no by the most common true person of each side; unsure if unknown."""
    sides = []
    for side in (question["a"], question["b"]):
        people = [known.get(int(f["face"].removeprefix("face-"))) for f in side["faces"]]
        people = [p for p in people if p is not None]
        if not people:
            return "unsure"
        sides.append(Counter(people).most_common(1)[0][0])
    return "yes" if sides[0] == sides[1] else "no"


def run_order(base: Path, runs: Path, order: str, photos: Path, known: dict[int, str],
              checkpoints: tuple[int, ...], per_round: int) -> tuple[list[dict], dict]:
    run = runs / order
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    shutil.copytree(base / "state", run / "state")
    cfg = _config(run, photos)
    _call(cfg, "scan")  # writes this run's albums
    idle, applying = [], []
    rows = [{"answers": 0, **quality(run / "state", known)}]
    given = Counter()
    while given.total() < max(checkpoints):
        want = min(per_round, max(checkpoints) - given.total())
        questions = json.loads(_call(cfg, "review", "--json", "--limit", str(want),
                                     "--order", order))["questions"]
        if not questions:
            print(f"  {order}: no questions left after {given.total()} answers",
                  file=sys.stderr)
            break
        for q in questions:
            verdict = oracle(q, known)
            _call(cfg, "review", "answer", q["id"], verdict)
            given[verdict] += 1
        t0 = time.monotonic()
        _call(cfg, "scan")
        applying.append(time.monotonic() - t0)
        t0 = time.monotonic()
        _call(cfg, "scan")  # the same-run baseline: nothing to apply
        idle.append(time.monotonic() - t0)
        if given.total() in checkpoints or not questions:
            rows.append({"answers": given.total(), **quality(run / "state", known)})
            print(f"  {order}: {rows[-1]}", file=sys.stderr, flush=True)
    if rows[-1]["answers"] != given.total():
        rows.append({"answers": given.total(), **quality(run / "state", known)})
    timing = {"apply": applying, "idle": idle, "answers": dict(given)}
    return rows, timing


def report(library: str, n_faces: int, results: dict[str, tuple[list[dict], dict]]) -> str:
    lines = [f"### {library}: {n_faces} faces of known people", "",
             "| order | answers | pair P | pair R | pair F | B³ P | B³ R | B³ F | "
             "same-photo pairs | faces in another family's album | big people: smallest "
             "share in one album (people) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for order, (rows, _) in results.items():
        for r in rows:
            p, b = r["pair"], r["b3"]
            lines.append(f"| {order} | {r['answers']} | {p[0]:.3f} | {p[1]:.3f} | "
                         f"**{p[2]:.3f}** | {b[0]:.3f} | {b[1]:.3f} | **{b[2]:.3f}** | "
                         f"{r['same_photo']} | {100 * r['other_family']:.2f}% | "
                         f"{r['big'][0]:.2f} ({r['big'][1]}) |")
    lines.append("")
    for order, (_, t) in results.items():
        if t["apply"]:
            a, i = statistics.median(t["apply"]), statistics.median(t["idle"])
            lines.append(f"- {order}: answers {t['answers']}; `scan` applying a round: "
                         f"median {a:.1f} s [{min(t['apply']):.1f}-{max(t['apply']):.1f}], "
                         f"with nothing to apply {i:.1f} s (ratio {a / i:.2f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--library", choices=("fiw", "mixed"), default="fiw")
    ap.add_argument("--faces", type=int, default=5000, help="FIW crops at most")
    ap.add_argument("--orders", default="gain,naive")
    ap.add_argument("--checkpoints", default=",".join(map(str, CHECKPOINTS)))
    ap.add_argument("--round", type=int, default=25, help="answers per round")
    ap.add_argument("--cache", type=Path, default=REPO / ".bench-cache" / "review")
    ap.add_argument("--runs", default="runs", help="folder of the runs under the library's "
                    "(another name lets two checkouts use one cached store at once)")
    args = ap.parse_args(argv)
    folder = args.cache / f"{args.library}-{args.faces}"
    truth = build_library(folder, args.library, args.faces)
    photos = folder / "photos"
    base = folder / "base"
    if not (base / "scanned.ok").is_file():
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        t0 = time.monotonic()
        print(_call(_config(base, photos), "scan"), file=sys.stderr)
        print(f"indexed in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        (base / "scanned.ok").write_text("")
    with Store.open_readonly(base / "state") as store:
        known = face_truth(store, photos, truth)
    checkpoints = tuple(int(c) for c in args.checkpoints.split(","))
    results = {o: run_order(base, folder / args.runs, o, photos, known, checkpoints, args.round)
               for o in args.orders.split(",")}
    print(report(args.library, len(known), results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
