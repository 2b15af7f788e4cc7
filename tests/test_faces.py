"""Face detection, alignment and prediction on photos (the example photo ships with the repository)."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agegender import Predictor
from agegender.blazeface import FACE_SHARE, tile_corners, tile_sides
from agegender.cli import main
from agegender.errors import ModelError
from agegender.faces import CHIP_SIZE, FaceFinder
from agegender.predictor import AgeGenderModel

from conftest import synthetic_face

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"


@pytest.fixture(scope="module")
def finder():
    return FaceFinder()


@pytest.fixture(scope="module")
def photo():
    return np.asarray(Image.open(EXAMPLE).convert("RGB"))


def test_finds_the_one_face_in_the_example_photo(finder, photo):
    faces = finder.find(photo)
    assert len(faces) == 1  # the mission badge on the suit scores below the threshold
    x0, y0, x1, y1 = faces[0].box
    assert 160 <= x0 <= 190 and 60 <= y0 <= 90 and 250 <= x1 <= 280 and 150 <= y1 <= 180
    left_eye, right_eye, nose, mouth_left, mouth_right = faces[0].landmarks
    assert left_eye[0] < nose[0] < right_eye[0] and left_eye[1] < nose[1] < mouth_left[1]
    assert faces[0].chip.shape == (CHIP_SIZE, CHIP_SIZE, 3)


def test_counts_every_face_and_none_in_a_faceless_photo(finder, photo):
    assert len(finder.find(np.concatenate([photo, photo[:, ::-1]], axis=1))) == 2
    assert finder.find(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)) == []


def _mean_error(a, b):
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


@pytest.mark.parametrize("angle, scale, offset", [(0, 1.0, (0, 0)), (15, 1.4, (90, -40)), (-20, 0.8, (-60, 50))])
def test_recovers_the_same_chip_from_a_moved_scaled_rotated_face(finder, photo, angle, scale, offset):
    reference = finder.find(photo)[0].chip
    canvas = Image.new("RGB", (1000, 800), (90, 120, 90))
    moved = Image.fromarray(photo).resize((round(512 * scale),) * 2, Image.BICUBIC).rotate(angle, Image.BICUBIC,
                                                                                            expand=True)
    canvas.paste(moved, (500 - moved.width // 2 + offset[0], 400 - moved.height // 2 + offset[1]))
    faces = finder.find(np.asarray(canvas))
    assert len(faces) == 1
    assert _mean_error(faces[0].chip, reference) < 12  # measured 3-8 grey levels for these three cases


def _tilted(photo, angle):
    return np.asarray(Image.fromarray(photo).rotate(angle, Image.BICUBIC))


@pytest.mark.parametrize("angle", [50, -50])
def test_blazeface_finds_a_tilted_face_that_hog_misses_and_cuts_it_upright(finder, photo, angle):
    reference = finder.find(photo)[0]
    assert reference.detector == "hog"
    tilted = _tilted(photo, angle)
    assert FaceFinder(detector="hog").find(tilted) == []
    faces = finder.find(tilted)
    assert len(faces) == 1 and faces[0].detector == "blazeface" and faces[0].score > 0.6
    assert _mean_error(faces[0].chip, reference.chip) < 10  # measured 4.7 grey levels at 50 degrees
    left_eye, right_eye = faces[0].landmarks[:2]  # in the photo: the eyes tilted with it
    assert abs(np.degrees(np.arctan2(right_eye[1] - left_eye[1], right_eye[0] - left_eye[0])) + angle) < 8


def test_a_blazeface_detection_without_a_face_to_cut_is_skipped(finder, photo):
    from agegender.blazeface import Detection

    point = Detection(box=np.array([10.0, 10, 11, 11]), keypoints=np.full((6, 2), 10.5), score=0.9)
    assert finder._cut_blazeface(photo, point) is None


def test_each_detector_alone(photo):
    hog, = FaceFinder(detector="hog").find(photo)
    blazeface, = FaceFinder(detector="blazeface").find(photo)
    assert blazeface.detector == "blazeface" and len(blazeface.landmarks) == 5
    assert _mean_error(blazeface.chip, hog.chip) < 6  # measured 2.8: the same landmarks, found from another box
    with pytest.raises(ValueError, match="unknown face detector 'cnn': choose one of both, hog, blazeface"):
        FaceFinder(detector="cnn")
    with pytest.raises(ValueError, match="unknown face detector"):
        Predictor(detector="cnn")


@pytest.mark.parametrize("width, height, min_face", [(1024, 768, 80), (4000, 3000, 156), (300, 200, 40),
                                                     (5000, 400, 40)])
def test_blazeface_tiles_cover_the_photo_so_that_every_face_lies_whole_in_one(width, height, min_face):
    sides = tile_sides(max(width, height), min_face)
    assert sides[0] == max(width, height) and sides[-1] <= max(FACE_SHARE * min_face, sides[0])
    for smaller, larger in zip(sides[1:], sides):
        assert larger / smaller <= 4  # each level sees faces from 1/8 of its side, the one above from 1/8 of its
    for side in sides[1:]:
        corners = tile_corners(width, height, side)
        face = side // 2  # the largest face this level must find whole: the level above sees it at 1/8
        for x in range(0, width - face + 1, max(1, face // 3)):
            for y in range(0, height - face + 1, max(1, face // 3)):
                assert any(left <= x and x + face <= left + side and top <= y and y + face <= top + side
                           for left, top in corners)


def test_predictor_api_on_a_photo_and_a_ready_crop(trained_run, photo):
    predictor = Predictor(trained_run)
    faces = predictor.predict(str(EXAMPLE))
    assert len(faces) == 1 and faces[0].detection_score > 0.3 and faces[0].detector == "hog"
    assert faces[0].gender in ("male", "female") and faces[0].age >= 0
    crop = predictor.predict(photo[80:170, 175:265], aligned=True)
    assert len(crop) == 1 and crop[0].box == [0, 0, 90, 90] and crop[0].landmarks is None


def test_flip_averages_each_face_with_its_own_mirror_image(tiny_onnx):
    # Faces like the tiny model's training images (uniform noise can saturate its gender output to exactly 0 or 1
    # in float32, where no mirror can change it), moved off-centre so that the mirror image differs.
    rng = np.random.default_rng(0)
    pixels = np.stack([np.roll(synthetic_face(age, gender, rng, size=32), 7, axis=1)
                       for age, gender in ((5, 0), (25, 1), (40, 0), (60, 1), (80, 0))]).astype(np.float32)
    plain = AgeGenderModel(tiny_onnx, flip=False)
    expected = {name: (plain.predict_outputs(pixels)[name] + plain.predict_outputs(pixels[:, :, ::-1])[name]) / 2
                for name in ("age", "gender")}
    # A batch size that splits the faces and their mirror images across runs must not mix them up.
    flipped = AgeGenderModel(tiny_onnx, flip=True).predict_outputs(pixels, batch_size=2)
    def scale(name, values):  # the mirror's effect on a confident gender shows on the logit scale
        return np.log(values / (1 - values)) if name == "gender" else values

    for name, values in expected.items():
        np.testing.assert_allclose(flipped[name], values, rtol=1e-5, atol=1e-5)
    # ...and the mirror images make a difference, so the check above could fail (one output may be flat: a
    # tiny model's ReLU age output can be 0 for every one of these faces)
    assert any(not np.allclose(scale(name, values), scale(name, plain.predict_outputs(pixels)[name]))
               for name, values in expected.items())


def _bad_inputs(tmp_path):
    tmp_path.mkdir()
    good = tmp_path / "good.jpg"
    Image.open(EXAMPLE).save(good)
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "truncated.jpg").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    (tmp_path / "notes.jpg").write_text("hello")
    Image.new("1", (20000, 20000)).save(tmp_path / "huge.png")
    Image.open(EXAMPLE).convert("L").save(tmp_path / "grey.png")
    Image.open(EXAMPLE).convert("RGBA").save(tmp_path / "alpha.png")
    return tmp_path


def test_bad_inputs_get_their_message_and_the_batch_goes_on(trained_run, tmp_path, capsys):
    folder = _bad_inputs(tmp_path / "photos")
    annotated = tmp_path / "annotated"
    code = main(["predict", str(folder), "--model", str(trained_run), "--json", "--annotate", str(annotated)])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert sorted(Path(row["file"]).name for row in result["faces"]) == ["alpha.png", "good.jpg", "grey.png"]
    errors = "\n".join(result["errors"])
    assert len(result["errors"]) == 4
    assert "zero.jpg: not an image" in errors and "notes.jpg: not an image" in errors
    assert "truncated.jpg: unreadable or truncated image" in errors and "huge.png: image dimensions are too large" in errors
    assert sorted(p.name for p in annotated.iterdir()) == ["alpha.annotated.jpg", "good.annotated.jpg",
                                                           "grey.annotated.jpg"]


def test_the_detector_is_chosen_on_the_command_line_and_named_per_face(trained_run, photo, tmp_path, capsys):
    Image.fromarray(_tilted(photo, 50)).save(tmp_path / "tilted.jpg")
    assert main(["predict", str(tmp_path / "tilted.jpg"), "--model", str(trained_run), "--csv"]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert dict(zip(header.split(","), row.split(",")))["detector"] == "blazeface"
    assert main(["predict", str(tmp_path / "tilted.jpg"), "--model", str(trained_run), "--detector", "hog"]) == 0
    assert "tilted.jpg: no face found" in capsys.readouterr().out


def test_a_photo_without_faces_is_reported(trained_run, tmp_path, capsys):
    Image.fromarray(np.full((200, 300, 3), 127, np.uint8)).save(tmp_path / "wall.jpg")
    assert main(["predict", str(tmp_path / "wall.jpg"), "--model", str(trained_run)]) == 0
    assert "wall.jpg: no face found" in capsys.readouterr().out


def test_the_shipped_default_model_labels_the_example_photo():
    from agegender.predictor import DEFAULT_MODEL

    if not DEFAULT_MODEL.is_file():
        pytest.skip("no default model shipped yet")
    faces = Predictor().predict(EXAMPLE)
    assert len(faces) == 1
    assert faces[0].gender == "female" and 20 <= faces[0].age <= 65  # Eileen Collins was 42 in this 1998 photo
    assert faces[0].age_low < faces[0].age < faces[0].age_high  # the shipped model carries its calibration


def test_the_shipped_model_runs_face_and_mirror_image_unless_told_to_run_one_pass(capsys):
    from agegender.predictor import DEFAULT_MODEL

    if not DEFAULT_MODEL.is_file():
        pytest.skip("no default model shipped yet")
    both, one_pass = Predictor(), Predictor(flip=False)
    assert both.model.flip and not one_pass.model.flip  # the shipped model's metadata asks for the flip
    face, plain = both.predict(EXAMPLE)[0], one_pass.predict(EXAMPLE)[0]
    assert (face.age, face.gender_probability) != (plain.age, plain.gender_probability)
    assert main(["predict", str(EXAMPLE), "--no-flip", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)["faces"][0]
    assert printed["age"] == pytest.approx(plain.age, abs=0.06)
    assert printed["gender_probability"] == pytest.approx(plain.gender_probability, abs=1e-3)


def test_the_shipped_default_model_stays_within_the_size_limit_and_documents_its_calibration():
    from agegender.predictor import DEFAULT_MODEL, AgeGenderModel

    if not DEFAULT_MODEL.is_file():
        pytest.skip("no default model shipped yet")
    assert DEFAULT_MODEL.stat().st_size <= 25_000_000  # the predict issue's limit for the shipped model
    model = AgeGenderModel(DEFAULT_MODEL)
    assert model.gender_temperature > 0 and model.age_interval["level"] == 0.8  # calibrated before shipping
    assert (DEFAULT_MODEL.parent / "MODEL_CARD.md").is_file()


def _canvas_with_the_example_face(photo, size, face_px, where=(0.6, 0.4)):
    """The example photo pasted into a plain canvas of `size`, scaled so that its face is about `face_px` wide
    (the face spans 87 of its 512 px)."""
    canvas = Image.new("RGB", size, (90, 120, 90))
    side = round(512 * face_px / 87)
    canvas.paste(Image.fromarray(photo).resize((side, side), Image.BICUBIC),
                 (round(size[0] * where[0]), round(size[1] * where[1])))
    return np.asarray(canvas)


def test_finds_a_group_photo_sized_face_in_a_12_megapixel_photo(finder, photo):
    # Searched at 1024 px, a 4000 x 3000 photo lost every face under about 290 px; at 2048 px one of 200 is found.
    faces = finder.find(_canvas_with_the_example_face(photo, (4000, 3000), 200))
    assert len(faces) == 1
    x0, y0, x1, y1 = faces[0].box
    assert 2400 < x0 < x1 < 2400 + round(512 * 200 / 87) and 150 < x1 - x0 < 260  # in the photo's pixels


def test_smaller_faces_are_found_when_asked_for(finder, photo):
    small_face = _canvas_with_the_example_face(photo, (1024, 768), 50)
    assert FaceFinder(detector="hog").find(small_face) == []  # HOG looks for faces from 80 px by default
    faces = FaceFinder(min_face=40).find(small_face)
    assert len(faces) == 1 and 35 < faces[0].box[2] - faces[0].box[0] < 70
    assert faces[0].chip.shape == (CHIP_SIZE, CHIP_SIZE, 3)


def test_an_impossible_smallest_face_is_refused(tmp_path, capsys):
    from agegender.errors import ImageError

    for impossible in (10, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="from 20 up"):
            Predictor(min_face=impossible)
    with pytest.raises(ImageError, match="million pixels"):  # 192 million pixels to search: refused, not run
        FaceFinder(min_face=20).find(np.zeros((3000, 4000, 3), np.uint8))
    assert main(["predict", str(EXAMPLE), "--min-face", "5"]) == 2
    assert "from 20 up" in capsys.readouterr().err


def test_many_photos_at_once_come_back_in_order_as_one_at_a_time(trained_run, photo, tmp_path):
    (tmp_path / "notes.jpg").write_text("not a photo")
    mirrored = Image.fromarray(np.ascontiguousarray(photo[:, ::-1]))
    sources = [str(EXAMPLE), str(tmp_path / "notes.jpg"), mirrored, photo] * 3
    predictor = Predictor(trained_run)
    results = list(predictor.predict_many(sources, workers=3))
    assert all(result.source is source for result, source in zip(results, sources))
    for result in results:
        if isinstance(result.source, str) and result.source.endswith("notes.jpg"):
            assert result.faces is None and "not an image" in str(result.error)
        else:
            assert result.error is None and result.faces == predictor.predict(result.source)
            assert result.photo.size == (512, 512) and len(result.faces) == 1


def test_a_missing_blazeface_model_is_one_clear_error(monkeypatch, tmp_path, capsys):
    from agegender import blazeface

    monkeypatch.setattr(blazeface, "WEIGHTS", tmp_path)
    (tmp_path / "blazeface_full_range.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="BlazeFace's model .*blazeface_full_range.onnx cannot be loaded"):
        FaceFinder()
    assert main(["predict", str(EXAMPLE)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.endswith("(--detector hog)")
    assert main(["predict", str(EXAMPLE), "--detector", "hog"]) == 0  # HOG alone needs no BlazeFace file
