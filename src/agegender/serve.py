"""The web service: a REST API over Predictor (photos, and videos with the video extra), and a page to try it in a
browser.

The model loads once when the app is made. Predictions run in FastAPI's thread pool (the endpoint is a plain
function), so the event loop keeps serving. As many photos are searched for faces at a time as
`predict_many` would (`default_workers`; FaceFinder gives each its own detector).
"""
from __future__ import annotations

import io
import threading
import time
from dataclasses import asdict
from pathlib import Path

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse

from . import __version__
from .errors import ImageError, ImageTooLarge, NotAnImage, SearchTooLarge
from .faces import check_min_face
from .images import open_rgb
from .predictor import Predictor, default_workers

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
PAGE = Path(__file__).parent / "web" / "index.html"


class UploadTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: refuse a request body over `limit` bytes with 413 without passing it on.

    A body up to four times the limit is read and discarded first, so that simple clients, which send the
    whole body before they read the reply, see the 413 rather than a broken connection; a larger one is
    answered at once.
    """

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit
        self.allowed = limit + 64 * 1024  # room for the multipart envelope around the file

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.allowed:
            if int(length) <= 4 * self.limit:
                await self._drain(receive)
            return await self._refuse(scope, receive, send)
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.allowed:
                raise UploadTooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)
        try:
            await self.app(scope, limited_receive, tracking_send)
        except UploadTooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    @staticmethod
    async def _drain(receive):
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                return

    async def _refuse(self, scope, receive, send):
        response = JSONResponse({"error": f"upload too large: the limit is {self.limit // (1024 * 1024)} MB"},
                                status_code=413)
        await response(scope, receive, send)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(model: str | Path | None = None, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               flip: bool | None = None, detector: str = "both") -> FastAPI:
    predictor = Predictor(model, flip=flip, detector=detector)
    predictor.finder  # load the detector now, not on the first request
    slots = threading.Semaphore(default_workers())
    app = FastAPI(title="agegender", version=__version__,
                  description="Age and gender of every face in a photo. Estimates from a model trained on "
                              "UTKFace (non-commercial research licence); see the model card.")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        fields = {field for problem in exc.errors() for field in problem.get("loc", ())}
        if "min_face" in fields:
            return error(422, "min_face must be a number of pixels, e.g. ?min_face=40")
        if "every" in fields:
            return error(422, "every must be seconds between frames, 0 or more, e.g. ?every=0.5")
        if request.url.path == "/v1/video":
            return error(422, "no video in the request: send it as the multipart form field 'video'")
        return error(422, "no image in the request: send the photo as the multipart form field 'image'")

    @app.get("/healthz")
    def healthz() -> dict:
        """The service is up and its model is loaded."""
        return {"status": "ok", "version": __version__, "model": predictor.model.metadata.get("name"),
                "model_file": predictor.model.path.name, "test_time_flip": predictor.model.flip,
                "detector": predictor.detector}

    def read_upload(upload: UploadFile, min_face: float | None) -> io.BytesIO | JSONResponse:
        """The uploaded file as a stream with its name, or the reply to a bad min_face or an empty or oversized file."""
        try:
            check_min_face(min_face)
        except ValueError as problem:
            return error(422, str(problem))
        data = upload.file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            return error(413, f"upload too large: the limit is {max_upload_bytes // (1024 * 1024)} MB")
        if not data:
            return error(400, "the uploaded file is empty")
        stream = io.BytesIO(data)
        stream.name = upload.filename or "upload"
        return stream

    @app.post("/v1/predict", responses={400: {}, 413: {}, 415: {}, 422: {}})
    def predict(image: UploadFile = File(..., description="a photo: JPEG, PNG, WebP, BMP, GIF, or HEIC with the "
                                                         "heic extra"),
                min_face: float | None = Query(None, description="the smallest face to look for, in the photo's "
                                               "pixels (default: 80, more in photos over 2048 px; at least 20; "
                                               "smaller is slower)")) -> dict:
        """Every face in the photo: box (x0, y0, x1, y1), landmarks, age, gender and its probability."""
        stream = read_upload(image, min_face)
        if isinstance(stream, JSONResponse):
            return stream
        start = time.perf_counter()
        try:
            photo = open_rgb(stream)
        except NotAnImage as problem:
            return error(415, f"{problem}; send a JPEG, PNG, WebP, BMP, GIF or HEIC photo")
        except ImageTooLarge as problem:
            return error(413, str(problem))
        except ImageError as problem:
            return error(400, str(problem))
        try:
            with slots:
                faces = predictor.predict(photo, min_face=min_face)
        except SearchTooLarge as problem:
            return error(422, str(problem))
        return {"image": {"width": photo.width, "height": photo.height},
                "faces": [face.to_dict() for face in faces],
                "milliseconds": round(1000 * (time.perf_counter() - start), 1)}

    @app.post("/v1/video", responses={400: {}, 413: {}, 415: {}, 422: {}, 501: {}})
    def video(video: UploadFile = File(..., description="a video: MP4, MOV, MKV, WebM, AVI, ... (the video extra)"),
              every: float = Query(0.5, ge=0, description="seconds between the frames read (0: every frame)"),
              min_face: float | None = Query(None, description="the smallest face to look for, in the frame's "
                                             "pixels (default 80; at least 20)")) -> dict:
        """Frames read every `every` seconds with their faces, each numbered by person, and one age and gender per
        person; `warning` says when the file was cut short (the frames before the cut are kept)."""
        from .video import VideoExtraMissing

        stream = read_upload(video, min_face)
        if isinstance(stream, JSONResponse):
            return stream
        start = time.perf_counter()
        try:
            with slots:  # one of the service's slots, with one thread: a long video does not hold up the photos
                reading = predictor.predict_video(stream, every, min_face, workers=1)
                frames = [frame.to_dict() for frame in reading]
        except VideoExtraMissing as problem:
            return error(501, f"this server cannot read videos: {problem}")
        except SearchTooLarge as problem:
            return error(422, str(problem))
        except ImageError as problem:
            return error(415, str(problem))
        return {"video": asdict(reading.info),
                "frames": frames, "people": [person.to_dict() for person in reading.people],
                **({"warning": str(reading.error)} if reading.error else {}),
                "milliseconds": round(1000 * (time.perf_counter() - start), 1)}

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(PAGE, media_type="text/html")

    app.add_middleware(BodyLimit, limit=max_upload_bytes)
    return app


def run(host: str, port: int, model: str | None, max_upload_mb: float, flip: bool | None = None,
        detector: str = "both") -> None:
    import uvicorn

    uvicorn.run(create_app(model, int(max_upload_mb * 1024 * 1024), flip, detector), host=host, port=port)
