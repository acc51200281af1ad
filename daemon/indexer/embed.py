"""Face embedders: OpenCV SFace and dlib's ResNet, both 128-d, both L2-normalised here.

An embedder takes a BGR image and detections in that image's coordinates and returns one
float32 row per detection. Vectors from different embedders are never comparable, which
is why each has an ``id`` stored beside every embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import structlog

from daemon.indexer import dlibnet
from daemon.indexer.detect import Detection, detection_row

log = structlog.get_logger(__name__)


class Embedder(Protocol):
    """What the indexer needs from a face embedder."""

    id: str
    """Names the model and its version, e.g. ``dlib-resnet-v1``."""
    dim: int
    face_px: int
    """Face size (box side, pixels) the aligned chip holds; smaller faces are upscaled."""
    needs_landmarks: bool

    def embed(self, image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
        """float32 ``[len(detections), dim]`` L2-normalised embeddings."""
        ...


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.maximum(norms, 1e-12)).astype(np.float32)


class SFaceEmbedder:
    """OpenCV's SFace (``cv2.FaceRecognizerSF``): aligns on YuNet's five landmarks.

    The model is any ONNX graph taking 1x3x112x112 and giving 1x128; ``FaceRecognizerSF``
    does the alignment (``alignCrop``) and the preprocessing.
    """

    id = "sface-2021dec"
    dim = 128
    face_px = 90
    needs_landmarks = True

    def __init__(self, model: Path) -> None:
        """Load the ONNX model at ``model``; raises ``cv2.error`` if it cannot be loaded."""
        self.model = Path(model)
        self._net = cv2.FaceRecognizerSF.create(str(self.model), "")

    def align(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        """The 112x112 BGR chip SFace sees for one face."""
        return self._net.alignCrop(image, detection_row(detection))

    def embed(self, image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
        """One SFace feature per detection (one network call each: SFace takes batch 1)."""
        if not detections:
            return np.zeros((0, self.dim), np.float32)
        rows = [self._net.feature(self.align(image, d)).reshape(-1) for d in detections]
        vectors = np.stack(rows)
        if vectors.shape[1] != self.dim:
            raise ValueError(f"SFace model {self.model} gives {vectors.shape[1]}-d features")
        return l2_normalise(vectors)


class DlibEmbedder:
    """dlib's ResNet face descriptor, aligned with dlib's 5-point shape predictor.

    Model files come from the ``face_recognition_models`` package. Works with boxes from
    any detector: the shape predictor finds its own landmarks inside each box. The network
    runs on ONNX Runtime or OpenCV (:mod:`.dlibnet`, same weights and descriptors, several
    times faster than the BLAS-less ``dlib-bin``); dlib's own network is the fallback if
    neither can load it.
    """

    id = "dlib-resnet-v1"
    dim = 128
    face_px = 100  # 150 px chip with dlib's default padding of 0.25 on each side
    needs_landmarks = False

    def __init__(self, predictor: Path, recognition: Path, *, backend: str = "auto") -> None:
        """Load the two ``.dat`` files; raises ``RuntimeError`` if dlib cannot read them."""
        import dlib

        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str(predictor))
        self._net: dlibnet.Network | None = None
        self._dlib_net = None
        try:
            # As many threads as OpenCV uses here: 1 in pool workers, its default in-process.
            self._net = dlibnet.open_resnet(recognition, backend, threads=cv2.getNumThreads())
        except dlibnet.DlibNetError as e:
            log.warning("dlib_resnet_fast_path_unavailable", reason=str(e))
            self._dlib_net = dlib.face_recognition_model_v1(str(recognition))
        self.backend = self._net.backend if self._net is not None else "dlib"

    def _shapes(self, rgb: np.ndarray, detections: Sequence[Detection]):  # dlib has no stubs
        shapes = self._dlib.full_object_detections()
        for d in detections:
            x, y, w, h = d.box
            rect = self._dlib.rectangle(round(x), round(y), round(x + w), round(y + h))
            shapes.append(self._predictor(rgb, rect))
        return shapes

    def chips(self, image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
        """The aligned RGB chips ``[n, 150, 150, 3]`` dlib's ``compute_face_descriptor`` cuts
        (5-point landmarks, 150 px, padding 0.25), cut straight from the BGR image.

        No whole-image BGR->RGB conversion (~11 ms on 12 MP): dlib's shape predictor reads
        a colour pixel as (r + g + b) / 3, which ignores the channel order, and the chip is
        cut channel by channel, so swapping the channels of the small chips afterwards gives
        exactly the chips of the RGB image (``tests/test_dlibnet.py`` checks it).
        """
        bgr = np.ascontiguousarray(image)
        shapes = self._shapes(bgr, detections)
        cut = self._dlib.get_face_chips(bgr, shapes, size=dlibnet.CHIP_SIZE, padding=0.25)
        return np.ascontiguousarray(np.stack(cut)[..., ::-1])

    def embed(self, image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
        """All faces of the image in one batched network call."""
        if not detections:
            return np.zeros((0, self.dim), np.float32)
        if self._net is not None:
            vectors = dlibnet.describe(self._net, self.chips(image, detections))
        else:
            rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            shapes = self._shapes(rgb, detections)
            vectors = np.array(self._dlib_net.compute_face_descriptor(rgb, shapes), np.float32)
        return l2_normalise(vectors.reshape(len(detections), self.dim))
