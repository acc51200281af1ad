"""The running service's path on family photos: faces decided between two re-clusterings.

``bench/family_quality.py`` scores the full re-clustering (what ``scan`` runs). The
service also decides faces *between* re-clusterings, at once, as photos arrive: the
neighbour vote, then the re-clustering of a face's neighbourhood (issue 15). This bench
checks that those decisions are as trustworthy as the full clustering's (issue 11: a
photo added later must not undo it).

Families In the Wild train crops (see ``bench/family_corpus.py``; the embeddings come
from its cache, made by ``bench/family_quality.py``). The photos are shuffled; the first
``--known`` share is stored and fully re-clustered (a library as it stands), the rest
arrive in batches of ``--batch`` photos through ``People.assign_incremental`` exactly as
the service calls it. Reported, for the faces that arrived: how many were given a
person at once, the share given to a person whose faces are mostly somebody else
(wrong), the share given to an album whose majority is another family, and pairs of
two people of one photo in one person -- with and without the neighbourhood rule.

    FACECLUSTER_FIW=/path/to/train-faces-det .venv/bin/python bench/family_service.py
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from unittest import mock

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from family_corpus import HOW_TO_GET, FiwFaces, embed_fiw, fiw_root  # noqa: E402

from daemon.config import from_dict  # noqa: E402
from daemon.indexer.types import Face, IndexedPhoto  # noqa: E402
from daemon.log import configure  # noqa: E402
from daemon.stages.people import People  # noqa: E402
from daemon.stages.pipeline import Pipeline  # noqa: E402


def _store_photo(p: Pipeline, photo: str, rows: list[int], faces: FiwFaces
                 ) -> list[tuple[int, int]]:
    path = p.cfg.watch[0] / (photo.replace("/", "_") + ".jpg")
    found = [r for r in rows if faces.found[r]]
    shot = tuple(
        Face((10.0 + 240 * i, 10.0, 100.0, 100.0), (), float(faces.score[r]), faces.vectors[r])
        for i, r in enumerate(found)
    )
    ids = p.store.save_indexed(path, 1, 1, photo, IndexedPhoto(path, 240 * max(1, len(shot)),
                                                               240, p.engine_id, shot))
    return list(zip(ids, found, strict=True))


def run(faces: FiwFaces, models: Path, known_share: float, batch: int, seed: int,
        local: bool) -> tuple[dict, dict]:
    """Store and cluster the known photos, feed the rest; return the scores of the faces
    that arrived as decided at once, and after the next full re-clustering."""
    photos = np.unique(faces.photo)
    rng = np.random.default_rng(seed)
    rng.shuffle(photos)
    cut = int(len(photos) * known_share)
    rows_of: dict[str, list[int]] = {}
    for r, ph in enumerate(faces.photo):
        rows_of.setdefault(ph, []).append(r)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "photos").mkdir()
        cfg = from_dict({"watch": ["photos"], "workers": 1, "log_level": "warning",
                         "engine": {"detector": "yunet", "embedder": "dlib",
                                    "models_dir": str(models)}}, root)
        patch = (contextlib.nullcontext() if local
                 else mock.patch.object(People, "_decide_locally", lambda *a, **k: {}))
        with Pipeline(cfg, create=True) as p, patch:
            if p.engine_id != faces.engine:
                raise SystemExit(f"the cache holds {faces.engine}, the config picks {p.engine_id}")
            row_of_face: dict[int, int] = {}
            with p.store.batch():
                for ph in photos[:cut]:
                    row_of_face.update(_store_photo(p, ph, rows_of[ph], faces))
            p.recluster()
            t0 = time.monotonic()
            arrived: list[int] = []
            for start in range(cut, len(photos), batch):
                new: list[int] = []
                with p.store.batch():
                    for ph in photos[start:start + batch]:
                        pairs = _store_photo(p, ph, rows_of[ph], faces)
                        row_of_face.update(pairs)
                        new += [fid for fid, _ in pairs]
                p.assign_incremental(new)
                arrived += new
            seconds = time.monotonic() - t0
            person = {f.id: f.person_id for f in p.store.faces()}
            at_once = _scores(faces, person, row_of_face, arrived, seconds)
            t0 = time.monotonic()
            p.recluster()
            person = {f.id: f.person_id for f in p.store.faces()}
            later = _scores(faces, person, row_of_face, arrived, time.monotonic() - t0)
    return at_once, later


def _scores(faces: FiwFaces, person: dict[int, int | None], row_of_face: dict[int, int],
            arrived: list[int], seconds: float) -> dict:
    members: dict[int, list[int]] = {}
    for fid, pid in person.items():
        if pid is not None:
            members.setdefault(pid, []).append(row_of_face[fid])
    who = {pid: Counter(faces.person[r] for r in rows).most_common(1)[0][0]
           for pid, rows in members.items()}
    family = {pid: Counter(faces.family[r] for r in rows).most_common(1)[0][0]
              for pid, rows in members.items()}
    given = [f for f in arrived if person[f] is not None]
    wrong = sum(who[person[f]] != faces.person[row_of_face[f]] for f in given)
    other = sum(family[person[f]] != faces.family[row_of_face[f]] for f in given)
    shown: Counter = Counter()
    for fid, pid in person.items():
        if pid is not None:
            r = row_of_face[fid]
            shown[(faces.photo[r], pid, faces.person[r])] += 1
    by_photo: dict[tuple, set] = {}
    for (ph, pid, true), _ in shown.items():
        by_photo.setdefault((ph, pid), set()).add(true)
    same_photo = sum(len(s) * (len(s) - 1) // 2 for s in by_photo.values())
    return {"arrived": len(arrived), "given": len(given), "wrong": wrong, "other": other,
            "same_photo": same_photo, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=fiw_root())
    ap.add_argument("--models", type=Path, default=REPO / "models")
    ap.add_argument("--cache", type=Path, default=REPO / ".bench-cache")
    ap.add_argument("--known", type=float, default=0.8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if args.data is None or not args.data.is_dir():
        print(f"no FIW faces at {args.data}. {HOW_TO_GET}")
        return 2
    configure("warning")
    faces = embed_fiw(args.data, args.models, args.cache)
    print(f"{len(faces.files)} faces, {len(np.unique(faces.photo))} photos; the first "
          f"{args.known:.0%} of the photos (shuffled, seed {args.seed}) clustered, the rest "
          f"arriving {args.batch} at a time\n")
    print("| service path | arrived | given at once | wrong person | another family's "
          "album | same-photo pairs (all faces) | s |\n| --- | ---: | ---: | ---: | ---: "
          "| ---: | ---: |")
    for name, local in (("vote only", False), ("vote + neighbourhood", True)):
        at_once, later = run(faces, args.models, args.known, args.batch, args.seed, local)
        _line(f"{name}: at once", at_once)
        _line(f"{name}: after the next full re-clustering", later)
    return 0


def _line(name: str, r: dict) -> None:
    g = max(1, r["given"])
    print(f"| {name} | {r['arrived']} | {r['given']} ({r['given'] / r['arrived']:.1%}) | "
          f"{r['wrong'] / g:.1%} | {r['other'] / g:.1%} | {r['same_photo']} | "
          f"{r['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
