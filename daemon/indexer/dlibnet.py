"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) on ONNX
Runtime (or OpenCV's DNN module when ONNX Runtime is missing).

Why: the prebuilt ``dlib-bin`` wheel is compiled without BLAS, so its convolutions take
~250 ms per face on one core, which made embedding the indexer's bottleneck. The very same
weights, read from dlib's file and handed to ONNX Runtime (or OpenCV's DNN) as an
in-memory ONNX graph, take a fraction of that and give the same descriptors (equal
to dlib's within float rounding, ~1e-6; ``tests/test_dlibnet.py`` checks it on real
faces), so the engine id ``dlib-resnet-v1`` still names exactly one embedding space.

The network (dlib's ``dnn_face_recognition_ex.cpp``): a 7x7/2 convolution, a 3x3/2 max
pool, then residual blocks of two 3x3 convolutions each (32, 64, 128, 256, 256 filters;
the first block of each level after the first halves the size, its shortcut an average
pool, dlib's ``add_prev`` zero-padding whichever of the two is smaller), a global average
pool and a 256x128 linear layer. The file stores the layers from the input end; each
``affine_`` (batch norm frozen into scale and shift) is folded into the convolution before
it, and the input scaling ``(pixel - mean) / 256`` into the first convolution, which is
exact because that convolution does not pad. The ONNX protobuf is written by hand
(:mod:`daemon.indexer.onnxpb`) so the ``onnx`` package is not needed at run time.
ONNX Runtime runs ~6 ms per face on one core where OpenCV 5 takes ~11 ms.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from daemon.indexer.graphcache import cached_graph
from daemon.indexer.onnxpb import Graph
from daemon.indexer.ortsession import OrtUnavailable, open_session

CHIP_SIZE = 150
"""Side of the aligned RGB face chip the network takes (dlib's ``get_face_chip`` size)."""

_MEAN_RGB = np.array([122.782, 117.001, 104.298], np.float32)
"""dlib's ``input_rgb_image`` means; it computes ``(channel - mean) / 256``."""


class DlibNetError(ValueError):
    """The model file is not the dlib face-recognition ResNet this module understands."""


@dataclass(frozen=True)
class Conv:
    """One convolution with its batch norm folded in."""

    weight: np.ndarray
    """float32 ``[filters, in_channels, kernel, kernel]``."""
    bias: np.ndarray
    """float32 ``[filters]``."""
    kernel: int
    stride: int
    padding: int


@dataclass(frozen=True)
class ResNet:
    """The weights of the whole network, ready to run."""

    stem: Conv
    blocks: tuple[tuple[Conv, Conv], ...]
    """Residual blocks from the input end; a block whose first stride is 2 halves the size."""
    fc: np.ndarray
    """float32 ``[256, 128]``: descriptor = pooled features @ fc."""


# --- reading dlib's serialisation ---------------------------------------------------------


class _Reader:
    """dlib's stream format: integers as a length/sign byte then little-endian bytes,
    strings as such an integer then the bytes, tensors as five integers then raw float32."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def int(self) -> int:
        head = self.data[self.pos]
        size = head & 0x0F
        if size > 8:
            raise DlibNetError(f"bad integer encoding at byte {self.pos}")
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if head & 0x80 else value

    def string(self) -> str:
        n = self.int()
        text = self.data[self.pos : self.pos + n].decode("latin-1")
        self.pos += n
        return text

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise DlibNetError(f"tensor format {version} at byte {self.pos} (expected 2)")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        end = self.pos + 4 * count
        if end > len(self.data):
            raise DlibNetError("model file truncated inside a tensor")
        values = np.frombuffer(self.data, "<f4", count, self.pos).astype(np.float32)
        self.pos = end
        return values.reshape(shape)


def _tagged(data: bytes, name: str) -> list[int]:
    """Offsets just past every serialised string ``name`` (its length byte pair + text)."""
    needle = struct.pack("BB", 1, len(name)) + name.encode()
    found, start = [], 0
    while (at := data.find(needle, start)) >= 0:
        found.append(at + len(needle))
        start = at + 1
    return found


def _conv_at(data: bytes, pos: int) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    """(filters [f, c, k, k], biases [f], kernel, stride, padding) of a ``con_4`` layer."""
    r = _Reader(data, pos)
    params = r.tensor().reshape(-1)
    filters, rows, cols = r.int(), r.int(), r.int()
    stride_y, stride_x, pad_y, pad_x = r.int(), r.int(), r.int(), r.int()
    if rows != cols or stride_y != stride_x or pad_y != pad_x:
        raise DlibNetError("only square kernels, strides and paddings are supported")
    per_filter = (params.size - filters) // filters
    channels = per_filter // (rows * cols)
    if channels * rows * cols * filters + filters != params.size:
        raise DlibNetError("convolution parameter count does not match its shape")
    weight = params[: filters * per_filter].reshape(filters, channels, rows, cols)
    return weight, params[filters * per_filter :], rows, stride_y, pad_y


def _fold(weight: np.ndarray, bias: np.ndarray, scale: np.ndarray, shift: np.ndarray,
          kernel: int, stride: int, padding: int) -> Conv:
    """``scale * conv(x) + shift`` as one convolution."""
    w = np.ascontiguousarray(weight * scale[:, None, None, None], dtype=np.float32)
    return Conv(w, (bias * scale + shift).astype(np.float32), kernel, stride, padding)


def read_resnet(path: Path) -> ResNet:
    """Read dlib's ``dlib_face_recognition_resnet_model_v1.dat``; raises :class:`DlibNetError`."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DlibNetError(f"cannot read {path}: {e.strerror or e}") from e
    if b"loss_metric_" not in data[:32]:
        raise DlibNetError(f"{path} is not a dlib metric-learning network")
    convs_at, affines_at, fc_at = _tagged(data, "con_4"), _tagged(data, "affine_"), _tagged(
        data, "fc_2"
    )
    if len(convs_at) != len(affines_at) or len(convs_at) % 2 != 1 or len(fc_at) != 1:
        raise DlibNetError(
            f"{path}: {len(convs_at)} convolutions, {len(affines_at)} batch norms and "
            f"{len(fc_at)} linear layers do not make dlib's face ResNet"
        )
    convs = []
    for i, (c_at, a_at) in enumerate(zip(convs_at, affines_at, strict=True)):
        if not c_at < a_at or (i + 1 < len(convs_at) and a_at > convs_at[i + 1]):
            raise DlibNetError(f"{path}: layers are not conv/batch-norm pairs")
        weight, bias, kernel, stride, padding = _conv_at(data, c_at)
        affine = _Reader(data, a_at).tensor().reshape(-1)
        scale, shift = np.split(affine, 2)
        if scale.size != weight.shape[0]:
            raise DlibNetError(f"{path}: batch norm size does not match its convolution")
        if i == 0:
            if padding != 0 or weight.shape[1] != 3:
                raise DlibNetError(f"{path}: the first layer is not an unpadded RGB convolution")
            # Fold (x - mean) / 256 into the weights: exact since this layer does not pad.
            bias = bias - np.einsum("fcyx,c->f", weight, _MEAN_RGB) / 256.0
            weight = weight / 256.0
        convs.append(_fold(weight, bias, scale, shift, kernel, stride, padding))
    r = _Reader(data, fc_at[0])
    outputs, inputs = r.int(), r.int()
    fc = r.tensor()
    if fc.size != inputs * outputs or inputs != convs[-1].bias.size:
        raise DlibNetError(f"{path}: the linear layer does not fit the last convolution")
    fc = fc.reshape(inputs, outputs)  # no bias: fc_no_bias
    blocks = tuple((convs[i], convs[i + 1]) for i in range(1, len(convs), 2))
    return ResNet(convs[0], blocks, np.ascontiguousarray(fc, dtype=np.float32))




# --- running it on OpenCV ------------------------------------------------------------------


def _conv_node(g: Graph, x: str, c: Conv, relu: bool) -> str:
    p = c.padding
    y = g.node(
        "Conv",
        [x, g.constant(c.weight, "w"), g.constant(c.bias, "b")],
        kernel_shape=[c.kernel, c.kernel],
        strides=[c.stride, c.stride],
        pads=[p, p, p, p],
    )
    return g.node("Relu", [y]) if relu else y


def _pad_node(g: Graph, x: str, channels: int, rows: int) -> str:
    """Zero-pad NCHW ``x`` at the end by ``channels`` channels and ``rows`` rows/columns."""
    if channels == 0 and rows == 0:
        return x
    pads = np.array([0, 0, 0, 0, 0, channels, rows, rows], np.int64)
    return g.node("Pad", [x, g.constant(pads, "pad")])


def onnx_model(net: ResNet) -> bytes:
    """The network as an ONNX model: float32 RGB chips ``[n, 3, 150, 150]`` (0..255) in,
    unnormalised 128-d descriptors ``[n, 128]`` out."""
    g = Graph("dlib_face_recognition_resnet_model_v1")
    x = _conv_node(g, "chips", net.stem, relu=True)
    x = g.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2])
    side = ((CHIP_SIZE - net.stem.kernel) // net.stem.stride + 1 - 3) // 2 + 1
    channels = net.stem.bias.size
    for first, second in net.blocks:
        y = _conv_node(g, _conv_node(g, x, first, relu=True), second, relu=False)
        filters = second.bias.size
        if first.stride == 1 and filters == channels:
            shortcut = x
        else:
            # dlib's add_prev sums over the larger shape, zero-padding the smaller at the end.
            pooled_side = (side - 2) // 2 + 1
            conv_side = (side + 2 * first.padding - first.kernel) // first.stride + 1
            pooled = g.node("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
            shortcut = _pad_node(g, pooled, filters - channels, max(0, conv_side - pooled_side))
            y = _pad_node(g, y, 0, max(0, pooled_side - conv_side))
            side, channels = max(pooled_side, conv_side), filters
        x = g.node("Relu", [g.node("Add", [y, shortcut])])
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x])])
    out = g.node("MatMul", [x, g.constant(net.fc, "fc")])
    dim = net.fc.shape[1]
    return g.model_bytes({"chips": ["n", 3, CHIP_SIZE, CHIP_SIZE]}, {out: ["n", dim]})


