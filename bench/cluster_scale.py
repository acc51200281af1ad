"""Clustering at scale on synthetic faces shaped like real ones.

    .venv/bin/python bench/cluster_scale.py [--sizes 10000,100000,1000000]

1. Loads the LFW-dev embeddings cached by ``bench/cluster_quality.py`` (run it first) and
   prints the within-person and between-person distance distributions.
2. Fits a two-level Gaussian model to them (person centres around the mean face, faces
   around their centre; both covariances measured, then scaled so the synthetic
   distance medians match the real ones) and prints the synthetic distributions beside
   the real ones.
3. For each size, one process draws that many faces over a skewed people-size
   distribution (a few people with thousands of faces, most with a handful, many
   singletons) and saves them; a fresh process memory-maps them (as the service maps its
   vector cache), times a full ``cluster_faces``, takes its peak RSS, scores it, then
   builds a :class:`FaceIndex` over the clustered faces and times ``assign_new`` for
   single new faces.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog

# Debug events (one per split cluster) would drown the tables.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from daemon.cluster import (  # noqa: E402
    FaceIndex,
    assign_new,
    bcubed_scores,
    cluster_faces,
    default_params,
    pairwise_scores,
)

ENGINE = "yunet-2023mar+dlib-resnet-v1"
QUANTILES = (0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass(frozen=True)
class FaceModel:
    """Person centres ~ N(mean, between); faces ~ N(centre, within); then unit length."""

    mean: np.ndarray
    between: np.ndarray
    """Square root (d x d) of the between-person covariance."""
    within: np.ndarray
    """Square root (d x d) of the within-person covariance."""


def _sqrt_psd(cov: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((cov + cov.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))).astype(np.float64)


def fit_face_model(x: np.ndarray, persons: np.ndarray, seed: int = 0) -> FaceModel:
    """Fit the two-level model to real faces and calibrate it on distance medians."""
    x = x.astype(np.float64)
    _, code = np.unique(persons, return_inverse=True)
    counts = np.bincount(code)
    means = np.zeros((len(counts), x.shape[1]))
    np.add.at(means, code, x)
    means /= counts[:, None]
    multi = counts[code] >= 2
    n_of = counts[code][multi]
    resid = (x - means[code])[multi] * np.sqrt(n_of / (n_of - 1))[:, None]
    within = resid.T @ resid / len(resid)
    total = np.cov(x.T)
    model = FaceModel(x.mean(0), _sqrt_psd(total - within), _sqrt_psd(within))
    real = distance_samples(x.astype(np.float32), persons, seed)
    # The unit-length projection shrinks distances; rescale both levels to match medians.
    for _ in range(4):
        sx, sp_ = sample_faces(model, np.full(400, 5), np.random.default_rng(seed))
        syn = distance_samples(sx, sp_, seed)
        fw = np.median(real[0]) / np.median(syn[0])
        fb = np.median(real[1]) / np.median(syn[1])
        model = FaceModel(model.mean, model.between * fb, model.within * fw)
    return model


def people_sizes(n_faces: int, rng: np.random.Generator, alpha: float = 1.3) -> np.ndarray:
    """Faces per person, Pareto-like: ~55% singletons, a few people with thousands."""
    sizes: list[np.ndarray] = []
    total = 0
    cap = max(1, n_faces // 50)
    while total < n_faces:
        s = np.minimum(np.floor(rng.pareto(alpha, 100_000) + 1), cap).astype(np.int64)
        sizes.append(s)
        total += int(s.sum())
    s = np.concatenate(sizes)
    cut = int(np.searchsorted(np.cumsum(s), n_faces))
    s = s[: cut + 1]
    s[-1] -= int(s.sum()) - n_faces
    return s[s > 0]


def sample_faces(model: FaceModel, sizes: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Unit float32 faces for people of the given sizes, and their person index."""
    d = len(model.mean)
    persons = np.repeat(np.arange(len(sizes)), sizes)
    centres = model.mean + rng.standard_normal((len(sizes), d)) @ model.between.T
    out = np.empty((len(persons), d), np.float32)
    step = 100_000
    for a in range(0, len(persons), step):
        p = persons[a:a + step]
        v = centres[p] + rng.standard_normal((len(p), d)) @ model.within.T
        out[a:a + step] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out, persons


