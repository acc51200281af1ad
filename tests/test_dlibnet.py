"""dlib's face ResNet run on OpenCV must give dlib's own descriptors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from daemon.indexer import dlibnet
from daemon.indexer.engine import EngineError, dlib_model_files
from daemon.indexer.onnxpb import Graph

dlib = pytest.importorskip("dlib")
# Found the way the engine finds them: importing face_recognition_models needs
# pkg_resources, which setuptools 81+ no longer ships.
try:
    PREDICTOR, RESNET = dlib_model_files()
except EngineError as e:
    pytest.skip(str(e), allow_module_level=True)


@pytest.fixture(scope="module", params=["onnxruntime", "opencv"])
def net(request: pytest.FixtureRequest) -> dlibnet.Network:
    if request.param == "onnxruntime":
        pytest.importorskip("onnxruntime")
    network = dlibnet.open_resnet(RESNET, request.param)
    assert network.backend == request.param
    return network


def test_handwritten_onnx_runs_a_convolution_as_numpy_computes_it() -> None:
    rng = np.random.default_rng(1)
    weight = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    x = rng.normal(size=(2, 3, 7, 9)).astype(np.float32)
    g = Graph("t")
    y = g.node("Conv", ["x", g.constant(weight), g.constant(bias)], kernel_shape=[3, 3],
               strides=[2, 2], pads=[1, 1, 1, 1])
    y = g.node("Relu", [y])
    net = cv2.dnn.readNetFromONNX(np.frombuffer(g.model_bytes({"x": ["n", 3, 7, 9]},
                                                              {y: ["n", 4, 4, 5]}), np.uint8))
    net.setInput(x)
    got = net.forward()
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.zeros((2, 4, 4, 5), np.float32)
    for i in range(4):
        for j in range(5):
            patch = padded[:, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
            want[:, :, i, j] = np.einsum("ncyx,fcyx->nf", patch, weight) + bias
    np.testing.assert_allclose(got, np.maximum(want, 0), rtol=1e-5, atol=1e-5)


def test_reads_the_architecture_from_the_file() -> None:
    net = dlibnet.read_resnet(RESNET)
    assert net.stem.weight.shape == (32, 3, 7, 7)
    assert [b[0].stride for b in net.blocks] == [1, 1, 1, 2, 1, 1, 1, 2, 1, 1, 2, 1, 1, 2]
    assert [b[1].bias.size for b in net.blocks][-1] == 256
    assert net.fc.shape == (256, 128)


def test_refuses_a_file_that_is_not_the_resnet(tmp_path: Path) -> None:
    with pytest.raises(dlibnet.DlibNetError, match="not a dlib metric"):
        dlibnet.read_resnet(PREDICTOR)
    truncated = tmp_path / "cut.dat"
    truncated.write_bytes(RESNET.read_bytes()[:2_000_000])
    with pytest.raises(dlibnet.DlibNetError):
        dlibnet.read_resnet(truncated)


def _dlib_chips_and_descriptors(photo: Path) -> tuple[np.ndarray, np.ndarray]:
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    predictor = dlib.shape_predictor(str(PREDICTOR))
    shapes = dlib.full_object_detections()
    for rect in dlib.get_frontal_face_detector()(rgb, 1):
        shapes.append(predictor(rgb, rect))
    reference = dlib.face_recognition_model_v1(str(RESNET)).compute_face_descriptor(rgb, shapes)
    chips = np.stack(dlib.get_face_chips(rgb, shapes, size=150, padding=0.25))
    return chips, np.array(reference, np.float32)


def test_descriptors_equal_dlibs_own_on_real_faces(
    net: dlibnet.Network, shared_photos: Path
) -> None:
    chips, reference = _dlib_chips_and_descriptors(shared_photos / "groups/obama_and_biden.jpg")
    assert len(chips) >= 2
    ours = dlibnet.describe(net, chips)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    # One at a time (another batch size) gives the same vectors.
    np.testing.assert_allclose(dlibnet.describe(net, chips[:1]), reference[:1], atol=1e-5)


def test_describe_checks_the_chip_shape(net: dlibnet.Network) -> None:
    with pytest.raises(ValueError, match="150"):
        dlibnet.describe(net, np.zeros((1, 112, 112, 3), np.uint8))


def test_open_resnet_refuses_an_unknown_backend() -> None:
    with pytest.raises(ValueError, match="backend"):
        dlibnet.open_resnet(RESNET, "tensorflow")


def test_embedder_chips_from_bgr_equal_dlibs_chips_from_rgb(shared_photos: Path) -> None:
    from daemon.indexer.detect import Detection
    from daemon.indexer.embed import DlibEmbedder

    embedder = DlibEmbedder(PREDICTOR, RESNET)
    for name in ("groups/obama_and_biden.jpg", "groups/bald_guys.jpg"):
        bgr = cv2.imread(str(shared_photos / name))
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        rects = dlib.get_frontal_face_detector()(rgb, 1)
        assert len(rects) >= 2
        predictor = dlib.shape_predictor(str(PREDICTOR))
        shapes = dlib.full_object_detections()
        for r in rects:
            shapes.append(predictor(rgb, r))
        want = np.stack(dlib.get_face_chips(rgb, shapes, size=150, padding=0.25))
        # The embedder's rectangle runs from (x, y) to (x + w, y + h), both inclusive in dlib.
        boxes = [Detection((r.left(), r.top(), r.right() - r.left(), r.bottom() - r.top()), (),
                           1.0) for r in rects]
        np.testing.assert_array_equal(embedder.chips(bgr, boxes), want)
