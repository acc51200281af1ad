"""A minimal ONNX model writer: just enough protobuf to hand OpenCV a static CNN graph.

Why by hand: the ``onnx`` package is only a test dependency, and the few messages needed
here (model, graph, node, attribute, tensor, value info) are a page of protobuf wire
format. Field numbers are those of ``onnx.proto``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

_FLOAT, _INT64 = 1, 7  # TensorProto.DataType
_ATTR_INT, _ATTR_INTS = 2, 7  # AttributeProto.AttributeType
IR_VERSION = 7
OPSET = 13


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _field_bytes(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _attribute(name: str, value: int | Sequence[int]) -> bytes:
    if isinstance(value, int):
        body = _field_bytes(1, name) + _field_varint(3, value) + _field_varint(20, _ATTR_INT)
    else:
        body = _field_bytes(1, name) + b"".join(_field_varint(8, v) for v in value)
        body += _field_varint(20, _ATTR_INTS)
    return body


def _field_parts(number: int, parts: list[bytes | memoryview]) -> list[bytes | memoryview]:
    """A length-delimited field whose payload stays a list of pieces, joined once at the end:
    the weights (~22 MB for dlib's ResNet) are then copied once, not once per nesting level
    (fresh memory for each copy is what costs at start-up)."""
    size = sum(len(p) for p in parts)
    return [_varint(number << 3 | 2) + _varint(size), *parts]


def _tensor(name: str, array: np.ndarray) -> list[bytes | memoryview]:
    if array.dtype == np.float32:
        kind, raw = _FLOAT, np.ascontiguousarray(array, dtype="<f4")
    elif array.dtype == np.int64:
        kind, raw = _INT64, np.ascontiguousarray(array, dtype="<i8")
    else:
        raise TypeError(f"unsupported initializer type {array.dtype}")
    body = b"".join(_field_varint(1, d) for d in array.shape)
    head = body + _field_varint(2, kind) + _field_bytes(8, name)
    return [head, *_field_parts(9, [memoryview(raw).cast("B")])]


def _value_info(name: str, shape: Sequence[int | str]) -> bytes:
    dims = b"".join(
        _field_bytes(1, _field_bytes(2, d) if isinstance(d, str) else _field_varint(1, d))
        for d in shape
    )
    tensor_type = _field_varint(1, _FLOAT) + _field_bytes(2, dims)
    return _field_bytes(1, name) + _field_bytes(2, _field_bytes(1, tensor_type))


@dataclass
class Graph:
    """A graph under construction: add initializers and nodes, then :meth:`model_bytes`."""

    name: str
    _nodes: list[bytes] = field(default_factory=list)
    _inits: list[bytes | memoryview] = field(default_factory=list)
    _count: int = 0

    def constant(self, array: np.ndarray, hint: str = "c") -> str:
        """Add a weight tensor; returns its name."""
        self._count += 1
        name = f"{hint}{self._count}"
        self._inits += _field_parts(5, _tensor(name, np.ascontiguousarray(array)))
        return name

    def node(self, op: str, inputs: Sequence[str], **attributes: int | Sequence[int]) -> str:
        """Add one operator with a single output; returns the output's name."""
        self._count += 1
        out = f"{op.lower()}{self._count}"
        body = b"".join(_field_bytes(1, i) for i in inputs) + _field_bytes(2, out)
        body += _field_bytes(3, out) + _field_bytes(4, op)
        body += b"".join(_field_bytes(5, _attribute(k, v)) for k, v in attributes.items())
        self._nodes.append(body)
        return out

    def model_bytes(
        self, inputs: dict[str, Sequence[int | str]], outputs: dict[str, Sequence[int | str]]
    ) -> bytes:
        """The serialised ``ModelProto`` (float32 inputs/outputs with the given shapes)."""
        graph: list[bytes | memoryview] = [_field_bytes(1, n) for n in self._nodes]
        graph += [_field_bytes(2, self.name), *self._inits]
        graph += [_field_bytes(11, _value_info(k, v)) for k, v in inputs.items()]
        graph += [_field_bytes(12, _value_info(k, v)) for k, v in outputs.items()]
        opset = _field_bytes(1, "") + _field_varint(2, OPSET)
        head = _field_varint(1, IR_VERSION) + _field_bytes(2, "facecluster")
        return b"".join([head, *_field_parts(7, graph), _field_bytes(8, opset)])
