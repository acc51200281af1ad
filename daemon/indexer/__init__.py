"""The indexer: one photo in, its faces (boxes, landmarks, embeddings) out.

- :mod:`.image` reads and decodes photos safely (pixel-bomb guard, EXIF orientation);
  :mod:`.heif` decodes HEIC and AVIF, :mod:`.raw` finds a camera RAW's JPEG preview;
- :mod:`.detect` finds faces (YuNet or dlib HOG);
- :mod:`.embed` turns faces into 128-d vectors (SFace or dlib ResNet);
- :mod:`.engine` picks the models and indexes one photo;
- :mod:`.pool` runs that in worker processes.
"""

import cv2

from daemon.indexer.detect import Detection
from daemon.indexer.engine import Engine, EngineError, engine_id_for, index_photo, open_engine
from daemon.indexer.image import load_upright
from daemon.indexer.pool import IndexPool
from daemon.indexer.types import Face, IndexedPhoto, PhotoError

# OpenCV's C++ warnings go straight to stderr and would break the JSON log lines (e.g. a
# harmless "Targets are not supported by the new graph engine" at every model load);
# every failure that matters is reported through our own logs.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

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
