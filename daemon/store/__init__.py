"""Persistent state: SQLite metadata (the truth) plus memory-mapped vector caches."""

from daemon.store.db import (
    FaceRecord,
    PersonRecord,
    PhotoNotFoundError,
    PhotoRecord,
    Store,
    StoreCounts,
    StoreError,
)

__all__ = [
    "FaceRecord",
    "PersonRecord",
    "PhotoNotFoundError",
    "PhotoRecord",
    "Store",
    "StoreCounts",
    "StoreError",
]
