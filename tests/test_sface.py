"""The SFace embedder's real loading and plumbing, against a small stand-in ONNX graph.

The real SFace model cannot be downloaded here, so the test builds a graph with SFace's
shapes (1x3x112x112 float in, 1x128 out): global average pool, then a fixed linear map.
Its output is easy to compute by hand from the aligned chip, so the test checks that the
embedder aligns with ``alignCrop`` on YuNet's landmarks, feeds the chip to the network in
OpenCV's RGB order, and L2-normalises the result.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from daemon.config import DetectionConfig, EngineConfig  # noqa: E402
from daemon.indexer import Detection, EngineError, index_photo, open_engine  # noqa: E402
from daemon.indexer import engine as engine_mod  # noqa: E402
from daemon.indexer.embed import SFaceEmbedder  # noqa: E402

SFACE_NAME = "face_recognition_sface_2021dec.onnx"


def weights(out_dim: int = 128) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.normal(size=(3, out_dim)).astype(np.float32), rng.normal(size=out_dim).astype(
        np.float32
    )


def build_model(path: Path, out_dim: int = 128) -> Path:
    """A graph with SFace's input and output: GlobalAveragePool -> Flatten -> Gemm."""
    w, b = weights(out_dim)
    nodes = [
        helper.make_node("GlobalAveragePool", ["data"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["fc1"]),
    ]
    graph = helper.make_graph(
        nodes,
        "sface_stand_in",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, out_dim])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def expected_feature(chip_bgr: np.ndarray) -> np.ndarray:
    """What the stand-in computes: per-channel means in RGB order, the linear map, unit norm."""
    w, b = weights()
    means = chip_bgr.reshape(-1, 3).astype(np.float64).mean(axis=0)[::-1]
    v = means @ w + b
    return (v / np.linalg.norm(v)).astype(np.float32)


def face_image() -> tuple[np.ndarray, Detection]:
    """A synthetic image with a colour gradient and a plausible set of five landmarks."""
    h, w = 240, 320
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.dstack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)]).astype(np.uint8)
    det = Detection(
        box=(110.0, 60.0, 100.0, 120.0),
        landmarks=((140.0, 105.0), (180.0, 105.0), (160.0, 130.0), (145.0, 155.0), (175.0, 155.0)),
        score=0.99,
    )
    return img, det


@pytest.fixture()
def sface_file(tmp_path: Path) -> Path:
    return build_model(tmp_path / SFACE_NAME)


def test_sface_aligns_feeds_and_normalises(sface_file: Path) -> None:
    emb = SFaceEmbedder(sface_file)
    img, det = face_image()
    chip = emb.align(img, det)
    assert chip.shape == (112, 112, 3)
    vectors = emb.embed(img, [det, det])
    assert vectors.shape == (2, 128) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert np.allclose(vectors[0], expected_feature(chip), atol=1e-4)
    assert emb.embed(img, []).shape == (0, 128)


def test_sface_follows_the_landmarks(sface_file: Path) -> None:
    # Landmarks elsewhere in the gradient give a different chip, hence a different vector.
    emb = SFaceEmbedder(sface_file)
    img, det = face_image()
    moved = Detection(det.box, tuple((x + 80, y + 40) for x, y in det.landmarks), det.score)
    a, b = emb.embed(img, [det, moved])
    assert not np.allclose(a, b, atol=1e-3)
    assert np.allclose(b, expected_feature(emb.align(img, moved)), atol=1e-4)


def test_sface_without_landmarks_is_refused(sface_file: Path) -> None:
    emb = SFaceEmbedder(sface_file)
    img, det = face_image()
    with pytest.raises(ValueError):
        emb.embed(img, [Detection(det.box, (), det.score)])


def test_a_model_with_the_wrong_output_size_is_refused(tmp_path: Path) -> None:
    emb = SFaceEmbedder(build_model(tmp_path / "small.onnx", out_dim=64))
    img, det = face_image()
    with pytest.raises(ValueError, match="64-d"):
        emb.embed(img, [det])


def test_an_unloadable_sface_file_is_an_engine_error(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = models_dir / SFACE_NAME
    bad.write_bytes(b"not onnx")
    real = engine_mod.verified_model
    monkeypatch.setattr(
        engine_mod, "verified_model", lambda d, k: bad if k == "sface" else real(d, k)
    )
    real_required = engine_mod.require_model
    monkeypatch.setattr(
        engine_mod, "require_model", lambda d, k: bad if k == "sface" else real_required(d, k)
    )
    with pytest.raises(EngineError, match="cannot load"):
        open_engine(EngineConfig(embedder="sface", models_dir=models_dir))


def test_yunet_and_sface_engine_end_to_end(
    models_dir: Path, sface_file: Path, shared_photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stand-in cannot match the manifest's sha256, so only the check is bypassed;
    # selection, loading and indexing are the real code.
    target = models_dir / SFACE_NAME
    target.write_bytes(sface_file.read_bytes())
    real = engine_mod.verified_model
    monkeypatch.setattr(
        engine_mod, "verified_model", lambda d, k: target if k == "sface" else real(d, k)
    )
    real_required = engine_mod.require_model
    monkeypatch.setattr(
        engine_mod, "require_model", lambda d, k: target if k == "sface" else real_required(d, k)
    )
    # SFace is unmeasured, so opt-in only (issue 11): auto would keep YuNet + dlib.
    assert open_engine(EngineConfig(models_dir=models_dir)).id == "yunet-2023mar+dlib-resnet-v1"
    engine = open_engine(EngineConfig(embedder="sface", models_dir=models_dir))
    assert engine.id == "yunet-2023mar+sface-2021dec" and engine.dim == 128
    photo = index_photo(shared_photos / "groups/obama_and_biden.jpg", engine, DetectionConfig())
    assert photo.engine == engine.id and len(photo.faces) >= 2
    image = cv2.imread(str(photo.path))
    for face in photo.faces:
        det = Detection(face.box, face.landmarks, face.score)
        chip = engine.embedder.align(image, det)
        assert np.allclose(face.embedding, expected_feature(chip), atol=1e-3)
