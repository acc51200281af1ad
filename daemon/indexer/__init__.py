"""The indexer: one photo in, its faces (boxes, landmarks, embeddings) out.

- :mod:`.image` reads and decodes photos safely (pixel-bomb guard, EXIF orientation);
  :mod:`.heif` decodes HEIC and AVIF, :mod:`.raw` finds a camera RAW's JPEG preview;
- :mod:`.detect` finds faces (YuNet or dlib HOG);
- :mod:`.embed` turns faces into 128-d vectors (SFace or dlib ResNet);
- :mod:`.engine` picks the models and indexes one photo;
- :mod:`.pool` runs that in worker processes.
"""

import importlib
from typing import TYPE_CHECKING

# Names resolve on first use (PEP 562), so a process can start the index workers (which
# only needs daemon.indexer.pool) before it pays for OpenCV and ONNX Runtime itself.
_HOME = {
    "Detection": "detect",
    "Engine": "engine",
    "EngineError": "types",
    "Face": "types",
    "IndexPool": "pool",
    "IndexedPhoto": "types",
    "PhotoError": "types",
    "engine_id_for": "engine",
    "index_photo": "engine",
    "load_upright": "image",
    "open_engine": "engine",
}

if TYPE_CHECKING:
    from daemon.indexer.detect import Detection
    from daemon.indexer.engine import Engine, engine_id_for, index_photo, open_engine
    from daemon.indexer.image import load_upright
    from daemon.indexer.pool import IndexPool
    from daemon.indexer.types import EngineError, Face, IndexedPhoto, PhotoError


def __getattr__(name: str) -> object:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)


__all__ = [
    "Detection",
    "Engine",
    "EngineError",
    "Face",
    "IndexPool",
    "IndexedPhoto",
    "PhotoError",
    "engine_id_for",
    "index_photo",
    "load_upright",
    "open_engine",
]
