"""Several exported models as one ONNX file: each member reads the same face, and their outputs are averaged
(gender as log-odds, age in years). Networks pretrained on different data make different errors (Xception on
ImageNet, dlib's ResNet on faces: reports/accuracy.md), so their average beats either of them alone."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .errors import output_file
from .int8_graph import float_preprocessing
from .predictor import ModelError, resolve_model_path

CLIP = 1e-7  # probabilities are clipped before their log-odds are taken, as calibration.logit does


def average_models(models: list[str | Path], out: str | Path, gender_weights: list[float] | None = None,
                   age_weights: list[float] | None = None) -> Path:
    """Write `out`: one graph running every member (.onnx files or run folders) on an N x S x S x 3 image batch,
    S the largest member input size (each smaller member gets the batch resized, bilinear, in the graph).
    Outputs `gender` (sigmoid of the weighted mean log-odds) and `age` (the weighted mean); other member
    outputs are left out. Weights are one per member, in the members' order, scaled to sum to 1 (None: equal).
    Its metadata names the members and their weights; calibrate the result (agegender calibrate), as the
    members' calibrations do not carry over."""
    import onnx
    from onnx import TensorProto, compose, helper, numpy_helper

    if len(models) < 2:
        raise ValueError("averaging needs at least two models")
    out = output_file(out, "average.onnx")
    gender_weights = member_weights(gender_weights, len(models), "gender")
    age_weights = member_weights(age_weights, len(models), "age")
    paths = [resolve_model_path(model) for model in models]
    loaded = []
    for path in paths:
        if path.suffix != ".onnx":
            raise ModelError(f"{path}: average exported .onnx models (agegender export)")
        model = _load(path)
        outputs = {output.name for output in model.graph.output}
        if len(model.graph.input) != 1 or not {"age", "gender"} <= outputs:
            raise ModelError(f"{path} is not an agegender model (one image input, outputs age and gender)")
        float_preprocessing(model)  # members exported before the export did it themselves
        loaded.append(model)
    sizes = [model.graph.input[0].type.tensor_type.shape.dim[1].dim_value for model in loaded]
    size = max(sizes)

    nodes, initializers, odds, ages, members = [], [], [], [], []
    constants = {}  # name -> tensor of the graph's own constants, each added once

    def constant(name: str, value) -> str:
        constants.setdefault(name, numpy_helper.from_array(np.asarray(value), name))
        return name

    batch = constant("batch_dims", np.array([0], np.int64))
    nodes += [helper.make_node("Shape", ["image"], ["image_shape"]),
              helper.make_node("Slice", ["image_shape", batch, constant("one", np.array([1], np.int64))],
                               ["batch_size"])]
    for index, (model, own_size, path) in enumerate(zip(loaded, sizes, paths)):
        prefix = f"member{index}/"
        members.append({"file": path.name, **_agegender_metadata(model),
                        "gender_weight": gender_weights[index], "age_weight": age_weights[index]})
        model = compose.add_prefix(model, prefix)
        member_input = model.graph.input[0].name
        if own_size == size:
            nodes.append(helper.make_node("Identity", ["image"], [member_input]))
        else:
            resized = constant(f"{prefix}size", np.array([own_size, own_size, 3], np.int64))
            nodes += [helper.make_node("Concat", ["batch_size", resized], [f"{prefix}sizes"], axis=0),
                      helper.make_node("Resize", ["image", "", "", f"{prefix}sizes"], [member_input], mode="linear")]
        nodes += list(model.graph.node)
        initializers += list(model.graph.initializer)
        # log(p) - log(1 - p) of the clipped female probability, and the age as it is
        probability = f"{prefix}gender_clipped"
        nodes += [helper.make_node("Clip", [f"{prefix}gender", constant("low", np.float32(CLIP)),
                                            constant("high", np.float32(1 - CLIP))], [probability]),
                  helper.make_node("Log", [probability], [f"{prefix}log_p"]),
                  helper.make_node("Sub", [constant("unit", np.float32(1)), probability], [f"{prefix}q"]),
                  helper.make_node("Log", [f"{prefix}q"], [f"{prefix}log_q"]),
                  helper.make_node("Sub", [f"{prefix}log_p", f"{prefix}log_q"], [f"{prefix}odds"]),
                  helper.make_node("Mul", [f"{prefix}odds", constant(f"{prefix}gender_weight",
                                                                    np.float32(gender_weights[index]))],
                                   [f"{prefix}weighted_odds"]),
                  helper.make_node("Mul", [f"{prefix}age", constant(f"{prefix}age_weight",
                                                                   np.float32(age_weights[index]))],
                                   [f"{prefix}weighted_age"])]
        odds.append(f"{prefix}weighted_odds")
        ages.append(f"{prefix}weighted_age")
    nodes += [helper.make_node("Sum", odds, ["mean_odds"]), helper.make_node("Sigmoid", ["mean_odds"], ["gender"]),
              helper.make_node("Sum", ages, ["age"])]

    graph = helper.make_graph(
        nodes, "average", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", size, size, 3])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 1]) for name in ("age", "gender")],
        initializers + list(constants.values()))
    opsets = {}
    for model in loaded:
        for opset in model.opset_import:
            opsets[opset.domain] = max(opsets.get(opset.domain, 0), opset.version)
    combined = helper.make_model(graph, opset_imports=[helper.make_opsetid(domain, version)
                                                       for domain, version in opsets.items()],
                                 ir_version=max(model.ir_version for model in loaded))
    weights = sorted({member.get("weights", "float32") for member in members})
    combined.metadata_props.add(key="agegender", value=json.dumps({
        "name": "average of " + " and ".join(member.get("name", member["file"]) for member in members),
        "image_size": size, "weights": " and ".join(weights), "members": members}))
    onnx.checker.check_model(combined)
    out.parent.mkdir(parents=True, exist_ok=True)
    return _save(combined, out)


