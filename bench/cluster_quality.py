"""Clustering quality on a labelled face folder (``<person>/<photo>``), by default LFW-dev.

    .venv/bin/python bench/cluster_quality.py [--data DIR] [--workers N] [--distractors N]

Runs the real indexer (the offline YuNet + dlib engine unless told otherwise) over every
photo once and caches the embeddings under ``.bench-cache/`` keyed by data folder and
engine id. Each photo is scored by the face nearest its centre (LFW photos are centred
on their person; other faces at the edges are bystanders). Photos with no detected face
are scored as noise, i.e. singletons: they cost recall, never precision.

Prints pairwise and BCubed precision / recall / F for the default settings, for the
face_recognition tutorials' DBSCAN eps 0.5 / min_samples 5, for the alternatives
evaluated, and for the distractor experiment (the real faces plus N synthetic faces of
other people; see ``bench/CLUSTERING.md`` for how they are made and their limits).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import structlog

# Debug events (one per split cluster) would drown the tables.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from daemon.cluster import (  # noqa: E402
    ClusterParams,
    bcubed_scores,
    cluster_faces,
    default_params,
    pairwise_scores,
)
from daemon.config import Config, DetectionConfig, EngineConfig  # noqa: E402
from tests.shared_data import testdata_dir  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from big_people import embed_lfw_crops, summary, worst  # noqa: E402
from cluster_scale import fit_face_model, people_sizes, sample_faces  # noqa: E402

from daemon.cluster.constraints import as_photos, same_photo_pairs  # noqa: E402


@dataclass(frozen=True)
class Embedded:
    """One embedding per photo (NaN row when no face was found) and its person."""

    persons: np.ndarray
    files: np.ndarray
    vectors: np.ndarray
    engine: str

    @property
    def found(self) -> np.ndarray:
        return ~np.isnan(self.vectors[:, 0])


def default_data() -> Path:
    return testdata_dir() / "faces" / "lfw-dev"


def centre_face(indexed) -> np.ndarray | None:
    """The embedding of the face whose box centre is nearest the photo's centre."""
    if not indexed.faces:
        return None
    cx, cy = indexed.width / 2, indexed.height / 2

    def off(face) -> float:
        x, y, w, h = face.box
        return (x + w / 2 - cx) ** 2 + (y + h / 2 - cy) ** 2

    return min(indexed.faces, key=off).embedding


