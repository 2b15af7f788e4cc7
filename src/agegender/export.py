"""Trained Keras model -> ONNX, so that prediction needs only onnxruntime."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import keras
import numpy as np

from .errors import output_file
from .images import load_crops
from .int8_graph import float_preprocessing
from .models import TRAINING_ONLY_OUTPUTS
from .predictor import resolve_model_path
from .runtime import inference_session


def _constant_normalization(layer):
    """Normalization keeps its statistics in variables, which the ONNX converter turns into extra graph
    inputs; an equal Rescaling (scale 1/std, offset -mean/std) holds them as constants instead."""
    if isinstance(layer, keras.layers.Normalization):
        mean = np.asarray(layer.mean, dtype="float64").reshape(-1)
        std = np.maximum(np.sqrt(np.asarray(layer.variance, dtype="float64").reshape(-1)), keras.backend.epsilon())
        return keras.layers.Rescaling(scale=(1 / std).tolist(), offset=(-mean / std).tolist(), name=layer.name)
    return layer.__class__.from_config(layer.get_config())


def exportable(model: keras.Model) -> keras.Model:
    """`model` as prediction needs it: constant normalisation, and without training-only outputs."""
    if set(TRAINING_ONLY_OUTPUTS) & set(model.output_names):
        outputs = {name: tensor for name, tensor in zip(model.output_names, model.outputs)
                   if name not in TRAINING_ONLY_OUTPUTS}
        model = keras.Model(model.input, outputs, name=model.name)
    if not any(isinstance(layer, keras.layers.Normalization) for layer in model.layers):
        return model
    clone = keras.models.clone_model(model, clone_function=_constant_normalization)
    for layer in clone.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return clone


QUANTIZATIONS = ("dense", "static")


def export_onnx(model_path: str | Path, out: str | Path, metadata: dict | None = None, int8: str | None = None,
                calibration_images: list[str] | None = None) -> Path:
    """Write `out` (.onnx) from a .keras model or run folder; the file is replaced only when complete.

    `int8="dense"` stores the dense layers' weights as 8-bit integers (onnxruntime dynamic quantisation of
    MatMul): they hold most of the report CNN's parameters, so its file shrinks about 4x; convolutions stay
    float. `int8="static"` runs every convolution and dense layer in int8 (see `static_int8`), with activation
    ranges calibrated on `calibration_images` (paths of training face crops): Xception about 4x smaller.
    """
    if int8 not in (None, *QUANTIZATIONS):
        raise ValueError(f"unknown int8 mode {int8!r}; choose one of {', '.join(QUANTIZATIONS)}")
    if int8 == "static" and not calibration_images:
        raise ValueError("static int8 needs calibration images (training face crops)")
    out = output_file(out, "model.onnx")
    source = Path(model_path)
    source = resolve_model_path(source / "best.keras" if source.is_dir() else source)
    if source.suffix != ".keras":
        raise ValueError(f"{source} is already {source.suffix}; export takes a .keras model or a run folder")
    model = exportable(keras.models.load_model(source, compile=False))
    size = model.input_shape[1]
    model(np.zeros((1, size, size, 3), "float32"))  # the exporter needs a model that has been called
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        partial = Path(scratch) / "model.onnx"
        model.export(str(partial), format="onnx", verbose=False)
        if int8 == "dense":
            partial = dense_int8(partial, Path(scratch) / "int8.onnx")
        elif int8 == "static":
            pixels, readable = load_crops(calibration_images, size)  # at the model's own input size
            partial = static_int8(partial, Path(scratch) / "int8.onnx", pixels[readable])
        update_metadata(partial, {"name": model.name, "image_size": size, "source": source.name,
                                  "weights": f"int8 {int8}" if int8 else "float32", **(metadata or {})})
        os.replace(partial, out)
    return out


def dense_int8(source: Path, out: Path) -> Path:
    """`source` with its dense layers' weights stored as int8 (onnxruntime dynamic quantisation of MatMul)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(out), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
    return out


def static_int8(source: Path, out: Path, calibration: np.ndarray) -> Path:
    """`source` with every convolution and dense layer in int8 (QDQ, per-channel weights), the activation
    ranges set from `calibration` at the 99.999th percentile: min-max ranges cost Xception 1.4 points of
    gender accuracy on protocol 5k's validation split, percentile ones nothing (benchmarks/quantization.py).
    The input's scaling stays float32 (int8_graph.float_preprocessing)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_static)

    name = inference_session(source).get_inputs()[0].name
    # Equal batches: the calibrator stacks per-batch outputs, so a shorter last batch is dropped.
    size = min(16, len(calibration))
    batches = iter([{name: np.asarray(calibration[i:i + size], "float32")}
                    for i in range(0, len(calibration) - size + 1, size)])

    class Batches(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    prepared = out.with_name(out.stem + "-prepared.onnx")
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(out), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.Percentile)
    prepared.unlink()
    quantized = onnx.load(str(out))
    float_preprocessing(quantized)
    onnx.save(quantized, str(out))
    return out


def update_metadata(onnx_path: str | Path, updates: dict) -> Path:
    """Merge `updates` into an exported model's agegender metadata; the file is replaced only when complete."""
    import onnx

    onnx_path = Path(onnx_path)
    graph = onnx.load(str(onnx_path))
    entries = {prop.key: prop for prop in graph.metadata_props}
    info = json.loads(entries["agegender"].value) if "agegender" in entries else {}
    info.update(updates)
    if "agegender" in entries:
        entries["agegender"].value = json.dumps(info)
    else:
        graph.metadata_props.add(key="agegender", value=json.dumps(info))
    partial = onnx_path.with_name(onnx_path.name + ".partial")
    onnx.save(graph, str(partial))
    os.replace(partial, onnx_path)
    return onnx_path
