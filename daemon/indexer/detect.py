"""Face detectors: OpenCV YuNet (the default) and dlib's HOG (the fully offline fallback).

A detector takes a BGR image and returns :class:`Detection` objects in that image's
pixel coordinates; the caller scales them to the photo's full resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import structlog

from daemon.indexer import onnxpb

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Detection:
    """One face found by a detector, in the coordinates of the image it ran on."""

    box: tuple[float, float, float, float]
    """x, y, width, height."""
    landmarks: tuple[tuple[float, float], ...]
    """YuNet's five points (right eye, left eye, nose tip, right and left mouth corner) or ()."""
    score: float
    """Confidence 0..1."""

    def scaled(self, fx: float, fy: float) -> Detection:
        """The same detection in an image ``fx`` times wider and ``fy`` times taller."""
        x, y, w, h = self.box
        return Detection(
            (x * fx, y * fy, w * fx, h * fy),
            tuple((px * fx, py * fy) for px, py in self.landmarks),
            self.score,
        )

    def clipped(self, width: int, height: int) -> Detection:
        """The box cut to the image bounds (landmarks kept as they are)."""
        x, y, w, h = self.box
        x0, y0 = max(0.0, x), max(0.0, y)
        x1, y1 = min(float(width), x + w), min(float(height), y + h)
        return Detection((x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0)), self.landmarks, self.score)


class Detector(Protocol):
    """What the indexer needs from a face detector."""

    id: str
    """Names the detector and its model version, e.g. ``yunet-2023mar``."""

    def detect(self, image: np.ndarray, min_score: float) -> list[Detection]:
        """Faces in a BGR uint8 image scoring at least ``min_score`` (where scores apply)."""
        ...


class YuNetDetector:
    """OpenCV's YuNet CNN detector; gives five landmarks per face.

    The network runs on ONNX Runtime when it is installed (~30% less CPU than OpenCV's DNN
    here), with ``cv2.FaceDetectorYN``'s pre- and post-processing redone in NumPy
    (:class:`OrtYuNet`); else on ``cv2.FaceDetectorYN`` itself. Both give the same faces
    (``tests/test_yunet_ort.py``).
    """

    id = "yunet-2023mar"

    def __init__(self, model: Path, *, nms_threshold: float = 0.3, top_k: int = 5000,
                 backend: str = "auto") -> None:
        """Load the ONNX model at ``model``; raises ``cv2.error`` if it cannot be loaded.

        ``backend``: "auto" (ONNX Runtime if installed, else OpenCV), "onnxruntime", "opencv".
        """
        self.model = Path(model)
        self._net: OrtYuNet | cv2.FaceDetectorYN
        if backend not in ("auto", "onnxruntime", "opencv"):
            raise ValueError(f"unknown YuNet backend {backend!r}")
        self.backend = "opencv"
        if backend != "opencv":
            try:
                self._net = OrtYuNet(self.model, nms_threshold, top_k)
                self.backend = "onnxruntime"
                return
            except (ImportError, RuntimeError, ValueError) as e:
                if backend == "onnxruntime":
                    raise
                log.warning("yunet_onnxruntime_unavailable", reason=str(e))
        self._net = cv2.FaceDetectorYN.create(
            str(self.model), "", (320, 320), 0.5, nms_threshold, top_k
        )

    def detect(self, image: np.ndarray, min_score: float) -> list[Detection]:
        """Run YuNet on the whole image at its size (the caller keeps it small)."""
        height, width = image.shape[:2]
        self._net.setInputSize((width, height))
        self._net.setScoreThreshold(float(min_score))
        _, rows = self._net.detect(image)
        if rows is None:
            return []
        # YuNet compares in float32, so a score a hair below ``min_score`` can pass it.
        found = (_row_detection(r) for r in rows)
        return [d for d in found if d.score >= min_score]


