"""Changes to a static-int8 (QDQ) ONNX graph that keep its weights and make it faster on a CPU."""
from __future__ import annotations

COMPUTE = {"Conv", "ConvTranspose", "MatMul", "Gemm"}  # the layers int8 is for


def float_preprocessing(model) -> int:
    """Run the input's scaling (multiply, add, transpose up to the first convolution) in float32: remove the
    quantize-dequantize pairs that onnxruntime would otherwise fuse into int8 element-wise kernels. Its int8
    add with a per-channel offset (dlib's mean colour) is slow: 1.2 of the 4 ms that dlib's int8 network took
    for a face and its mirror image (onnxruntime's profiler; benchmarks/predict_speed.py). The pair that feeds
    the first convolution stays, so every convolution still runs in int8. Changes `model` (an
    onnx.ModelProto) in place; returns the number of pairs removed (0 for a float32 or an already changed
    graph)."""
    graph = model.graph
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    preprocessing, frontier = set(), [tensor.name for tensor in graph.input]
    while frontier:  # every node between the input and the first compute layer
        for node in consumers.get(frontier.pop(), []):
            if node.op_type not in COMPUTE and id(node) not in preprocessing:
                preprocessing.add(id(node))
                frontier += list(node.output)
    removed, bypass = set(), {}
    for quantize in graph.node:
        if quantize.op_type != "QuantizeLinear" or id(quantize) not in preprocessing:
            continue
        following = consumers.get(quantize.output[0], [])
        if len(following) != 1 or following[0].op_type != "DequantizeLinear":
            continue
        dequantize = following[0]
        users = consumers.get(dequantize.output[0], [])
        if users and all(user.op_type not in COMPUTE for user in users):
            bypass[dequantize.output[0]] = quantize.input[0]
            removed |= {id(quantize), id(dequantize)}
    if not removed:
        return 0
    kept = [node for node in graph.node if id(node) not in removed]
    for node in kept:
        for index, name in enumerate(node.input):
            if name in bypass:
                node.input[index] = bypass[name]
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in kept for name in node.input}
    unused = [tensor for tensor in graph.initializer if tensor.name not in used]
    for tensor in unused:  # the removed pairs' scales and zero points
        graph.initializer.remove(tensor)
    return len(removed) // 2
