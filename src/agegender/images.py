"""Decode face images once: read, convert to RGB, resize, and cache the pixels on disk for the next run."""
from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DataWarning, ImageError, ImageTooLarge, NotAnImage, TruncatedImage

try:  # HEIC/HEIF (iPhones' photos) with the `heic` extra: pi-heif, which only decodes (LGPL libheif, no encoder)
    import pi_heif

    pi_heif.register_heif_opener()
    HEIF_READABLE = True
except ImportError:
    HEIF_READABLE = False

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".3gp", ".wmv", ".flv", ".ts")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".heic", ".heif")
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")  # ISO BMFF 'ftyp' brands


def files_ending(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Every file below `folder` whose name ends with one of `suffixes` (in any case), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name.lower().endswith(suffixes))


def image_files(folder: Path) -> list[Path]:
    """Every image file below `folder`, sorted."""
    return files_ending(folder, IMAGE_SUFFIXES)

# Refuse decompression bombs rather than allocate gigabytes for one file.
Image.MAX_IMAGE_PIXELS = 64_000_000


def open_rgb(source) -> Image.Image:
    """An 8-bit RGB PIL image from a path, file object, PIL image or array (uint8; 16-bit; floats in 0-1), with
    EXIF orientation applied."""
    if isinstance(source, Image.Image):
        return _to_rgb(source)
    if isinstance(source, np.ndarray):
        array = source
        if array.ndim == 2:
            array = np.stack([array] * 3, axis=-1)
        if array.ndim != 3 or array.shape[-1] not in (3, 4):
            raise ImageError(f"an image array must be HxW, HxWx3 or HxWx4, not {array.shape}")
        return Image.fromarray(_to_uint8(np.ascontiguousarray(array[..., :3])))
    name = getattr(source, "name", source)
    try:
        with Image.open(source) as image:
            if image.width * image.height > Image.MAX_IMAGE_PIXELS:  # PIL only warns up to twice the limit
                raise Image.DecompressionBombError
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a folder, not an image") from None
    except UnidentifiedImageError:
        if not HEIF_READABLE and _is_heif(source):
            raise NotAnImage(f"{name}: a HEIC/HEIF photo, which needs the heic extra: pip install "
                             "'agegender[heic]'") from None
        if str(name).lower().endswith(VIDEO_SUFFIXES):
            raise NotAnImage(f"{name}: a video, not a photo; read it with: agegender video {name}") from None
        raise NotAnImage(f"{name}: not an image (or an unsupported format)") from None
    except Image.DecompressionBombError:
        raise ImageTooLarge(f"{name}: image dimensions are too large (over {Image.MAX_IMAGE_PIXELS:,} pixels)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise TruncatedImage(f"{name}: unreadable or truncated image ({error})") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB. Pillow's own conversion clips 16-bit and 32-bit grey values at 255, which turns a 16-bit PNG
    almost white (and its faces unfindable), so those are scaled down instead."""
    if image.mode.startswith("I") or image.mode == "F":
        return Image.fromarray(_to_uint8(np.asarray(image))).convert("RGB")
    return image.convert("RGB")


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Pixels of any numeric type as uint8: floats in 0-1 scaled by 255, values above 255 taken as 16-bit."""
    if values.dtype == np.uint8:
        return values
    if values.dtype.kind not in "uifb":
        raise ImageError(f"image pixels must be numbers, not {values.dtype}")
    scaled = values.astype(np.float64)
    top = scaled.max(initial=0.0)
    if values.dtype.kind == "f" and top <= 1.0:
        scaled *= 255.0
    elif top > 255:
        scaled /= 257.0  # 16-bit samples (PNG's, or a 32-bit image holding them)
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def _is_heif(source) -> bool:
    """Whether a file (path or file object) starts like a HEIC/HEIF image."""
    try:
        if hasattr(source, "read"):
            source.seek(0)
            header = source.read(12)
        else:
            with open(source, "rb") as file:
                header = file.read(12)
    except (OSError, ValueError):
        return False
    return header[4:8] == b"ftyp" and header[8:12] in HEIF_BRANDS


def load_crop(source, size: int) -> np.ndarray:
    """One face crop as a size x size x 3 uint8 array."""
    return np.asarray(open_rgb(source).resize((size, size), Image.BILINEAR), dtype=np.uint8)


def scaled(rgb: np.ndarray, scale: float) -> np.ndarray:
    """An H x W x 3 uint8 image resized by `scale` (bilinear, at least 1 px a side)."""
    height, width = rgb.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))


def _cache_file(paths: list[str], size: int) -> Path:
    root = Path(os.environ.get("AGEGENDER_CACHE", Path.home() / ".cache" / "agegender"))
    key = hashlib.sha1()
    for path in paths:
        stat = os.stat(path) if os.path.exists(path) else None
        key.update(f"{os.path.abspath(path)}|{stat and stat.st_size}|{stat and stat.st_mtime_ns}\n".encode())
    return root / f"crops-{size}px-{len(paths)}-{key.hexdigest()[:16]}.npz"


def load_crops(paths: list[str], size: int, cache: bool = True, workers: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Decode every image at `size` px: (pixels N x size x size x 3 uint8, readable mask N bool).

    Unreadable files are counted in one warning; their rows hold zeros and a False mask.
    The result is cached (keyed by paths, sizes and times) so that later runs skip decoding.
    """
    cache_file = _cache_file(paths, size) if cache else None
    if cache_file and cache_file.exists():
        with np.load(cache_file) as stored:
            pixels, readable, errors = stored["pixels"], stored["readable"], list(stored["errors"])
    else:
        pixels = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
        readable = np.zeros(len(paths), dtype=bool)
        errors: list[str] = []

        def decode(index: int) -> None:
            try:
                pixels[index] = load_crop(paths[index], size)
                readable[index] = True
            except ImageError as error:
                errors.append(str(error))
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(decode, range(len(paths))))
        if cache_file:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            partial = cache_file.with_suffix(".partial.npz")
            np.savez(partial, pixels=pixels, readable=readable, errors=np.array(errors, dtype=str))
            partial.replace(cache_file)  # atomic: a killed run never leaves a half-written cache
    if errors:
        warnings.warn(f"{len(errors)} of {len(paths)} images could not be read and were skipped "
                      f"(first: {sorted(errors)[0]})", DataWarning, stacklevel=2)
    return pixels, readable
