"""What a model file holds and how it will run (agegender info): its input, weights, calibration, flip
setting and, for an average, its members and their weights, read from the file alone, without running it."""
from __future__ import annotations

from pathlib import Path

from .predictor import AgeGenderModel


def model_info(model: str | Path | None) -> dict:
    """The model's own metadata with its path, format, file size and input size."""
    loaded = AgeGenderModel(model)
    return {"path": str(loaded.path), "format": loaded.path.suffix.lstrip("."),
            "size_bytes": loaded.path.stat().st_size, **loaded.metadata, "image_size": loaded.image_size,
            "test_time_flip": loaded.flip}


def info_text(info: dict) -> str:
    lines = [f"{info['path']} ({info['size_bytes'] / 1e6:.1f} MB, {info['format']})",
             f"name: {info.get('name', 'not recorded')}",
             f"input: {info['image_size']} x {info['image_size']} RGB face crops, pixels 0-255",
             f"weights: {info.get('weights', 'float32')}",
             f"test-time flip: {'on (each face and its mirror image, averaged)' if info['test_time_flip'] else 'off'}"]
    temperature = info.get("gender_temperature")
    lines.append(f"gender temperature: {temperature}" if temperature else "gender temperature: none (not calibrated)")
    table = info.get("age_interval")
    if table:
        lines.append(f"age interval: {table['level']:.0%}, calibrated on {info.get('calibrated_on', 'unrecorded data')}")
        edges = [0, *table["edges"]]
        for index, low in enumerate(edges):
            bracket = f"{low:g}-{edges[index + 1]:g}" if index + 1 < len(edges) else f"{low:g}+"
            if "widen_distribution" in table:
                offsets = f"its own distribution's interval x {table['widen_distribution'][index]:g}"
            else:
                offsets = f"{table['low'][index]:+.1f} to {table['high'][index]:+.1f} years"
            lines.append(f"  predicted age {bracket}: {offsets} ({table['faces'][index]} faces)")
    else:
        lines.append("age interval: none (agegender calibrate adds one to an exported .onnx model)")
    members = info.get("members", [])
    if members:
        lines.append("members (agegender members takes them out):")
    for index, member in enumerate(members):
        equal = round(1 / len(members), 6)  # averages made before weights were recorded took the plain mean
        lines.append(f"  {index}: {member.get('name', member['file'])} ({member['image_size']} px, "
                     f"{member.get('weights', 'float32')}; gender weight {member.get('gender_weight', equal):g}, "
                     f"age weight {member.get('age_weight', equal):g})")
    return "\n".join(lines)