class OrtYuNet:
    """``cv2.FaceDetectorYN`` (OpenCV's objdetect/face_detect.cpp) with the network on ONNX
    Runtime: the same padding to a multiple of 32, the same decoding of the three stride
    heads and the same NMS, so it answers ``setInputSize``/``setScoreThreshold``/``detect``
    alike."""

    STRIDES = (8, 16, 32)

    def __init__(self, model: Path, nms_threshold: float, top_k: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Parallelism comes from the worker processes; as many threads as OpenCV uses here.
        options.intra_op_num_threads = max(1, cv2.getNumThreads())
        options.inter_op_num_threads = 1
        # Idle pool threads spinning cost a one-photo scan ~0.2 s CPU (in-process, 2 threads).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # the file's fixed output sizes differ from ours: fine
        graph = onnxpb.with_named_input_dims(Path(model).read_bytes(), {2: "h", 3: "w"})
        try:
            self._session = ort.InferenceSession(
                graph, options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # ORT raises its own exception types, not a common base
            raise RuntimeError(f"ONNX Runtime cannot load {model}: {e}") from e
        self._input = self._session.get_inputs()[0].name
        self._outputs = [f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps")
                         for s in self.STRIDES]
        self.nms_threshold, self.top_k = nms_threshold, top_k
        self.score_threshold = 0.5
        self.size = (320, 320)

    def setInputSize(self, size: tuple[int, int]) -> None:  # noqa: N802 - cv2's name
        self.size = (int(size[0]), int(size[1]))

    def setScoreThreshold(self, score: float) -> None:  # noqa: N802 - cv2's name
        self.score_threshold = float(score)

    def detect(self, image: np.ndarray) -> tuple[int, np.ndarray | None]:
        """(1, float32 rows of 15 or None), as ``cv2.FaceDetectorYN.detect``."""
        height, width = image.shape[:2]
        if (width, height) != self.size:
            raise ValueError(f"image is {width}x{height}, input size set to {self.size}")
        pad_w, pad_h = (width - 1) // 32 * 32 + 32, (height - 1) // 32 * 32 + 32
        blob = np.zeros((1, 3, pad_h, pad_w), np.float32)
        blob[0, :, :height, :width] = image.transpose(2, 0, 1)
        out = dict(zip(self._outputs, self._session.run(self._outputs, {self._input: blob}),
                       strict=True))
        rows = [self._decode(out, s, pad_w // s) for s in self.STRIDES]
        faces = np.concatenate(rows)
        if len(faces) > 1:
            boxes = [tuple(int(v) for v in f[:4]) for f in faces]
            keep = cv2.dnn.NMSBoxes(boxes, faces[:, 14].tolist(), self.score_threshold,
                                    self.nms_threshold, top_k=self.top_k)
            faces = faces[np.asarray(keep, np.int64).reshape(-1)]
        return 1, (faces if len(faces) else None)

    def _decode(self, out: dict[str, np.ndarray], stride: int, cols: int) -> np.ndarray:
        """The faces of one stride head scoring at least the threshold, as rows of 15."""
        cls = np.clip(out[f"cls_{stride}"].reshape(-1), 0, 1)
        obj = np.clip(out[f"obj_{stride}"].reshape(-1), 0, 1)
        score = np.sqrt(cls * obj)
        idx = np.flatnonzero(score >= np.float32(self.score_threshold))
        r = (idx // cols).astype(np.float32)[:, None]
        c = (idx % cols).astype(np.float32)[:, None]
        bbox = out[f"bbox_{stride}"].reshape(-1, 4)[idx]
        kps = out[f"kps_{stride}"].reshape(-1, 10)[idx]
        s = np.float32(stride)
        w = np.exp(bbox[:, 2:3]) * s
        h = np.exp(bbox[:, 3:4]) * s
        x1 = (c + bbox[:, 0:1]) * s - w / 2
        y1 = (r + bbox[:, 1:2]) * s - h / 2
        points = np.empty_like(kps)
        points[:, 0::2] = (kps[:, 0::2] + c) * s
        points[:, 1::2] = (kps[:, 1::2] + r) * s
        return np.hstack([x1, y1, w, h, points, score[idx, None]]).astype(np.float32)


def _row_detection(row: np.ndarray) -> Detection:
    x, y, w, h = (float(v) for v in row[:4])
    points = tuple((float(row[4 + 2 * i]), float(row[5 + 2 * i])) for i in range(5))
    return Detection((x, y, w, h), points, float(row[14]))


def detection_row(d: Detection) -> np.ndarray:
    """The detection as YuNet's 1x15 float32 row (what ``FaceRecognizerSF.alignCrop`` takes)."""
    if len(d.landmarks) != 5:
        raise ValueError("a YuNet row needs five landmarks")
    values = [*d.box, *(c for p in d.landmarks for c in p), d.score]
    return np.asarray(values, dtype=np.float32).reshape(1, 15)


class DlibHogDetector:
    """dlib's HOG + linear SVM frontal face detector: no model file, no landmarks.

    HOG scores are SVM margins, not probabilities, so ``min_score`` does not apply: dlib's
    own threshold (margin 0) decides, and the reported score is the logistic of the margin
    (0.5 at the threshold) only to keep the 0..1 range.
    """

    id = "dlib-hog"

    def __init__(self) -> None:
        import dlib

        self._net = dlib.get_frontal_face_detector()

    def detect(self, image: np.ndarray, min_score: float) -> list[Detection]:
        """Run HOG; images up to 1000 px are upsampled once so ~40 px faces are found."""
        del min_score  # see the class docstring
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        upsample = 1 if max(image.shape[:2]) <= 1000 else 0
        rects, scores, _ = self._net.run(rgb, upsample, 0.0)
        found = []
        for r, s in zip(rects, scores, strict=True):
            box = (float(r.left()), float(r.top()), float(r.width()), float(r.height()))
            found.append(Detection(box, (), 1.0 / (1.0 + math.exp(-float(s)))))
        return found