def embed_folder(data: Path, engine_cfg: EngineConfig, workers: int, cache: Path) -> Embedded:
    """Index every photo of ``data`` with the real indexer, or load the cached result."""
    from daemon.indexer import IndexPool, PhotoError, engine_id_for

    engine = engine_id_for(engine_cfg)
    paths = sorted(p for p in data.glob("*/*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    key = hashlib.sha256(f"{data.resolve()}|{engine}|{len(paths)}".encode()).hexdigest()[:16]
    cached = cache / f"faces-{data.name}-{engine}-{key}.npz"
    if cached.is_file():
        z = np.load(cached)
        return Embedded(z["persons"], z["files"], z["vectors"], engine)
    cfg = Config(engine=engine_cfg, detection=DetectionConfig(), workers=workers)
    row = {p: i for i, p in enumerate(paths)}
    vectors = np.full((len(paths), 128), np.nan, np.float32)
    t0 = time.monotonic()
    with IndexPool(cfg) as pool:
        for done, (path, result) in enumerate(pool.imap(paths), 1):
            if isinstance(result, PhotoError):
                print(f"  failed: {path}: {result.reason}", file=sys.stderr)
                continue
            v = centre_face(result)
            if v is not None:
                if vectors.shape[1] != len(v):
                    vectors = np.full((len(paths), len(v)), np.nan, np.float32)
                vectors[row[path]] = v
            if done % 500 == 0:
                print(f"  indexed {done}/{len(paths)} in {time.monotonic() - t0:.0f} s",
                      file=sys.stderr)
    persons = np.array([p.parent.name for p in paths])
    files = np.array([str(p.relative_to(data)) for p in paths])
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(cached, persons=persons, files=files, vectors=vectors)
    return Embedded(persons, files, vectors, engine)


def score_row(name: str, truth: np.ndarray, found: np.ndarray, vectors: np.ndarray,
              params: ClusterParams) -> str:
    """One table row: cluster the found faces, score all photos (missing = noise)."""
    t0 = time.monotonic()
    pred = np.full(len(truth), -1, np.int64)
    pred[found] = cluster_faces(vectors, params)
    return table_row(name, truth, pred, time.monotonic() - t0)


def table_row(name: str, truth: np.ndarray, pred: np.ndarray, seconds: float) -> str:
    """One table row: the scores of ``pred`` against ``truth`` and the time it took."""
    pw, b3 = pairwise_scores(truth, pred), bcubed_scores(truth, pred)
    return (f"| {name} | {pw.precision:.3f} | {pw.recall:.3f} | **{pw.f:.3f}** | "
            f"{b3.precision:.3f} | {b3.recall:.3f} | **{b3.f:.3f}** | {seconds:.1f} |")


HEADER = ("| settings | pair P | pair R | pair F | B³ P | B³ R | B³ F | s |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")


def alternatives(base: ClusterParams) -> list[tuple[str, ClusterParams]]:
    """The settings compared against the default."""
    # The alternatives are the methods as first measured: without the family rules
    # (blob re-cut; the poor-face rule needs scores, which this cache does not hold).
    plain = replace(base, guard="none", rejoin_eps=0.0, blob_size=0, blob_large=0,
                    blob_agree=0.0)
    split = replace(base, rejoin_eps=0.0, blob_size=0, blob_large=0, blob_agree=0.0)
    rows = [("**default**: " + describe(base), base),
            ("default without the strays (the previous default)", replace(base, stray_k=0)),
            ("before issue 19 (blob spread 0.34, no cohesion, no second pass, no strays)",
             replace(base, blob_spread=0.34, blob_whole=0.0, merge_eps=0.0, stray_k=0)),
            ("DBSCAN eps 0.5, min_samples 5 (tutorials)",
             replace(plain, eps=0.5, min_samples=5))]
    for eps in (0.28, 0.30, 0.31, 0.32, 0.34):
        rows.append((f"plain DBSCAN eps {eps}, min_samples 2", replace(plain, eps=eps)))
    rows[4:4] = [("default without cohesion", replace(base, blob_whole=0.0)),
                 ("default without the second linkage pass", replace(base, merge_eps=0.0))]
    rows.append(("plain DBSCAN eps 0.36, min_samples 5", replace(plain, eps=0.36, min_samples=5)))
    for eps, cut in ((0.36, 0.34), (0.36, 0.36), (0.40, 0.35), (0.40, 0.36)):
        rows.append((f"DBSCAN eps {eps} + average-linkage split at {cut}",
                     replace(split, eps=eps, split_eps=cut, split_limit=6000)))
    rows.append(("DBSCAN eps 0.36 + split 0.36, min_samples 3",
                 replace(split, eps=0.36, split_eps=0.36, min_samples=3)))
    return rows


def describe(p: ClusterParams) -> str:
    rejoin = f", re-join at {p.rejoin_eps}" if p.rejoin_eps else ""
    return (f"eps {p.eps}, min_samples {p.min_samples}, guard {p.guard}"
            f" at {p.split_eps or p.eps}{rejoin}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--models", type=Path, default=None,
                    help="folder holding the YuNet model (default: beside --data's faces/)")
    ap.add_argument("--embedder", default="dlib", choices=["dlib", "sface", "auto"])
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=REPO / ".bench-cache")
    ap.add_argument("--distractors", type=int, default=50_000)
    ap.add_argument("--quick", action="store_true",
                    help="only the default, the previous defaults and the tutorial")
    ap.add_argument("--big", type=int, default=20,
                    help="also scan the photos centre-cropped, as a user's folder, and "
                         "report how the people with at least this many photos are "
                         "spread over albums (0 = skip)")
    ap.add_argument("--only-big", action="store_true", help="only that part")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"no data at {args.data} (set FACECLUSTER_TESTDATA or pass --data)")
        return 2
    models = args.models or args.data.parent.parent / "models"
    engine_cfg = EngineConfig(detector="yunet", embedder=args.embedder, models_dir=models)
    if args.big:
        big_people_part(args, models)
        if args.only_big:
            return 0
    emb = embed_folder(args.data, engine_cfg, args.workers, args.cache)
    found = emb.found
    x = emb.vectors[found]
    people = len(set(emb.persons.tolist()))
    print(f"{args.data}: {len(emb.persons)} photos of {people} people, engine {emb.engine}; "
          f"a face in {found.sum()} photos ({(~found).sum()} scored as noise)\n")
    base = default_params(emb.engine)
    rows = alternatives(base)[:4] if args.quick else alternatives(base)
    print(HEADER)
    for name, params in rows:
        print(score_row(name, emb.persons, found, x, params), flush=True)
    pred = np.full(len(emb.persons), -1, np.int64)
    pred[found] = cluster_faces(x, base)
    print(f"\nDefault, people with many photos: {summary(emb.persons, pred)}")
    print(worst(emb.persons, pred, 20, 3))

    if args.distractors:
        rng = np.random.default_rng(0)
        model = fit_face_model(x, emb.persons[found])
        extra, who = sample_faces(model, people_sizes(args.distractors, rng), rng)
        truth = np.r_[emb.persons, np.array([f"~distractor{i}" for i in who])]
        found_all = np.r_[found, np.ones(len(extra), bool)]
        x_all = np.r_[x, extra]
        print(f"\nWith {len(extra)} synthetic distractor faces (scores on all faces, "
              f"then on the real ones only):\n")
        print(HEADER)
        distractor_rows = [
            *rows[:3],
            ("default without the re-join", replace(base, rejoin_eps=0.0)),
            ("default, exact neighbour search (slow beyond 20k faces)",
             replace(base, index=replace(base.index, exact_limit=len(x_all)))),
        ]
        for name, params in distractor_rows:
            pred = np.full(len(truth), -1, np.int64)
            t0 = time.monotonic()
            pred[found_all] = cluster_faces(x_all, params)
            seconds = time.monotonic() - t0
            real = np.arange(len(truth)) < len(emb.persons)
            for label, m in (("all", slice(None)), ("real only", real)):
                print(table_row(f"{name} ({label})", truth[m], pred[m], seconds))
    return 0


