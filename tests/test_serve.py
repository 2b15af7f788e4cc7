"""The REST API through FastAPI's test client: good photos, and every kind of bad upload."""
import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from agegender.serve import create_app

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"


@pytest.fixture(scope="module")
def client(tiny_onnx):
    return TestClient(create_app(tiny_onnx, max_upload_bytes=2 * 1024 * 1024))


def _png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_health_names_the_loaded_model(client):
    reply = client.get("/healthz").json()
    assert reply["status"] == "ok" and reply["model_file"] == "tiny.onnx" and reply["version"]


def test_the_flip_setting_can_be_chosen_at_start(client, tiny_onnx):
    assert client.get("/healthz").json()["test_time_flip"] is False  # as the model's metadata says: none
    with_flip = TestClient(create_app(tiny_onnx, flip=True))
    assert with_flip.get("/healthz").json()["test_time_flip"] is True


def test_the_face_detectors_can_be_chosen_at_start(client, tiny_onnx):
    tilted = {"image": ("tilted.png", _png(np.asarray(Image.open(EXAMPLE).convert("RGB").rotate(50))), "image/png")}
    assert client.get("/healthz").json()["detector"] == "both"
    assert [face["detector"] for face in client.post("/v1/predict", files=tilted).json()["faces"]] == ["blazeface"]
    hog_only = TestClient(create_app(tiny_onnx, detector="hog"))
    assert hog_only.get("/healthz").json()["detector"] == "hog"
    assert hog_only.post("/v1/predict", files=tilted).json()["faces"] == []


def test_a_photo_with_a_face(client):
    reply = client.post("/v1/predict", files={"image": ("a.jpg", EXAMPLE.read_bytes(), "image/jpeg")})
    assert reply.status_code == 200
    body = reply.json()
    assert body["image"] == {"width": 512, "height": 512}
    assert len(body["faces"]) == 1
    face = body["faces"][0]
    assert set(face) >= {"box", "landmarks", "age", "age_low", "age_high", "gender", "gender_probability",
                         "detection_score", "detector"}
    assert len(face["landmarks"]) == 5 and face["gender"] in ("male", "female")


def test_an_iphone_heic_photo(client):
    pytest.importorskip("pi_heif")
    heic = Path(__file__).parent / "data" / "astronaut.heic"
    reply = client.post("/v1/predict", files={"image": ("IMG_0001.HEIC", heic.read_bytes(), "image/heic")})
    assert reply.status_code == 200 and reply.json()["image"] == {"width": 512, "height": 512}
    assert len(reply.json()["faces"]) == 1


def test_smaller_faces_can_be_asked_for_per_request(client):
    canvas = Image.new("RGB", (1024, 768), (90, 120, 90))  # the example photo shrunk so that its face is 50 px
    canvas.paste(Image.open(EXAMPLE).resize((294, 294)), (600, 300))
    buffer = io.BytesIO()
    canvas.save(buffer, "PNG")
    upload = {"image": ("small.png", buffer.getvalue(), "image/png")}
    assert client.post("/v1/predict", files=upload).json()["faces"] == []  # faces from 80 px by default
    assert len(client.post("/v1/predict?min_face=40", files=upload).json()["faces"]) == 1
    reply = client.post("/v1/predict?min_face=5", files=upload)
    assert reply.status_code == 422 and "from 20 up" in reply.json()["error"]
    reply = client.post("/v1/predict?min_face=small", files=upload)
    assert reply.status_code == 422 and reply.json()["error"] == "min_face must be a number of pixels, e.g. ?min_face=40"


def test_a_photo_without_a_face(client):
    reply = client.post("/v1/predict", files={"image": ("wall.png", _png(np.full((120, 160, 3), 90, np.uint8)))})
    assert reply.status_code == 200 and reply.json()["faces"] == []


@pytest.mark.parametrize("files, status, message", [
    (None, 422, "no image in the request"),
    ({"image": ("notes.txt", b"hello, not a photo", "text/plain")}, 415, "not an image"),
    ({"image": ("empty.jpg", b"", "image/jpeg")}, 400, "empty"),
    ({"image": ("cut.jpg", EXAMPLE.read_bytes()[:20000], "image/jpeg")}, 400, "truncated"),
    ({"image": ("big.jpg", b"\xff" * (3 * 1024 * 1024), "image/jpeg")}, 413, "upload too large"),
])
def test_bad_uploads_get_a_clear_error_and_the_server_keeps_serving(client, files, status, message):
    reply = client.post("/v1/predict", files=files) if files else client.post("/v1/predict")
    assert reply.status_code == status
    assert message in reply.json()["error"]
    assert client.get("/healthz").status_code == 200


def test_decompression_bombs_are_refused(client):
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, format="PNG")
    reply = client.post("/v1/predict", files={"image": ("bomb.png", buffer.getvalue(), "image/png")})
    assert reply.status_code == 413 and "too large" in reply.json()["error"]


def test_the_page_and_the_api_schema(client):
    page = client.get("/")
    assert page.status_code == 200 and "<title>agegender" in page.text and "/v1/predict" in page.text
    schema = client.get("/openapi.json").json()
    assert "/v1/predict" in schema["paths"] and "/healthz" in schema["paths"]
