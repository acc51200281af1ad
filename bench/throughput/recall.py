"""YuNet recall against ``detection.max_side``: the hand-boxed Pascal VOC group photos,
placed in a 4000x3000 frame at several sizes, detected through the real decode path."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from bench.throughput.common import CACHE, SHARED, YUNET, H, W, models_dir
from bench.throughput.corpora import matched
from daemon.config import DetectionConfig
from daemon.indexer.detect import YuNetDetector
from daemon.indexer.engine import detect_faces
from daemon.indexer.image import read_photo


def _voc_boxes() -> dict[str, list[tuple[int, int, int, int]]]:
    boxes: dict[str, list[tuple[int, int, int, int]]] = {}
    for xml in ("training.xml", "testing.xml"):
        for image in ET.parse(SHARED / "photos/groups" / xml).getroot().iter("image"):
            boxes[image.get("file")] = [
                (int(b.get("left")), int(b.get("top")), int(b.get("width")), int(b.get("height")))
                for b in image.iter("box")
            ]
    return boxes


def recall_table(max_sides: list[int], detection: DetectionConfig) -> None:
    """YuNet recall on the boxed VOC photos scaled to fill a fraction of a 4000 px frame."""
    detector = YuNetDetector(models_dir() / YUNET)
    boxes = _voc_boxes()
    folder = CACHE / "voc-frames"
    folder.mkdir(parents=True, exist_ok=True)
    fractions = (1.0, 0.5, 0.33, 0.25)
    faces = sum(map(len, boxes.values()))
    print(f"\nYuNet recall on the hand-boxed Pascal VOC faces ({faces} faces in {len(boxes)} "
          "photos), each photo")
    print("scaled to fill a share of a 4000x3000 JPEG; min_face_px=0, "
          f"min_score={detection.min_score:.2f}")
    print(f"{'photo width share':<18} {'face px (median)':>16} "
          + " ".join(f"{'max_side ' + str(m):>14}" for m in max_sides))
    times: dict[int, list[float]] = {m: [] for m in max_sides}
    for frac in fractions:
        hits = dict.fromkeys(max_sides, 0)
        total, sizes = 0, []
        for name, truth in boxes.items():
            img = cv2.imread(str(SHARED / "photos/groups" / name))
            k = W * frac / img.shape[1]
            path = folder / f"{Path(name).stem}-{frac}.jpg"
            if not path.exists():
                canvas = np.full((H, W, 3), 127, np.uint8)
                big = cv2.resize(img, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
                big = big[:H, :W]
                canvas[: big.shape[0], : big.shape[1]] = big
                cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
            scaled = [(x * k, y * k, w * k, h * k) for x, y, w, h in truth]
            scaled = [b for b in scaled if b[1] + b[3] <= H]
            total += len(scaled)
            sizes += [b[2] for b in scaled]
            photo = read_photo(path, detection.max_pixels)
            for m in max_sides:
                det = replace(detection, max_side=m, min_face_px=0)
                t = time.perf_counter()
                _, _, found = detect_faces(photo, detector, det)
                times[m].append(time.perf_counter() - t)
                centres = [(d.box[0] + d.box[2] / 2, d.box[1] + d.box[3] / 2) for d in found]
                hits[m] += matched(scaled, centres)
        print(f"{frac:<18} {float(np.median(sizes)):16.0f} "
              + " ".join(f"{hits[m]}/{total} {hits[m] / total:4.0%}".rjust(14) for m in max_sides))
    print(f"{'decode+detect ms':<35} "
          + " ".join(f"{1000 * float(np.median(times[m])):14.0f}" for m in max_sides))

