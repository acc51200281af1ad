"""facecluster: a service that turns folders of photos into per-person albums.

The stages, in the order data flows through them:

- :mod:`daemon.watcher` notices photos arriving, changing and leaving;
- :mod:`daemon.library` decides which files are photos and whether a folder is there;
- :mod:`daemon.indexer` turns one photo into faces (boxes, landmarks, embeddings);
- :mod:`daemon.store` remembers photos, faces, embeddings and people;
- :mod:`daemon.cluster` groups faces into people and keeps their ids stable;
- :mod:`daemon.people` steers by the user's labels.toml: names, merges, exclusions;
- :mod:`daemon.albums` reflects people on disk as album folders, thumbnails and ZIPs;
- :mod:`daemon.web` shows people in a browser to name them.

:mod:`daemon.stages` composes them into one pipeline; :mod:`daemon.cli` drives it by
hand and :mod:`daemon.service` keeps it running.
"""

__version__ = "0.1.0"
