"""Draw each face's box and label onto a copy of its photo."""
from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

COLOURS = {"female": (230, 60, 140), "male": (40, 120, 230)}


def label(face) -> str:
    return f"{face.gender[0].upper()} {face.age:.0f}"


def annotate(image: Image.Image, faces, labels: list[str] | None = None) -> Image.Image:
    """A copy of `image` with each face boxed and labelled (`labels`: one per face instead of gender and age)."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 300))
    font = ImageFont.load_default(size=max(12, round(max(image.size) / 40)))
    for index, face in enumerate(faces):
        colour = COLOURS[face.gender]
        x0, y0, x1, y1 = face.box
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        text = labels[index] if labels else label(face)
        left, top, right, bottom = draw.textbbox((x0, y0), text, font=font)
        top_edge = max(0, y0 - (bottom - top) - 2 * width)
        draw.rectangle((x0, top_edge, x0 + right - left + 2 * width, top_edge + bottom - top + 2 * width), fill=colour)
        draw.text((x0 + width, top_edge + width - (top - y0)), text, fill="white", font=font)
    return image