def member_weights(weights: list[float] | None, count: int, output: str) -> list[float]:
    """One weight per member, scaled to sum to 1 (to 6 decimals, as the metadata shows them); None: equal."""
    if weights is None:
        weights = [1.0] * count
    if len(weights) != count:
        raise ValueError(f"{len(weights)} {output} weights for {count} models: give one per model, in their order")
    if not np.all(np.isfinite(weights)) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"{output} weights must be numbers of zero or more, and not all zero")
    return [round(float(weight) / sum(weights), 6) for weight in weights]


def _load(path: Path):
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as error:  # noqa: BLE001 - any load failure of a foreign file
        raise ModelError(f"{path} is not a loadable ONNX model ({error})".splitlines()[0]) from None


def _save(model, out: Path) -> Path:
    """Write `out` only when complete: an interrupted write never leaves a half-written model under its name."""
    import onnx

    partial = out.with_name(out.name + ".partial")
    onnx.save(model, str(partial))
    os.replace(partial, out)
    return out


def _metadata(model) -> dict:
    entries = {prop.key: prop.value for prop in model.metadata_props}
    return json.loads(entries.get("agegender", "{}"))


def _agegender_metadata(model) -> dict:
    """A member's own metadata, less what applies to it alone (its calibration and flip setting)."""
    info = _metadata(model)
    for key in ("age_interval", "gender_temperature", "test_time_flip", "calibrated_on"):
        info.pop(key, None)
    return info


def extract_members(model: str | Path, out_folder: str | Path) -> list[Path]:
    """Write each member of an averaged model (agegender average) back as its own .onnx file in `out_folder`,
    under the file name it was averaged from, with its own metadata: to run one member alone (faster), to
    evaluate it, or to average it with another network. The members' own calibrations were not kept, so
    calibrate a member before reading its intervals."""
    import onnx
    from onnx import TensorProto, helper

    path = resolve_model_path(model)
    combined = _load(path)
    members = _metadata(combined).get("members")
    if not members:
        raise ModelError(f"{path} is not an average of models (agegender average)")
    out_folder = Path(out_folder)
    out_folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index, member in enumerate(members):
        prefix = f"member{index}/"
        # the member's input is what the averaged graph feeds it: the image as it is, or resized
        image = next(node.output[0] for node in combined.graph.node
                     if node.input and node.input[0] == "image" and node.output[0].startswith(prefix))
        # the member's nodes: those its outputs depend on, back to its input (node order kept: topological)
        needed, kept = {f"{prefix}gender", f"{prefix}age"}, []
        for node in reversed(combined.graph.node):
            if image not in node.output and needed & set(node.output):
                kept.append(node)
                needed |= {name for name in node.input if name}

        def unprefixed(name: str) -> str:
            return name[len(prefix):] if name.startswith(prefix) else name

        nodes = []
        for node in reversed(kept):
            node = onnx.NodeProto.FromString(node.SerializeToString())
            node.name = unprefixed(node.name)
            node.input[:] = [unprefixed(name) for name in node.input]
            node.output[:] = [unprefixed(name) for name in node.output]
            nodes.append(node)
        initializers = []
        for tensor in combined.graph.initializer:
            if tensor.name in needed:
                tensor = onnx.TensorProto.FromString(tensor.SerializeToString())
                tensor.name = unprefixed(tensor.name)
                initializers.append(tensor)
        size = int(member["image_size"])
        graph = helper.make_graph(
            nodes, member.get("name", "member"),
            [helper.make_tensor_value_info(unprefixed(image), TensorProto.FLOAT, ["N", size, size, 3])],
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 1]) for name in ("age", "gender")],
            initializers)
        alone = helper.make_model(graph, opset_imports=combined.opset_import, ir_version=combined.ir_version)
        info = {key: value for key, value in member.items() if key not in ("file", "gender_weight", "age_weight")}
        alone.metadata_props.add(key="agegender", value=json.dumps(info))
        onnx.checker.check_model(alone)
        written.append(_save(alone, out_folder / Path(member["file"]).name))
    return written
