"""A trained network's weights read back out of an exported ONNX model (float32 or int8), into a Keras network
of the same recipe: to fine-tune a model further when only its .onnx file is left (the shipped default's
members, `agegender members`), since run folders' checkpoints are not committed.

The exporter names each ONNX tensor after its Keras layer (`.../block4_sepconv1_1/...`) and folds every
BatchNormalization into the convolution before it (`.../merged_input`). A fold is undone with the BatchNorm
layer the Keras network already holds: the xception recipe keeps its BatchNorm frozen
(`backbone_batchnorm_inference`), so those statistics are the ImageNet ones the exported network was trained
with, and the folded bias is checked against them. (dlib's network has no BatchNorm: its scales are layers of
their own, read back like the convolutions.)
"""
from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np

from .models import TRAINING_ONLY_OUTPUTS


class OnnxWeightsError(ValueError):
    """An ONNX model whose weights do not fit the Keras network."""


def _dequantized(graph) -> tuple[dict, dict]:
    """Every weight tensor by name (initializers as they are, DequantizeLinear outputs of initializers as
    floats), and each such output's quantized initializer name, which carries the layer's name."""
    from onnx import numpy_helper

    values = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    sources = {}
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in values:
            continue
        quantized, scale = values[node.input[0]].astype(np.float64), values[node.input[1]]
        zero = values[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros_like(scale)
        axis = next((attribute.i for attribute in node.attribute if attribute.name == "axis"), 1)
        if np.ndim(scale) and quantized.ndim > 1:  # per channel, along `axis` (a vector's: element by element)
            shape = [1] * quantized.ndim
            shape[axis] = -1
            scale, zero = np.reshape(scale, shape), np.reshape(zero, shape)
        values[node.output[0]] = ((quantized - zero) * scale).astype(np.float32)
        sources[node.output[0]] = node.input[0]
    return values, sources


class _Graph:
    """The ONNX model's Conv and Gemm nodes, each with its weight (and bias) tensor and the names that say which
    Keras layer it came from."""

    def __init__(self, path: Path):
        import onnx

        try:
            graph = onnx.load(str(path)).graph
        except Exception as error:  # noqa: BLE001 - any load failure of a foreign file
            raise OnnxWeightsError(f"{path} is not a loadable ONNX model ({error})".splitlines()[0]) from None
        values, sources = _dequantized(graph)
        consumers = {}
        for node in graph.node:
            for name in node.input:
                consumers.setdefault(name, []).append(node)
        self.nodes = []
        for node in graph.node:
            if node.op_type not in ("Conv", "Gemm", "MatMul"):
                continue
            tensors = [values.get(name) for name in node.input[1:]]
            if tensors[0] is None:
                continue
            if node.op_type == "MatMul":  # a float dense layer: MatMul, then its bias in an Add
                adds = [add for add in consumers.get(node.output[0], []) if add.op_type == "Add"]
                tensors += [values[name] for add in adds[:1] for name in add.input if name in values]
            names = [node.name] + [sources.get(name, name) for name in node.input[1:]]
            attributes = {attribute.name: attribute for attribute in node.attribute}
            self.nodes.append({
                "op": "Gemm" if node.op_type == "MatMul" else node.op_type, "names": names, "weight": tensors[0],
                "bias": tensors[1] if len(tensors) > 1 else None,  # None: the exporter dropped an all-zero bias
                "folded": "merged_input" in names[1],
                "group": attributes["group"].i if "group" in attributes else 1,
                "transposed": bool(attributes["transB"].i) if "transB" in attributes else False,
                "used": False})

    def find(self, layer_name: str, fits) -> dict:
        """The unused node named after `layer_name` whose tensors `fits`. Keras numbers unnamed layers by a
        counter that differs between builds (conv2d, conv2d_4), so those match any counter, if unambiguously."""
        stem = re.sub(r"_\d+$", "", layer_name)
        exact = re.compile(rf"/{re.escape(layer_name)}_\d+/")
        loose = re.compile(rf"/{re.escape(stem)}(_\d+)*/")
        free = [node for node in self.nodes if not node["used"] and fits(node)]
        for pattern in (exact, loose):
            found = [node for node in free if any(pattern.search(name) for name in node["names"])]
            if len(found) == 1 or (found and pattern is exact):
                found[0]["used"] = True
                return found[0]
        raise OnnxWeightsError(f"no single tensor for layer {layer_name!r} in the ONNX model")


def load_onnx_weights(model: keras.Model, path: str | Path) -> list[str]:
    """Set every trainable weight of `model` (and its nested backbone) from the exported model at `path`;
    returns the layers that start fresh: training-only outputs, which no exported model holds."""
    path = Path(path)
    if not path.is_file():
        raise OnnxWeightsError(f"{path} not found")
    layers = [layer for layer in _all_layers(model) if layer.weights and not isinstance(layer, keras.Model)]
    fresh = [layer.name for layer in layers if layer.name in TRAINING_ONLY_OUTPUTS]
    layers = [layer for layer in layers if layer.name not in fresh]
    trained = [layer.name for layer in layers
               if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    if trained:  # their trained statistics are folded away or left in the graph as they are
        raise OnnxWeightsError(f"layer {trained[0]!r}: only networks with frozen BatchNorm "
                               "(backbone_batchnorm_inference) can be read back from an ONNX model")
    graph = _Graph(path)
    following = _following_batchnorm(model)
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            continue  # frozen: its statistics undo the folds below
        if isinstance(layer, keras.layers.Dense):
            _set_dense(layer, graph)
        elif isinstance(layer, keras.layers.SeparableConv2D):
            _set_separable(layer, graph, following.get(id(layer)))
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            _set_conv(layer, graph, following.get(id(layer)))
        elif layer.trainable_weights:
            raise OnnxWeightsError(f"cannot read layer {layer.name!r} ({type(layer).__name__}) from an ONNX model")
    left = [node["names"][0] for node in graph.nodes if not node["used"]]
    if left:
        raise OnnxWeightsError(f"{path} has layers this recipe's network lacks ({', '.join(left[:3])}); "
                               "start from a model exported from the same recipe and settings")
    return fresh


def _following_batchnorm(model: keras.Model) -> dict:
    """id(convolution layer) -> the BatchNormalization layer its output goes into, if any."""
    pairs = {}
    for layer in (layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)):
        source = layer.input._keras_history.operation
        pairs[id(source)] = layer
    return pairs


def _all_layers(model: keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _fold(batchnorm) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel scale and shift a frozen BatchNormalization applies."""
    gamma, beta, mean, variance = (np.asarray(weight, np.float64) for weight in batchnorm.get_weights())
    scale = gamma / np.sqrt(variance + batchnorm.epsilon)
    return scale, beta - mean * scale


def _unfolded(layer, node: dict, batchnorm, kernel: np.ndarray) -> np.ndarray:
    """`kernel` (output channels last) with the fold of `batchnorm` taken back out, after checking the bias."""
    if not node["folded"]:
        return kernel
    if batchnorm is None:
        raise OnnxWeightsError(f"layer {layer.name!r}: the ONNX model folds a BatchNorm into it that this "
                               "network lacks")
    scale, shift = _fold(batchnorm)
    bias = np.zeros_like(shift) if node["bias"] is None else node["bias"]
    if not np.allclose(bias, shift, rtol=0.02, atol=0.02 * np.abs(shift).max()):
        raise OnnxWeightsError(f"layer {layer.name!r}: the ONNX model's BatchNorm statistics are not this "
                               "backbone's; pass the backbone weights it was trained from (--backbone-weights)")
    return (kernel / scale).astype(np.float32)


def _set_conv(layer, graph: _Graph, batchnorm) -> None:
    depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
    kernel_shape = tuple(layer.weights[0].shape)  # H, W, in, out (depthwise: H, W, channels, 1)
    onnx_shape = (kernel_shape[2], 1, *kernel_shape[:2]) if depthwise else (
        kernel_shape[3], kernel_shape[2], *kernel_shape[:2])
    node = graph.find(layer.name, lambda node: node["op"] == "Conv" and node["weight"].shape == onnx_shape)
    # O, I, H, W -> H, W, I, O (depthwise: C, 1, H, W -> H, W, C, 1)
    kernel = _unfolded(layer, node, batchnorm, node["weight"].transpose((2, 3, 0, 1) if depthwise else (2, 3, 1, 0)))
    if layer.use_bias:
        if node["folded"]:
            raise OnnxWeightsError(f"layer {layer.name!r}: its bias is not in the ONNX model on its own")
        layer.set_weights([kernel, _bias(node, layer.weights[1].shape)])
    else:
        layer.set_weights([kernel])


def _set_separable(layer, graph: _Graph, batchnorm) -> None:
    if layer.use_bias:
        raise OnnxWeightsError(f"layer {layer.name!r}: a separable convolution with a bias cannot be read back")
    depth_shape, point_shape = (tuple(weight.shape) for weight in layer.weights[:2])  # (H, W, C, 1), (1, 1, C, O)
    depthwise = graph.find(layer.name, lambda node: node["op"] == "Conv" and node["group"] > 1
                           and node["weight"].shape == (depth_shape[2], 1, *depth_shape[:2]))
    pointwise = graph.find(layer.name, lambda node: node["op"] == "Conv" and node["group"] == 1
                           and node["weight"].shape == (point_shape[3], point_shape[2], 1, 1))
    point = _unfolded(layer, pointwise, batchnorm, pointwise["weight"].transpose(2, 3, 1, 0))
    layer.set_weights([depthwise["weight"].transpose(2, 3, 0, 1), point])


def _set_dense(layer, graph: _Graph) -> None:
    inputs, outputs = layer.weights[0].shape

    def fits(node):
        shape = (outputs, inputs) if node["transposed"] else (inputs, outputs)
        return node["op"] == "Gemm" and node["weight"].shape == shape

    node = graph.find(layer.name, fits)
    kernel = node["weight"].T if node["transposed"] else node["weight"]
    weights = [kernel]
    if layer.use_bias:
        weights.append(_bias(node, (outputs,)))
    layer.set_weights(weights)


def _bias(node: dict, shape) -> np.ndarray:
    return np.zeros(shape, np.float32) if node["bias"] is None else node["bias"].reshape(shape)
