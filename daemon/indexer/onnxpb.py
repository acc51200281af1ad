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


# --- editing an existing model --------------------------------------------------------------


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated protobuf varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, int, int]]:
    """(field number, start, payload start, end) of each field; payload only for wire type 2."""
    out, pos = [], 0
    while pos < len(buf):
        start = pos
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        payload = pos
        if wire == 0:
            _, pos = _read_varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, payload = _read_varint(buf, pos)
            pos = payload + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated protobuf field")
        out.append((number, start, payload, pos))
    return out


def _edit(buf: bytes, path: Sequence[tuple[int, int]], payload: bytes) -> bytes:
    """``buf`` with the message at ``path`` ((field number, occurrence), ...) replaced."""
    number, occurrence = path[0]
    seen = 0
    for field_number, start, inner, end in _fields(buf):
        if field_number != number:
            continue
        if seen == occurrence:
            new = payload if len(path) == 1 else _edit(buf[inner:end], path[1:], payload)
            return buf[:start] + _field_bytes(number, new) + buf[end:]
        seen += 1
    raise ValueError(f"protobuf field {number} #{occurrence} not found")


_MODEL_GRAPH, _GRAPH_INPUT, _VALUE_TYPE, _TYPE_TENSOR, _TENSOR_SHAPE, _SHAPE_DIM = 7, 11, 2, 1, 2, 1


def with_named_input_dims(model: bytes, names: dict[int, str], input_index: int = 0) -> bytes:
    """``model`` with dimensions of one graph input made symbolic (index -> name), so a
    runtime accepts other sizes there; YuNet's file fixes its input at 640x640."""
    for dim, name in names.items():
        path = [(_MODEL_GRAPH, 0), (_GRAPH_INPUT, input_index), (_VALUE_TYPE, 0),
                (_TYPE_TENSOR, 0), (_TENSOR_SHAPE, 0), (_SHAPE_DIM, dim)]
        model = _edit(model, path, _field_bytes(2, name))
    return model
