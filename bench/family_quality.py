"""Clustering quality on family photos: Families In the Wild (FIW) train faces.

    FACECLUSTER_FIW=/path/to/fitw2020/train-faces-det \\
        .venv/bin/python bench/family_quality.py [--workers N] [--limit PHOTOS]

Each original FIW photo is rebuilt as one group shot holding its faces and run through
the real indexer (YuNet + dlib ResNet; ``bench/family_corpus.py``; cached in
``.bench-cache/``). Then, per face (faces the indexer missed count as noise):
pairwise and BCubed P/R/F, the pairs of two *different* people from one photo put in
one person, the share of album faces whose album's majority is another family, and the
largest album (faces, people, families, purity) -- for all families in one library
(the goal) and for one library per family, beside the baselines.

The data are non-commercial research data: never commit them or anything derived from
them. Without ``FACECLUSTER_FIW`` this prints how to get them and exits with 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import structlog

# Debug events (one per split cluster) would drown the tables.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from big_people import Library, embed_lfw_crops, summary, worst  # noqa: E402
from family_corpus import HOW_TO_GET, FiwFaces, embed_fiw, fiw_root  # noqa: E402

from daemon.cluster import (  # noqa: E402
    NOISE,
    bcubed_scores,
    cluster_faces,
    default_params,
    pairwise_scores,
)
from daemon.cluster.constraints import (  # noqa: E402
    as_photos,
    constrained_average_linkage,
    same_photo_pairs,
)
from daemon.cluster.dbscan import dbscan_graph, renumber  # noqa: E402
from daemon.cluster.neighbours import eps_graph  # noqa: E402
from tests.shared_data import testdata_dir  # noqa: E402

Method = Callable[[np.ndarray, np.ndarray, FiwFaces, np.ndarray], np.ndarray]
"""(vectors of found faces, their photo codes, all faces, found mask) -> labels."""


@dataclass(frozen=True)
class Row:
    name: str
    pair: tuple[float, float, float]
    b3: tuple[float, float, float]
    same_photo: int
    other_family: float
    largest: str
    big: str
    seconds: float

    def line(self) -> str:
        p, b = self.pair, self.b3
        return (f"| {self.name} | {p[0]:.3f} | {p[1]:.3f} | **{p[2]:.3f}** | {b[0]:.3f} | "
                f"{b[1]:.3f} | **{b[2]:.3f}** | {self.same_photo} | "
                f"{100 * self.other_family:.1f}% | {self.largest} | {self.big} | "
                f"{self.seconds:.1f} |")


HEADER = ("| method | pair P | pair R | pair F | B³ P | B³ R | B³ F | same-photo pairs | "
          "faces in another family's album | largest album: faces / people / families / "
          "purity | big people: share in their largest album | s |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |")


def other_family_share(labels: np.ndarray, family: np.ndarray) -> float:
    """Of the faces in albums (clusters), the share whose album's majority is another
    family."""
    placed = labels != NOISE
    if not placed.any():
        return 0.0
    lab, fam = labels[placed], np.unique(family, return_inverse=True)[1].ravel()[placed]
    k = int(lab.max()) + 1
    counts = np.zeros((k, fam.max() + 1), np.int64)
    np.add.at(counts, (lab, fam), 1)
    return float(1 - counts.max(axis=1).sum() / placed.sum())


def largest_album(labels: np.ndarray, faces: FiwFaces) -> str:
    placed = labels != NOISE
    if not placed.any():
        return "–"
    sizes = np.bincount(labels[placed])
    big = labels == int(np.argmax(sizes))
    people, counts = np.unique(faces.person[big], return_counts=True)
    return (f"{big.sum()} / {len(people)} / {len(np.unique(faces.family[big]))} / "
            f"{counts.max() / big.sum():.2f}")


def score(name: str, labels: np.ndarray, faces: FiwFaces, seconds: float) -> Row:
    pw, b3 = pairwise_scores(faces.person, labels), bcubed_scores(faces.person, labels)
    return Row(name, (pw.precision, pw.recall, pw.f), (b3.precision, b3.recall, b3.f),
               same_photo_pairs(labels, as_photos(faces.photo, len(labels)), faces.person),
               other_family_share(labels, faces.family), largest_album(labels, faces),
               summary(faces.person, labels), seconds)


def run(method: Method, faces: FiwFaces, subset: np.ndarray | None = None) -> np.ndarray:
    """Labels for every face (missed faces are noise), optionally on a subset only."""
    idx = np.arange(len(faces.files)) if subset is None else subset
    found = faces.found[idx]
    labels = np.full(len(idx), NOISE, np.int64)
    use = idx[found]
    if len(use):
        photos = as_photos(faces.photo[use], len(use))
        labels[found] = method(faces.vectors[use], photos, faces, use)
    return labels


def per_family(method: Method, faces: FiwFaces) -> np.ndarray:
    """One library per family: cluster each alone; labels made distinct across them."""
    out = np.full(len(faces.files), NOISE, np.int64)
    offset = 0
    for fam in np.unique(faces.family):
        idx = np.flatnonzero(faces.family == fam)
        lab = run(method, faces, idx)
        real = lab != NOISE
        out[idx[real]] = lab[real] + offset
        offset += int(lab.max(initial=-1)) + 1
    return out


def subset(faces: FiwFaces, keep: np.ndarray) -> FiwFaces:
    """The faces at ``keep`` (a mask or indices) only."""
    return FiwFaces(faces.files[keep], faces.family[keep], faces.person[keep],
                    faces.photo[keep], faces.vectors[keep], faces.score[keep],
                    faces.side[keep], faces.yaw[keep], faces.sharp[keep], faces.engine)


def mixed(faces: FiwFaces, lib: Library) -> FiwFaces:
    """One library of the FIW faces and LFW's big people (``bench/big_people.py``); each
    LFW person, and each bystander, is a family of their own."""
    n = len(lib.person)
    nan = np.full(n, np.nan)
    return FiwFaces(np.r_[faces.files, lib.photo], np.r_[faces.family, "LFW/" + lib.person],
                    np.r_[faces.person, "LFW/" + lib.person], np.r_[faces.photo, lib.photo],
                    np.r_[faces.vectors, lib.vectors], np.r_[faces.score, lib.score],
                    np.r_[faces.side, nan], np.r_[faces.yaw, nan], np.r_[faces.sharp, nan],
                    faces.engine)


def linkage_baseline(cut: float) -> Method:
    """Average linkage cut at ``cut``, never joining two faces of one photo: exact per
    connected component of the ``cut``-graph (a merge at <= cut never crosses one)."""
    def method(v, photos, _faces, _use):
        comp = dbscan_graph(eps_graph(v, cut, 256), 1)
        out = np.full(len(v), NOISE, np.int64)
        nxt = 0
        for c in np.unique(comp):
            members = np.flatnonzero(comp == c)
            sub = constrained_average_linkage(v[members], cut, photos[members])
            out[members] = sub + nxt
            nxt += int(sub.max()) + 1
        sizes = np.bincount(out)
        out[sizes[out] < 2] = NOISE
        return renumber(out)
    return method


def product(params, with_photos: bool = True) -> Method:
    """``cluster_faces`` as the product calls it: photo ids and detector scores."""
    def method(v, photos, faces, use):
        return cluster_faces(v, params, photos=photos if with_photos else None,
                             scores=faces.score[use])
    return method


def PREVIOUS(base):  # noqa: N802 -- reads as the name of a setting
    """The defaults before issue 19 (the blob re-cut by spread alone, no second pass)."""
    return replace(base, blob_spread=0.34, blob_whole=0.0, merge_eps=0.0, stray_k=0)


def methods(engine: str) -> list[tuple[str, Method]]:
    base = default_params(engine)
    before = replace(base, weak_score=0.0, blob_size=0, blob_agree=0.0)
    plain = replace(before, guard="none", rejoin_eps=0.0)
    rows: list[tuple[str, Method]] = [
        ("**default**: photo constraints, poor faces by vote, blob re-cut by spread and "
         "by neighbourhood agreement unless cohesive, second linkage pass", product(base)),
        ("default without the strays (the previous default)",
         product(replace(base, stray_k=0))),
        ("before issue 19 (spread 0.34, no cohesion, no second pass, no strays)",
         product(PREVIOUS(base))),
        ("default without cohesion", product(replace(base, blob_whole=0.0))),
        ("default without the second linkage pass", product(replace(base, merge_eps=0.0))),
        ("default without the agreement test", product(replace(base, blob_agree=0.0))),
        ("default without the spread test", product(replace(base, blob_size=0,
                                                            blob_large=0))),
        ("default without either blob test", product(replace(base, blob_size=0,
                                                             blob_agree=0.0))),
        ("default without the poor-face rule", product(replace(base, weak_score=0.0))),
        ("photo constraints only", product(before)),
        ("previous default (no photo constraints)", product(before, with_photos=False)),
    ]
    for eps in (0.28, 0.30, 0.32):
        rows.append((f"plain DBSCAN eps {eps}, min_samples 2", product(replace(plain, eps=eps),
                                                                       False)))
    rows.append(("average linkage at 0.374, never joining two faces of one photo",
                 linkage_baseline(0.374)))
    rows.append(("tutorials: DBSCAN eps 0.5, min_samples 5",
                 product(replace(plain, eps=0.5, min_samples=5), False)))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=fiw_root())
    ap.add_argument("--models", type=Path, default=REPO / "models",
                    help="folder holding the YuNet model (face_detection_yunet_2023mar.onnx)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=REPO / ".bench-cache")
    ap.add_argument("--limit", type=int, default=0, help="only the first N photos")
    ap.add_argument("--quick", action="store_true", help="only the default, all in one library")
    ap.add_argument("--family", default="F0601",
                    help="a family with big people, also clustered alone ('' = skip)")
    ap.add_argument("--lfw", type=Path, default=testdata_dir() / "faces" / "lfw-dev",
                    help="LFW-dev, whose people with >= --big photos join the FIW faces in "
                         "the mixed library")
    ap.add_argument("--big", type=int, default=20)
    ap.add_argument("--mixed-only", action="store_true",
                    help="only F0601 alone and the mixed library")
    args = ap.parse_args(argv)
    if args.data is None or not args.data.is_dir():
        print(f"no FIW faces at {args.data}. {HOW_TO_GET}")
        return 2
    faces = embed_fiw(args.data, args.models, args.cache, args.workers, args.limit)
    print(f"{args.data}: {len(faces.files)} faces of {len(np.unique(faces.person))} people "
          f"in {len(np.unique(faces.family))} families, {len(np.unique(faces.photo))} photos; "
          f"engine {faces.engine}; {int((~faces.found).sum())} faces not detected (noise)\n")
    rows = methods(faces.engine)[:1 if args.quick else None]
    few = methods(faces.engine)[:3] + [m for m in methods(faces.engine) if "either" in m[0]]
    parts: list[tuple[str, FiwFaces, Callable, list]] = []
    if not args.mixed_only:
        parts.append(("All families in one library", faces, run, rows))
    if args.family:
        parts.append((f"Family {args.family} alone", subset(faces, faces.family == args.family),
                      run, few))
    if args.big and args.lfw.is_dir():
        lib = embed_lfw_crops(args.lfw, args.models, args.cache, 1,
                              args.workers).people_with(args.big)
        parts.append((f"Mixed library: all FIW train families + LFW-dev's people with >= "
                      f"{args.big} photos (centre-cropped)", mixed(faces, lib), run, few))
    if not args.quick and not args.mixed_only:
        parts.append(("One library per family", faces, per_family, rows))
    for title, corpus, library, chosen in parts:
        print(f"{title} ({len(corpus.files)} faces):\n\n{HEADER}")
        for name, method in chosen:
            t0 = time.monotonic()
            labels = library(method, corpus)
            print(score(name, labels, corpus, time.monotonic() - t0).line(), flush=True)
            if name.startswith(("**default**", "previous default (before")):
                print(worst(corpus.person, labels, args.big, 4))
                lfw = np.char.startswith(corpus.person.astype(str), "LFW/")
                if lfw.any():
                    print(f"    LFW people only: {summary(corpus.person[lfw], labels[lfw])}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
