"""facecluster: a service that turns folders of photos into per-person albums.

The stages, in the order data flows through them:

- :mod:`daemon.watcher` notices photos arriving, changing and leaving;
- :mod:`daemon.indexer` turns one photo into faces (boxes, landmarks, embeddings);
- :mod:`daemon.store` remembers photos, faces, embeddings and people;
- :mod:`daemon.cluster` groups faces into people and keeps their ids stable;
- :mod:`daemon.labels` reads the user's names, merges and exclusions;
- :mod:`daemon.albums` reflects people on disk as album folders, thumbnails and ZIPs.

:mod:`daemon.scan` drives them once; :mod:`daemon.service` keeps them running.
"""

__version__ = "0.1.0"
