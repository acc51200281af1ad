"""YuNet on ONNX Runtime must find what cv2.FaceDetectorYN finds, where it finds it."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from daemon.indexer import onnxpb
from daemon.indexer.detect import Detection, YuNetDetector


@pytest.fixture(scope="module")
def detectors(yunet_file: Path) -> tuple[YuNetDetector, YuNetDetector]:
    pytest.importorskip("onnxruntime")
    ort = YuNetDetector(yunet_file, backend="onnxruntime")
    cv = YuNetDetector(yunet_file, backend="opencv")
    assert (ort.backend, cv.backend) == ("onnxruntime", "opencv")
    return ort, cv


def _key(d: Detection) -> tuple[float, float]:
    return round(d.box[0]), round(d.box[1])


@pytest.mark.parametrize("scale", [1.0, 0.55])
@pytest.mark.parametrize("name", ["obama_and_biden.jpg", "selfie-many-people.jpg",
                                  "bald_guys.jpg", "2008_001322.jpg"])
def test_same_faces_as_opencv(detectors: tuple[YuNetDetector, YuNetDetector],
                              shared_photos: Path, name: str, scale: float) -> None:
    image = cv2.imread(str(shared_photos / "groups" / name))
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ort, cv = detectors
    got, want = sorted(ort.detect(image, 0.6), key=_key), sorted(cv.detect(image, 0.6), key=_key)
    assert len(want) >= 1
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.box, w.box, atol=0.01)
        np.testing.assert_allclose(g.landmarks, w.landmarks, atol=0.01)
        assert abs(g.score - w.score) < 1e-4


def test_no_face_and_size_mismatch(detectors: tuple[YuNetDetector, YuNetDetector]) -> None:
    ort, _ = detectors
    assert ort.detect(np.full((200, 301, 3), 127, np.uint8), 0.8) == []
    ort._net.setInputSize((100, 100))
    with pytest.raises(ValueError, match="input size"):
        ort._net.detect(np.zeros((50, 50, 3), np.uint8))


def test_named_input_dims_edit_only_the_shape(yunet_file: Path) -> None:
    onnx = pytest.importorskip("onnx")
    original = yunet_file.read_bytes()
    edited = onnx.load_from_string(onnxpb.with_named_input_dims(original, {2: "h", 3: "w"}))
    dims = edited.graph.input[0].type.tensor_type.shape.dim
    assert [(d.dim_value, d.dim_param) for d in dims] == [(1, ""), (3, ""), (0, "h"), (0, "w")]
    before = onnx.load_from_string(original)
    assert [n.SerializeToString() for n in edited.graph.node] == [
        n.SerializeToString() for n in before.graph.node
    ]
    with pytest.raises(ValueError, match="not found"):
        onnxpb.with_named_input_dims(original, {2: "h"}, input_index=5)


def test_unknown_backend_is_refused(yunet_file: Path) -> None:
    with pytest.raises(ValueError, match="backend"):
        YuNetDetector(yunet_file, backend="tensorflow")


def test_without_onnxruntime_both_networks_fall_back_to_opencv(
    yunet_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from daemon.indexer import dlibnet
    from daemon.indexer.engine import EngineError, dlib_model_files

    try:
        resnet_file = dlib_model_files()[1]
    except EngineError as e:
        pytest.skip(str(e))

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    assert YuNetDetector(yunet_file).backend == "opencv"
    resnet = dlibnet.open_resnet(resnet_file)
    assert resnet.backend == "opencv"
    with pytest.raises(ImportError):
        YuNetDetector(yunet_file, backend="onnxruntime")
    with pytest.raises(dlibnet.DlibNetError, match="onnxruntime"):
        dlibnet.open_resnet(resnet_file, "onnxruntime")
