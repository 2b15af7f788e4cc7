import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agegender.errors import DataWarning, ImageError
from agegender.images import load_crop, load_crops, open_rgb


def _jpeg(tmp_path, name="face.jpg", mode="RGB", size=(60, 50)):
    path = tmp_path / name
    Image.new(mode, size, color=128 if mode == "L" else None).save(path)
    return path


def test_bad_files_are_skipped_and_counted_in_one_warning(tmp_path):
    good = _jpeg(tmp_path)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    paths = [str(good), str(truncated), str(empty), str(text), str(tmp_path / "missing.jpg")]
    with pytest.warns(DataWarning, match="4 of 5 images could not be read"):
        pixels, readable = load_crops(paths, 32, cache=False)
    assert readable.tolist() == [True, False, False, False, False]
    assert pixels.shape == (5, 32, 32, 3) and pixels.dtype == np.uint8


def test_decoded_crops_are_cached_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("AGEGENDER_CACHE", str(tmp_path / "cache"))
    path = _jpeg(tmp_path)
    first, _ = load_crops([str(path)], 16)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    second, _ = load_crops([str(path)], 16)
    assert np.array_equal(first, second)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_grey_and_alpha_images_become_rgb(tmp_path, mode):
    crop = load_crop(_jpeg(tmp_path, "x.png", mode), 24)
    assert crop.shape == (24, 24, 3)


def test_decompression_bombs_are_refused(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("1", (20000, 20000)).save(path)  # 50 MB of pixels, tiny on disk
    with pytest.raises(ImageError, match="too large"):
        load_crop(path, 32)


@pytest.mark.parametrize("content, message", [(b"", "not an image"), (b"GIF89a", "not an image")])
def test_unreadable_bytes_name_the_file(content, message):
    stream = io.BytesIO(content)
    stream.name = "upload.jpg"
    with pytest.raises(ImageError, match=f"upload.jpg: {message}"):
        load_crop(stream, 32)


def test_exif_orientation_is_applied(tmp_path):
    from agegender.images import open_rgb

    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    Image.new("RGB", (60, 40)).save(path, exif=exif)
    assert open_rgb(path).size == (40, 60)


HEIC_PHOTO = Path(__file__).parent / "data" / "astronaut.heic"  # examples/astronaut.jpg saved as HEIC (13 KB)


def test_an_iphone_style_heic_photo_is_read_with_its_face(tmp_path):
    pytest.importorskip("pi_heif")
    from agegender import Predictor
    from agegender.images import image_files

    assert np.asarray(open_rgb(HEIC_PHOTO)).shape == (512, 512, 3)
    faces = Predictor().predict(HEIC_PHOTO)
    assert len(faces) == 1 and faces[0].gender == "female"  # as from the JPEG
    (tmp_path / "IMG_0001.HEIC").write_bytes(HEIC_PHOTO.read_bytes())
    assert image_files(tmp_path) == [tmp_path / "IMG_0001.HEIC"]  # folders' HEIC photos are listed


def test_without_the_heic_extra_a_heic_photo_says_what_to_install(monkeypatch, tmp_path):
    import agegender.images as images
    from PIL import UnidentifiedImageError

    def unknown(*args, **kwargs):  # as Pillow answers where no HEIF plugin is registered
        raise UnidentifiedImageError("cannot identify image file")

    monkeypatch.setattr(images, "HEIF_READABLE", False)
    monkeypatch.setattr(images.Image, "open", unknown)
    with pytest.raises(ImageError, match=r"a HEIC/HEIF photo, which needs the heic extra: pip install 'agegender\[heic\]'"):
        open_rgb(HEIC_PHOTO)
    with pytest.raises(ImageError, match=r"a HEIC/HEIF photo"):
        open_rgb(io.BytesIO(HEIC_PHOTO.read_bytes()))
    (tmp_path / "notes.heic").write_text("not a photo")
    with pytest.raises(ImageError, match="not an image"):
        open_rgb(tmp_path / "notes.heic")


def test_16_bit_and_float_images_keep_their_picture(tmp_path):
    # Pillow's own conversion clipped a 16-bit PNG's grey values at 255: the photo came out white, its face lost.
    grey = np.asarray(Image.open(Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg").convert("L"))
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    assert Image.open(tmp_path / "sixteen.png").mode.startswith("I")
    np.testing.assert_array_equal(np.asarray(open_rgb(tmp_path / "sixteen.png"))[..., 1], grey)
    rgb = np.stack([grey] * 3, axis=-1)
    for array in (rgb.astype(np.uint16) * 257, rgb / 255.0, rgb.astype(np.float32), rgb.astype(np.int64)):
        np.testing.assert_array_equal(np.asarray(open_rgb(array)), rgb)
    with pytest.raises(ImageError, match="must be numbers"):
        open_rgb(np.full((4, 4, 3), "x"))
