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
    """OpenCV's YuNet CNN detector (``cv2.FaceDetectorYN``); gives five landmarks per face."""

    id = "yunet-2023mar"

    def __init__(self, model: Path, *, nms_threshold: float = 0.3, top_k: int = 5000) -> None:
        """Load the ONNX model at ``model``; raises ``cv2.error`` if it cannot be loaded."""
        self.model = Path(model)
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