BACKENDS = ("auto", "onnxruntime", "opencv")


class CvNetwork:
    """The network on OpenCV's DNN module (the fallback when ONNX Runtime is missing)."""

    backend = "opencv"

    def __init__(self, model: bytes) -> None:
        try:
            self._net = cv2.dnn.readNetFromONNX(np.frombuffer(model, np.uint8))
        except cv2.error as e:
            raise DlibNetError(f"OpenCV cannot load the network: {e}") from e

    def run(self, blob: np.ndarray) -> np.ndarray:
        self._net.setInput(blob)
        return np.asarray(self._net.forward(), np.float32)


class OrtNetwork:
    """The network on ONNX Runtime: ~40% less CPU per face than OpenCV's DNN here
    (bench/THROUGHPUT.md), same descriptors within float rounding."""

    backend = "onnxruntime"

    def __init__(self, model: bytes, threads: int) -> None:
        try:  # parallelism comes from the worker processes: one thread each
            self._session = open_session(model, threads)
        except ImportError as e:
            raise DlibNetError(f"onnxruntime is not installed ({e})") from e
        except OrtUnavailable as e:
            raise DlibNetError(str(e)) from e
        self._input = self._session.get_inputs()[0].name

    def run(self, blob: np.ndarray) -> np.ndarray:
        return np.asarray(self._session.run(None, {self._input: blob})[0], np.float32)


