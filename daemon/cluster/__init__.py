"""Faces into people: sparse-graph DBSCAN with a chaining guard, stable ids, metrics.

- :mod:`.neighbours` finds close faces with FAISS and builds the sparse eps-graph;
- :mod:`.dbscan` clusters that graph (``cluster_faces``) with per-engine defaults;
- :mod:`.rejoin` merges fragments of one person that an approximate graph left apart;
- :mod:`.identity` keeps person ids stable and assigns new faces by a neighbour vote;
- :mod:`.metrics` scores a clustering against ground truth (pairwise and BCubed).
"""

from daemon.cluster.dbscan import (
    NOISE,
    ClusterParams,
    cluster_faces,
    default_params,
    with_eps,
)
from daemon.cluster.identity import FaceIndex, StableResult, assign_new, stable_ids
from daemon.cluster.metrics import Scores, bcubed_scores, pairwise_scores
from daemon.cluster.neighbours import IndexParams, eps_graph

__all__ = [
    "NOISE",
    "ClusterParams",
    "FaceIndex",
    "IndexParams",
    "Scores",
    "StableResult",
    "assign_new",
    "bcubed_scores",
    "cluster_faces",
    "default_params",
    "eps_graph",
    "pairwise_scores",
    "stable_ids",
    "with_eps",
]
