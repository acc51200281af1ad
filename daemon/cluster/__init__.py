"""Faces into people: sparse-graph DBSCAN with a chaining guard, stable ids, metrics.

- :mod:`.neighbours` finds close faces with FAISS and builds the sparse eps-graph;
- :mod:`.dbscan` clusters that graph (``cluster_faces``) with per-engine defaults;
- :mod:`.rejoin` merges fragments of one person that an approximate graph left apart;
- :mod:`.constraints` keeps two faces of one photo out of one person;
- :mod:`.quality` keeps poor faces from seeding or bridging people;
- :mod:`.blobs` re-cuts clusters of many look-alike people, sparing a cluster whose
  close pairs stay inside it (:mod:`.cohesion`: one varied person);
- :mod:`.fragments` merges clusters that link mostly to each other (second linkage pass);
- :mod:`.strays` gives a face left out the cluster whose faces list it back as a neighbour;
- :mod:`.edges` walks the eps-graph's edges as cluster-label pairs, in blocks;
- :mod:`.links` obeys the user's answers: must-link / cannot-link with consequences;
- :mod:`.similar` lists, per person, the people they may be the same as;
- :mod:`.stable` keeps person ids stable and assigns new faces by a neighbour vote;
- :mod:`.local` decides a new face the vote left open from its neighbourhood alone;
- :mod:`.metrics` scores a clustering against ground truth (pairwise and BCubed).
"""

from daemon.cluster.constraints import face_context, same_photo_pairs
from daemon.cluster.dbscan import (
    NOISE,
    ClusterParams,
    cluster_faces,
    configured_params,
    default_params,
    with_eps,
)
from daemon.cluster.links import Closure, Links, apply_links, closure
from daemon.cluster.local import LocalDecision, decide_locally
from daemon.cluster.metrics import Scores, bcubed_scores, pairwise_scores
from daemon.cluster.neighbours import IndexParams, eps_graph
from daemon.cluster.similar import LookAlike, nearest_people
from daemon.cluster.stable import FaceIndex, StableResult, assign_new, stable_ids

__all__ = [
    "NOISE",
    "Closure",
    "ClusterParams",
    "FaceIndex",
    "IndexParams",
    "Links",
    "LocalDecision",
    "LookAlike",
    "Scores",
    "StableResult",
    "apply_links",
    "assign_new",
    "bcubed_scores",
    "closure",
    "cluster_faces",
    "configured_params",
    "decide_locally",
    "default_params",
    "eps_graph",
    "face_context",
    "nearest_people",
    "pairwise_scores",
    "same_photo_pairs",
    "stable_ids",
    "with_eps",
]