BIG_HEADER = ("| settings | pair P | pair R | pair F | B³ F | same-photo pairs | "
              "big people (share of faces in their largest album) | s |\n"
              "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")


def big_people_part(args, models: Path) -> None:
    """Every photo centre-cropped and scanned together, as a user's library
    (``bench/big_people.py``): all faces, with photo ids and detector scores; how the
    people with >= ``args.big`` photos are spread over albums."""
    lib = embed_lfw_crops(args.data, models, args.cache, 1, args.workers)
    found = lib.found
    print(f"{args.data.name}, every photo centre-cropped to 170 px, scanned together: "
          f"{lib.photos_total} photos, {int(found.sum())} faces found; big people: "
          f">= 20 and >= 40 photos\n")
    print(BIG_HEADER)
    base = default_params(lib.engine)
    for name, params in big_rows(base):
        print(big_row(name, lib, params), flush=True)
    pred = np.full(len(lib.person), -1, np.int64)
    pred[found] = cluster_faces(lib.vectors[found], base,
                                photos=as_photos(lib.photo[found], int(found.sum())),
                                scores=lib.score[found])
    print(worst(lib.person, pred, args.big))
    print()
    if args.only_big:
        return
    for sub in (args.big, 40):
        part = lib.people_with(sub)
        print(f"Only the people with >= {sub} photos ({len(part.person)} faces):\n")
        print(BIG_HEADER)
        print(big_row("**default**", part, default_params(lib.engine)))
        print()


def big_rows(base: ClusterParams) -> list[tuple[str, ClusterParams]]:
    previous = replace(base, blob_spread=0.34, blob_whole=0.0, merge_eps=0.0, stray_k=0)
    return [("**default**", base),
            ("default without the strays (the previous default)", replace(base, stray_k=0)),
            ("before issue 19", previous),
            ("default without cohesion", replace(base, blob_whole=0.0)),
            ("default without the second linkage pass", replace(base, merge_eps=0.0)),
            ("stress: both blob spread tests at 0.30 (they fire on most big people)",
             replace(base, blob_spread=0.30, blob_large_spread=0.30)),
            ("stress, before issue 19", replace(previous, blob_spread=0.30,
                                                 blob_large_spread=0.30)),
            ("default without the blob tests", replace(base, blob_size=0, blob_large=0,
                                                        blob_agree=0.0))]


def big_row(name: str, lib, params: ClusterParams) -> str:
    found = lib.found
    t0 = time.monotonic()
    pred = np.full(len(lib.person), -1, np.int64)
    photos = as_photos(lib.photo, len(lib.photo))
    pred[found] = cluster_faces(lib.vectors[found], params, photos=photos[found],
                                scores=lib.score[found])
    seconds = time.monotonic() - t0
    pw, b3 = pairwise_scores(lib.person, pred), bcubed_scores(lib.person, pred)
    return (f"| {name} | {pw.precision:.3f} | {pw.recall:.3f} | **{pw.f:.3f}** | "
            f"**{b3.f:.3f}** | {same_photo_pairs(pred, photos, lib.person)} | "
            f"{summary(lib.person, pred)} | {seconds:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
