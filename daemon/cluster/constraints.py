"""Two faces of one photo are two people: cannot-link constraints for the clustering.

Relatives are close in the embedding space (a parent and a child, two siblings), but a
group shot says for certain that its faces belong to different people. Every decision
that puts faces together uses that:

- :func:`constrained_average_linkage` is the chaining guard's average linkage where two
  groups holding faces of one photo never merge. A merged group inherits the
  constraints of both parts, so they propagate: once two siblings' groups are kept
  apart by one photo, their other photos follow whichever group they are closer to;
- :func:`conflict_keys` lists the cluster pairs that share a photo, for the re-join;
- :func:`enforce` is the last safety net: a cluster never keeps two faces of one photo
  (the one nearest the cluster's centre stays, the others become noise);
- :func:`same_photo_pairs` counts what is left (0 is the goal; the bench reports it).

Photo ids are integers; a negative id means "no photo known" and constrains nothing.
"""

from __future__ import annotations

import numpy as np

NOISE = -1


def as_photos(photos, n: int) -> np.ndarray | None:
    """The photo ids as int64 codes (None stays None); raises ValueError on a bad length."""
    if photos is None:
        return None
    p = np.asarray(photos)
    if p.shape != (n,):
        raise ValueError(f"{n} faces but photo ids of shape {p.shape}")
    if p.dtype.kind in "iu":
        return p.astype(np.int64)
    codes = np.unique(p, return_inverse=True)[1].astype(np.int64)
    return codes.ravel()


