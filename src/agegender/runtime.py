"""onnxruntime sessions that give a model's int8 results exactly on every x86 CPU."""
from __future__ import annotations

from pathlib import Path


def inference_session(model: str | Path | bytes, threads: int | None = None):
    """An onnxruntime CPU session for a model file (or its serialized bytes); `threads`: its intra-op threads.

    On x86 CPUs without VNNI (AVX2 only: AMD Zen 2-3, Intel cores before Ice Lake), onnxruntime's default int8
    kernels multiply uint8 activations by int8 weights and add pairs of products in 16 bits, which saturate:
    there the shipped model read 93.78% / 4.37 years on validation instead of 94.89% / 4.26
    (reports/accuracy.md, "The same figures on every CPU"). `session.x64quantprecision` asks for the exact
    uint8 x uint8 kernels on those CPUs; CPUs with VNNI, and float models, are unaffected.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.x64quantprecision", "1")
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                        providers=["CPUExecutionProvider"])
