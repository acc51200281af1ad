"""One ONNX Runtime session as the indexer's workers want it: few threads, no spinning.

YuNet and dlib's ResNet both run on ONNX Runtime; parallelism comes from the worker
processes, so each session keeps to the threads it is given and never busy-waits.
"""

from __future__ import annotations

from typing import Any


class OrtUnavailable(RuntimeError):
    """ONNX Runtime cannot load the graph; the caller falls back to OpenCV."""


def open_session(model: bytes | str, threads: int) -> Any:
    """An ``InferenceSession`` on the CPU for ``model`` (bytes of a graph, or its path).

    Raises ImportError without onnxruntime, :class:`OrtUnavailable` for a graph it refuses.
    """
    import onnxruntime as ort  # an ImportError says it is not installed
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    # Idle pool threads spinning cost a one-photo scan ~0.2 s CPU (in-process, 2 threads).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Its warnings are about output shapes we declare dynamic: nothing for the user.
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types, not a common base
        raise OrtUnavailable(f"ONNX Runtime cannot load the graph: {e}") from e