Network = CvNetwork | OrtNetwork


def open_resnet(path: Path, backend: str = "auto", threads: int = 1) -> Network:
    """dlib's face ResNet from its ``.dat`` file, ready to :func:`describe` (float32).

    ``backend`` "auto" takes ONNX Runtime when it is installed and loads the graph, else
    OpenCV. ``threads`` is ONNX Runtime's intra-op thread count. Raises
    :class:`DlibNetError` when the file is not that network or no backend can run it.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    model = cached_graph(Path(path), lambda: onnx_model(read_resnet(path)))
    if backend in ("auto", "onnxruntime"):
        try:
            return OrtNetwork(model, threads)
        except DlibNetError:
            if backend == "onnxruntime":
                raise
    return CvNetwork(model)


def describe(net: Network, chips: np.ndarray) -> np.ndarray:
    """dlib's 128-d descriptors (not normalised) of aligned RGB uint8 chips ``[n, 150, 150, 3]``.

    All chips of a photo go through the network as one batch.
    """
    if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
        raise ValueError(f"expected [n, {CHIP_SIZE}, {CHIP_SIZE}, 3] chips, got {chips.shape}")
    blob = np.ascontiguousarray(chips.transpose(0, 3, 1, 2), dtype=np.float32)
    return net.run(blob).reshape(len(chips), -1)
