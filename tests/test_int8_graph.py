"""A static-int8 graph's input scaling runs in float32, its convolutions in int8."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

from agegender.int8_graph import float_preprocessing


def _quantized_scaling_graph() -> onnx.ModelProto:
    """image -> [Q/DQ] -> x / 256 -> [Q/DQ] -> - mean colour -> [Q/DQ] -> 3x3 convolution (int8 weights): what
    onnxruntime's static quantizer writes for a network with a Rescaling layer in front."""
    rng = np.random.default_rng(0)
    constants = {"inv": np.float32(1 / 256), "mean": np.array([-0.48, -0.46, -0.41], np.float32),
                 "w_q": rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8), "w_scale": np.float32(0.01),
                 "zero_u8": np.uint8(0), "zero_i8": np.int8(0), "mid_u8": np.uint8(128),
                 "image_scale": np.float32(1.0), "scaled_scale": np.float32(1 / 256), "centred_scale": np.float32(1 / 256)}
    nodes = [
        helper.make_node("QuantizeLinear", ["image", "image_scale", "zero_u8"], ["image_q"]),
        helper.make_node("DequantizeLinear", ["image_q", "image_scale", "zero_u8"], ["image_dq"]),
        helper.make_node("Mul", ["image_dq", "inv"], ["scaled"]),
        helper.make_node("QuantizeLinear", ["scaled", "scaled_scale", "zero_u8"], ["scaled_q"]),
        helper.make_node("DequantizeLinear", ["scaled_q", "scaled_scale", "zero_u8"], ["scaled_dq"]),
        helper.make_node("Add", ["scaled_dq", "mean"], ["centred"]),
        helper.make_node("Transpose", ["centred"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("QuantizeLinear", ["nchw", "centred_scale", "mid_u8"], ["nchw_q"]),
        helper.make_node("DequantizeLinear", ["nchw_q", "centred_scale", "mid_u8"], ["nchw_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "zero_i8"], ["w"]),
        helper.make_node("Conv", ["nchw_dq", "w"], ["features"]),
    ]
    graph = helper.make_graph(nodes, "scaling", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                                ["N", 8, 8, 3])],
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 4, 6, 6])],
                              [numpy_helper.from_array(np.asarray(value), name) for name, value in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, pixels: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": pixels})[0]


def test_the_scaling_loses_its_int8_steps_and_the_convolution_keeps_its_own():
    model = _quantized_scaling_graph()
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    before = _run(model, pixels)
    assert float_preprocessing(model) == 2
    kinds = [node.op_type for node in model.graph.node]
    assert kinds == ["Mul", "Add", "Transpose", "QuantizeLinear", "DequantizeLinear", "DequantizeLinear", "Conv"]
    assert model.graph.node[0].input[0] == "image"  # the float image goes straight into the scaling
    assert not {"image_scale", "scaled_scale"} & {tensor.name for tensor in model.graph.initializer}
    onnx.checker.check_model(model)
    after = _run(model, pixels)
    # The same up to the rounding the removed steps did (one step of 1/256 before the convolution's own).
    assert np.abs(after - before).max() <= 0.01 * 27 * 128 / 256 and not np.array_equal(after, before)
    assert float_preprocessing(model) == 0  # already done: nothing more to remove


def test_a_float_graph_is_left_as_it_is():
    model = _quantized_scaling_graph()
    float_nodes = [node for node in model.graph.node if node.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    del model.graph.node[:]
    model.graph.node.extend(float_nodes)
    model.graph.node[0].input[0] = "image"
    model.graph.node[1].input[0] = "scaled"
    model.graph.node[3].input[0] = "nchw"
    model.graph.node[3].input[1] = "w_q"
    before = model.SerializeToString()
    assert float_preprocessing(model) == 0 and model.SerializeToString() == before
