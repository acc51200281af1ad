"""Indexing on more machines: Dask workers do the face work, the service stays the one writer.

Nothing here imports Dask until ``[cluster]`` asks for it (:func:`make_indexer`), so a
service without the table never pays for it, and Dask is an optional extra
(``pip install .[cluster]``).

- :mod:`.settings` checks ``[cluster]`` and the addresses (no Dask);
- :mod:`.fingerprint` names an engine by its id and its model files' hashes (no Dask);
- :mod:`.certs` makes a CA and certificates for the cluster's TLS;
- :mod:`.task` is the worker side: the plugin that loads the engine once, the task;
- :mod:`.indexer` is the service side: the pool's interface over a Dask client;
- :mod:`.worker` runs ``facecluster worker``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daemon.config import Config
    from daemon.indexer.pool import IndexPool
    from daemon.remote.indexer import ClusterIndexer


def make_indexer(cfg: Config) -> IndexPool | ClusterIndexer:
    """The indexer the configuration asks for: the local pool, or the cluster with
    ``[cluster] scheduler`` set (which falls back to the local pool on its own)."""
    if not cfg.cluster.scheduler:
        from daemon.indexer.pool import IndexPool

        return IndexPool(cfg)
    from daemon.remote.indexer import ClusterIndexer

    return ClusterIndexer(cfg)