def distance_samples(x: np.ndarray, persons: np.ndarray, seed: int = 0,
                     n: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """Random within-person and between-person pair distances."""
    rng = np.random.default_rng(seed)
    order = np.argsort(persons, kind="stable")
    ps = persons[order]
    starts = np.r_[0, np.flatnonzero(ps[1:] != ps[:-1]) + 1]
    sizes = np.diff(np.r_[starts, len(ps)])
    multi = np.flatnonzero(sizes >= 2)
    pairs = sizes[multi] * (sizes[multi] - 1.0)
    g = rng.choice(multi, n, p=pairs / pairs.sum())
    i = starts[g] + (rng.random(n) * sizes[g]).astype(np.int64)
    j = starts[g] + (rng.random(n) * (sizes[g] - 1)).astype(np.int64)
    j = np.where(j >= i, j + 1, j)
    within = np.linalg.norm(x[order[i]] - x[order[j]], axis=1)
    a, b = rng.integers(0, len(x), (2, n))
    keep = persons[a] != persons[b]
    between = np.linalg.norm(x[a[keep]] - x[b[keep]], axis=1)
    return within, between


def quantile_row(name: str, d: np.ndarray) -> str:
    return f"| {name} | " + " | ".join(f"{v:.3f}" for v in np.quantile(d, QUANTILES)) + " |"


def load_lfw(cache: Path) -> tuple[np.ndarray, np.ndarray]:
    files = sorted(cache.glob(f"faces-lfw-dev-{ENGINE}-*.npz"))
    if not files:
        sys.exit(f"no cached LFW-dev embeddings in {cache}: run bench/cluster_quality.py first")
    z = np.load(files[0])
    found = ~np.isnan(z["vectors"][:, 0])
    return z["vectors"][found], z["persons"][found]


def make_faces(n: int, cache: Path, seed: int, new_faces: int, out: Path) -> None:
    """Draw ``n`` clustered faces plus ``new_faces`` to assign later; save them in ``out``.

    Runs in its own process: drawing the faces takes memory the service never needs, and
    it must not count in the clustering's peak RSS.
    """
    x_real, p_real = load_lfw(cache)
    model = fit_face_model(x_real, p_real, seed)
    rng = np.random.default_rng(seed + n)
    sizes = people_sizes(n + new_faces, rng)
    x, persons = sample_faces(model, sizes, rng)
    pick = rng.permutation(len(x))
    new, old = np.sort(pick[:new_faces]), np.sort(pick[new_faces:])
    np.save(out / "old.npy", x[old])
    np.save(out / "new.npy", x[new])
    np.save(out / "persons_old.npy", persons[old])
    np.save(out / "persons_new.npy", persons[new])
    (out / "meta.json").write_text(json.dumps({"largest": int(sizes.max())}))


def run_one(data: Path) -> dict:
    """Cluster the faces saved by :func:`make_faces`, in this process: the measurements.

    The faces are memory-mapped, as the service maps its vector cache, so the peak RSS
    is the clustering's own plus the pages of the vectors it reads.
    """
    x_old = np.load(data / "old.npy", mmap_mode="r")
    persons_old = np.load(data / "persons_old.npy")
    x_new = np.load(data / "new.npy")
    persons_new = np.load(data / "persons_new.npy")
    params = default_params(ENGINE)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    labels = cluster_faces(x_old, params)
    cluster_s = time.monotonic() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pw, b3 = pairwise_scores(persons_old, labels), bcubed_scores(persons_old, labels)
    t0 = time.monotonic()
    index = FaceIndex(x_old, [None if c < 0 else int(c) for c in labels])
    index_s = time.monotonic() - t0
    ms = []
    got = []
    for i in range(len(x_new)):
        t0 = time.perf_counter()
        got.append(assign_new(index, x_new[i:i + 1], params)[0])
        ms.append((time.perf_counter() - t0) * 1000)
    # A vote is right when the chosen cluster's majority person is the face's person.
    # (one pass over all faces: a loop over clusters would be quadratic at 1M faces)
    mask = labels >= 0
    cells, counts = np.unique(
        np.stack([labels[mask], persons_old[mask]], axis=1), axis=0, return_counts=True
    )
    cells = cells[np.lexsort((-counts, cells[:, 0]))]
    first = np.r_[True, cells[1:, 0] != cells[:-1, 0]]
    majority = dict(zip(cells[first, 0].tolist(), cells[first, 1].tolist(), strict=True))
    decided = [(g, p) for g, p in zip(got, persons_new, strict=True) if g is not None]
    right = sum(1 for g, p in decided if majority[g] == p)
    meta = json.loads((data / "meta.json").read_text())
    return {
        "faces": len(x_old), "people": int(len(np.unique(persons_old))),
        "largest": meta["largest"],
        "cluster_s": cluster_s, "clusters": int(labels.max() + 1),
        "noise": int((labels < 0).sum()),
        "pair_f": pw.f, "pair_p": pw.precision, "pair_r": pw.recall,
        "b3_f": b3.f, "b3_p": b3.precision, "b3_r": b3.recall,
        "index_s": index_s, "assign_ms_median": float(np.median(ms)),
        "assign_ms_p95": float(np.quantile(ms, 0.95)),
        "assigned": len(decided), "assigned_right": right, "new_faces": len(x_new),
        "peak_rss_mb_before_cluster": rss0 / 1024, "peak_rss_mb": rss1 / 1024,
    }


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          check=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--cache", type=Path, default=REPO / ".bench-cache")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--new-faces", type=int, default=200)
    ap.add_argument("--make", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.make:
        make_faces(args.make, args.cache, args.seed, args.new_faces, args.one)
        return 0
    if args.one:
        print(json.dumps(run_one(args.one)))
        return 0

    x, persons = load_lfw(args.cache)
    model = fit_face_model(x, persons, args.seed)
    sx, sp_ = sample_faces(model, people_sizes(20_000, np.random.default_rng(1)),
                           np.random.default_rng(2))
    real_w, real_b = distance_samples(x, persons, args.seed)
    syn_w, syn_b = distance_samples(sx, sp_, args.seed)
    print(f"Distances (L2 on unit vectors), LFW-dev {len(x)} faces vs synthetic, quantiles:\n")
    print("| pairs | " + " | ".join(f"q{q:g}" for q in QUANTILES) + " |")
    print("| --- |" + " ---: |" * len(QUANTILES))
    for name, d in (("LFW within-person", real_w), ("synthetic within-person", syn_w),
                    ("LFW between-person", real_b), ("synthetic between-person", syn_b)):
        print(quantile_row(name, d))
    eps = default_params(ENGINE).eps
    print(f"\nShare of between-person pairs closer than eps {eps}: LFW "
          f"{(real_b < eps).mean():.2e}, synthetic {(syn_b < eps).mean():.2e}; "
          f"within-person pairs beyond eps: LFW {(real_w > eps).mean():.3f}, "
          f"synthetic {(syn_w > eps).mean():.3f}\n")

    print("| faces | people | largest | cluster s | peak RSS MB | pair F | B³ F | "
          "index build s | assign ms (median / p95) | votes decided / right |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(dir=args.cache) as tmp:
            out = _run(["--make", str(n), "--one", tmp, "--cache", str(args.cache),
                        "--seed", str(args.seed), "--new-faces", str(args.new_faces)])
            if not out.returncode:
                out = _run(["--one", tmp])
        if out.returncode:
            print(f"| {n} | failed: {out.stderr.strip().splitlines()[-1:]} |")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {r['faces']} | {r['people']} | {r['largest']} | {r['cluster_s']:.1f} | "
              f"{r['peak_rss_mb']:.0f} | {r['pair_f']:.3f} | {r['b3_f']:.3f} | "
              f"{r['index_s']:.1f} | {r['assign_ms_median']:.2f} / {r['assign_ms_p95']:.2f} | "
              f"{r['assigned']}/{r['new_faces']} / {r['assigned_right']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
