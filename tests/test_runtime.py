import numpy as np
from onnx import TensorProto, helper, numpy_helper

from agegender.runtime import inference_session

INPUTS = 64


def _int8_matmul_graph() -> bytes:
    """One int8 product (uint8 activations, int8 weights), as the static int8 export writes them: 64 inputs of
    255 times weights of 127, whose pairs of products (64,770) overflow 16 bits."""
    constants = {"x_scale": np.float32(1), "x_zero": np.uint8(0), "w_q": np.full((INPUTS, 4), 127, np.int8),
                 "w_scale": np.float32(1), "w_zero": np.int8(0)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["x_q"]),
             helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"]),
             helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"]),
             helper.make_node("MatMul", ["x_dq", "w"], ["y"])]
    graph = helper.make_graph(nodes, "int8_matmul",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, INPUTS])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(np.asarray(value), name) for name, value in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_int8_products_are_exact_on_any_cpu():
    """On x86 CPUs without VNNI, a default onnxruntime session returns 1,048,544 here (each pair of products
    saturated at 32,767); ours must return the exact sum on every CPU."""
    session = inference_session(_int8_matmul_graph(), threads=1)
    result = session.run(None, {"x": np.full((1, INPUTS), 255, np.float32)})[0]
    np.testing.assert_array_equal(result, np.full((1, 4), 255 * 127 * INPUTS, np.float32))


def test_the_package_runs_its_models_with_exact_int8_kernels():
    """On a CPU with VNNI the product above is exact either way, so check the sessions themselves: the shipped
    model's and BlazeFace's ask for the exact kernels."""
    from agegender.blazeface import BlazeFace
    from agegender.predictor import AgeGenderModel

    detector = BlazeFace()
    for session in (AgeGenderModel()._session, detector.full_range.session, detector.short_range.session):
        assert session.get_session_options().get_session_config_entry("session.x64quantprecision") == "1"
