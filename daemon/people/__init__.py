"""Steer: who is who, as the user says it in ``labels.toml``.

- :mod:`.labels` reads labels.toml (names, merges, hidden people, exclusions);
- :mod:`.naming` is its one editor (layout kept byte for byte), behind the CLI and the page;
- :mod:`.roster` each person's own faces, photos and sample, as ``facecluster people`` shows;
- identity — names that stay on the right human through re-clusterings, ``rebuild``, a
  deleted store and an engine change — lives in three parts: its rules in
  :mod:`.anchors`, its file in :mod:`daemon.store.anchors`, and its use by the pipeline
  in :mod:`.identity`.
"""