def shared_photo_pairs(photos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i < j) of face positions that show the same photo."""
    known = np.flatnonzero(photos >= 0)
    order = known[np.argsort(photos[known], kind="stable")]
    ph = photos[order]
    a_parts, b_parts = [], []
    offset = 1
    # A photo holds few faces, so walking offsets within the sorted run is cheap.
    while offset < len(order):
        same = ph[offset:] == ph[:-offset]
        if not same.any():
            break
        i, j = order[:-offset][same], order[offset:][same]
        a_parts.append(np.minimum(i, j))
        b_parts.append(np.maximum(i, j))
        offset += 1
    if not a_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(a_parts), np.concatenate(b_parts)


def conflict_keys(groups: np.ndarray, photos: np.ndarray | None, k: int) -> np.ndarray:
    """Sorted unique keys ``lo * k + hi`` of group pairs that hold faces of one photo."""
    if photos is None:
        return np.zeros(0, np.int64)
    a, b = shared_photo_pairs(photos)
    ga, gb = groups[a], groups[b]
    ok = (ga >= 0) & (gb >= 0) & (ga != gb)
    lo, hi = np.minimum(ga[ok], gb[ok]), np.maximum(ga[ok], gb[ok])
    return np.unique(lo.astype(np.int64) * k + hi)


def same_photo_pairs(labels: np.ndarray, photos: np.ndarray | None,
                     persons: np.ndarray | None = None) -> int:
    """How many pairs of faces of one photo share a cluster (noise never counts).

    With ``persons`` (ground truth), pairs of the same true person are not counted:
    datasets list a few people twice in one photo, and that is not an error.
    """
    if photos is None:
        return 0
    a, b = shared_photo_pairs(np.asarray(photos))
    labels = np.asarray(labels)
    bad = (labels[a] == labels[b]) & (labels[a] != NOISE)
    if persons is not None:
        persons = np.asarray(persons)
        bad &= persons[a] != persons[b]
    return int(bad.sum())


def enforce(labels: np.ndarray, photos: np.ndarray | None, vectors: np.ndarray,
            keep: np.ndarray | None = None) -> np.ndarray:
    """Labels where no cluster holds two faces of one photo.

    Of the faces of one photo in one cluster, the one nearest the cluster's mean stays
    (or, with ``keep``, a face marked there first); the others become noise. Only the
    clusters that break the rule are touched.
    """
    out = np.asarray(labels, dtype=np.int64).copy()
    if photos is None:
        return out
    a, b = shared_photo_pairs(photos)
    clash = (out[a] == out[b]) & (out[a] != NOISE)
    if not clash.any():
        return out
    faces = np.unique(np.r_[a[clash], b[clash]])
    centre: dict[int, np.ndarray] = {}
    for c in np.unique(out[faces]):
        m = vectors[out == c].astype(np.float64).mean(axis=0)
        centre[int(c)] = m
    dist = np.array([np.linalg.norm(vectors[f] - centre[int(out[f])]) for f in faces])
    if keep is not None:
        dist = dist - 10.0 * keep[faces]  # marked faces win
    order = np.lexsort((faces, dist, out[faces], photos[faces]))
    seen: set[tuple[int, int]] = set()
    for f in faces[order]:
        key = (int(out[f]), int(photos[f]))
        if key in seen:
            out[f] = NOISE
        else:
            seen.add(key)
    return out


# Over 60 lines: the nearest-neighbour chain is one loop over one shared distance matrix.
def constrained_average_linkage(vectors: np.ndarray, cut: float,
                                photos: np.ndarray | None = None) -> np.ndarray:
    """Average-linkage (UPGMA) clusters cut at ``cut``, never merging two groups that
    hold faces of one photo; labels 0..k-1 in order of first face.

    Nearest-neighbour chain on the full distance matrix (O(m^2) memory: callers bound
    ``m``). A cannot-link is an infinite distance. Lance-Williams keeps it infinite in
    every merge that contains either face, and the linkage stays reducible (a merged
    group is never nearer to a third than the nearer of its parts), so the chain still
    gives the same clusters as merging the globally closest pair each time. Without
    photos it equals scipy's ``linkage(method="average")`` cut at ``cut``.
    """
    m = len(vectors)
    if m == 0:
        return np.zeros(0, np.int64)
    # Imported here: ~0.2 s of start-up that a scan with no cluster to split never needs.
    from scipy.spatial.distance import pdist, squareform

    d = squareform(pdist(np.asarray(vectors, dtype=np.float64)))
    np.fill_diagonal(d, np.inf)
    if photos is not None:
        a, b = shared_photo_pairs(np.asarray(photos))
        d[a, b] = np.inf
        d[b, a] = np.inf
    size = np.ones(m)
    parent = np.arange(m)
    open_ = np.ones(m, bool)  # still able to merge below the cut
    chain: list[int] = []
    while True:
        if not chain:
            rest = np.flatnonzero(open_)
            if len(rest) == 0:
                break
            chain.append(int(rest[0]))
        a = chain[-1]
        row = d[a]
        b = int(np.argmin(row))
        if row[b] > cut:
            open_[a] = False  # nothing within the cut, now or after any later merge
            chain.pop()
            continue
        if len(chain) > 1 and row[chain[-2]] <= row[b]:
            b = chain[-2]
        if len(chain) > 1 and b == chain[-2]:
            chain.pop()
            chain.pop()
            merged = (size[a] * d[a] + size[b] * d[b]) / (size[a] + size[b])
            d[a] = merged
            d[:, a] = merged
            d[a, a] = np.inf
            d[b] = np.inf
            d[:, b] = np.inf
            size[a] += size[b]
            parent[b] = a
            open_[b] = False
        else:
            chain.append(b)
    while True:
        root = parent[parent]
        if np.array_equal(root, parent):
            break
        parent = root
    _, first, inv = np.unique(parent, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inv.ravel()]


def face_context(ids, records) -> tuple[np.ndarray, np.ndarray]:
    """(photo ids, detector scores) aligned with ``ids``, from face records (objects with
    ``id``, ``photo_id`` and ``score``, e.g. the store's ``FaceRecord``). A face with no
    record gets photo -1 (no constraint) and score 1 (not treated as a poor face)."""
    by_id = {int(r.id): r for r in records}
    photos = np.full(len(ids), -1, np.int64)
    scores = np.ones(len(ids), np.float64)
    for k, i in enumerate(np.asarray(ids).tolist()):
        r = by_id.get(int(i))
        if r is not None:
            photos[k] = int(r.photo_id)
            scores[k] = float(r.score)
    return photos, scores
