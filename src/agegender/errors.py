"""Errors and warnings a user can cause and act on; light, so that prediction imports nothing heavy."""
from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A problem with the user's data that they can fix: the message says what and where."""


class DataWarning(UserWarning):
    """Data that was skipped (unreadable files, malformed labels); the work goes on without it."""


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and the reason."""


class ModelError(ValueError):
    """A model path that cannot be loaded; the message says what is expected."""


class NotAnImage(ImageError):
    """Bytes that no supported image format recognises."""


class ImageTooLarge(ImageError):
    """An image whose dimensions exceed the pixel limit (decompression bombs included)."""


class TruncatedImage(ImageError):
    """An image whose file is cut short or corrupt."""


class SearchTooLarge(ImageError):
    """Faces asked for so small, in an image so large, that the search would exceed its pixel limit."""


def output_file(path: str | Path, example: str) -> Path:
    """`path` as a file to write, refused when a folder is there: before any work, so that nothing is left half
    written (`example` names such a file inside the folder, for the message)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--out {path} is a folder; name the file to write, e.g. {path / example}")
    return path
