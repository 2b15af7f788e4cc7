"""Videos: frames sampled at a fixed interval, each face numbered by the person it continues, and one age and gender
per person from all the frames they were seen in.

Decoding uses PyAV (the `video` extra: FFmpeg's decoders in a wheel, so H.264 and HEVC phone videos read offline).
A source may also be a URL FFmpeg reads (http, rtsp): a live stream is read until it ends or is interrupted.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import ImageError
from .images import VIDEO_SUFFIXES, files_ending

URL_TIMEOUT = 30  # seconds
DEFAULT_EVERY = 0.5  # seconds between sampled frames: a face in view for a second is read twice


def video_files(folder: Path) -> list[Path]:
    """Every video file below `folder`, sorted."""
    return files_ending(folder, VIDEO_SUFFIXES)


def check_every(every: float) -> float:
    if not (math.isfinite(every) and every >= 0):
        raise ValueError(f"--every {every}: expected seconds between frames, 0 or more (0: every frame)")
    return float(every)


class VideoError(ImageError):
    """A video that cannot be read, or stops being readable part-way."""


class VideoExtraMissing(VideoError):
    """PyAV, which decodes videos, is not installed."""


@dataclass
class VideoInfo:
    width: int             # as displayed (after the rotation phones record)
    height: int
    duration: float | None  # seconds, when the file says
    frame_rate: float | None


def _open(source):
    try:
        import av
    except ImportError:
        raise VideoExtraMissing("reading videos needs the video extra: pip install 'agegender[video]'") from None
    name = getattr(source, "name", source)
    if hasattr(source, "seek"):
        source.seek(0)  # a file object is opened twice: for the header, then for the frames
    is_url = "://" in str(name)  # http(s), rtsp, ...: a server that stops answering is given up after URL_TIMEOUT
    try:
        container = av.open(source if hasattr(source, "read") else str(source),
                            timeout=URL_TIMEOUT if is_url else None)
    except FileNotFoundError:
        raise VideoError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise VideoError(f"{name}: is a folder, not a video") from None
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise VideoError(f"{name}: not a readable video ({_reason(error)})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{name}: holds no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # FFmpeg decodes on every core
    return av, container, stream


def video_info(source) -> VideoInfo:
    """Size, duration and frame rate from the file's header and its first frame's rotation."""
    av, container, stream = _open(source)
    try:
        duration = float(stream.duration * stream.time_base) if stream.duration else (
            container.duration / av.time_base if container.duration else None)
        rate = float(stream.average_rate) if stream.average_rate else None
        width, height = stream.codec_context.width, stream.codec_context.height
        for frame in container.decode(stream):
            if frame.rotation in (90, -90):
                width, height = height, width
            break
        return VideoInfo(width, height, duration, rate)
    except av.error.FFmpegError as error:
        raise VideoError(f"{getattr(source, 'name', source)}: not a readable video ({_reason(error)})") from None
    finally:
        container.close()


class FrameReader:
    """Frames `every` seconds apart (0: every frame) as (seconds from the start, upright RGB image). A file that
    breaks off part-way ends the frames early and leaves the reason in `error`, so that the frames before it
    still count."""

    def __init__(self, source, every: float = DEFAULT_EVERY, duration: float | None = None):
        self.source, self.every, self.duration = source, check_every(every), duration
        self.error: VideoError | None = None
        self.decoded = 0.0  # seconds into the video of the last frame decoded

    def __iter__(self) -> Iterator[tuple[float, Image.Image]]:
        av, container, stream = _open(self.source)
        name = getattr(self.source, "name", self.source)
        start, next_time = None, 0.0
        try:
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                start = frame.time if start is None else start
                time = self.decoded = frame.time - start
                if time + 1e-6 < next_time:
                    continue
                next_time = time + self.every
                yield time, _upright(frame.to_image(), frame.rotation)
        except av.error.FFmpegError as error:
            self.error = VideoError(f"{name}: unreadable after {format_time(self.decoded)} ({_reason(error)})")
        else:  # FFmpeg ends a file cut short as if it were whole; its header still says how long it was
            if self.duration and self.decoded < self.duration - 1.0:
                self.error = VideoError(f"{name}: ends at {format_time(self.decoded)} of the "
                                        f"{format_time(self.duration)} its header gives: cut short?")
        finally:
            container.close()


def _reason(error: Exception) -> str:
    """FFmpeg's own words ("Invalid data found when processing input"), without its error number and file name."""
    import av

    if isinstance(error, av.error.ExitError):  # reading was stopped by the URL timeout
        return f"no answer within {URL_TIMEOUT} s"
    return (getattr(error, "strerror", None) or str(error)).splitlines()[0]


def _upright(image: Image.Image, rotation: int) -> Image.Image:
    """The frame as it is meant to be seen: phones store portrait video sideways with a rotation to apply (counter-
    clockwise degrees, as FFmpeg's display matrix gives it)."""
    return image.rotate(rotation, expand=True) if rotation else image


def format_time(seconds: float) -> str:
    minutes, seconds = divmod(seconds, 60)
    return f"{int(minutes)}:{seconds:04.1f}"


@dataclass
class Person:
    """One person in a video: the median of their frames' ages and age intervals (each interval is calibrated for
    one frame, so for the median of several it is, if anything, wide), and their frames' gender log-odds averaged."""
    person: int
    age: float
    age_low: float | None
    age_high: float | None
    gender: str
    gender_probability: float
    female_probability: float
    first_seen: float  # seconds from the start
    last_seen: float
    frames: int        # sampled frames they were found in

    def to_dict(self) -> dict:
        return asdict(self)


class PersonTracker:
    """Numbers faces by person across sampled frames: a face continues the person whose last box is nearest (centre
    distance under one box width, size within a factor of 1.5), pairs taken nearest first; a person not seen for
    more than `max_gap` seconds is not continued (the detector misses a face now and then, in profile or blurred).
    Boxes alone, so two people who cross paths between two samples may swap numbers; sample more often (a smaller
    --every) to make that rarer."""

    def __init__(self, max_gap: float = 1.0):
        self.max_gap = max_gap
        self._tracks: list[dict] = []  # box, last time seen, frame values

    def assign(self, time: float, faces) -> list[int]:
        """The person number of each face of the next sampled frame (numbers start at 1)."""
        live = [t for t in self._tracks if time - t["last"] <= self.max_gap + 1e-6]
        pairs = sorted((_distance(face.box, track["box"]), f, t) for f, face in enumerate(faces)
                       for t, track in enumerate(live))
        matched: dict[int, dict] = {}
        used: set[int] = set()
        for distance, f, t in pairs:
            if distance < 1.0 and f not in matched and t not in used and _similar_size(faces[f].box, live[t]["box"]):
                matched[f] = live[t]
                used.add(t)
        numbers = []
        for f, face in enumerate(faces):
            track = matched.get(f)
            if track is None:
                track = {"person": len(self._tracks) + 1, "first": time, "ages": [], "lows": [], "highs": [],
                         "logits": []}
                self._tracks.append(track)
            track.update(box=face.box, last=time)
            track["ages"].append(face.age)
            track["lows"].append(face.age_low)
            track["highs"].append(face.age_high)
            female = min(max(face.female_probability, 1e-6), 1 - 1e-6)
            track["logits"].append(math.log(female / (1 - female)))
            numbers.append(track["person"])
        return numbers

    def people(self) -> list[Person]:
        people = []
        for track in self._tracks:
            female = 1 / (1 + math.exp(-float(np.mean(track["logits"]))))
            lows = [v for v in track["lows"] if v is not None]
            highs = [v for v in track["highs"] if v is not None]
            people.append(Person(
                person=track["person"], age=round(float(np.median(track["ages"])), 1),
                age_low=round(float(np.median(lows)), 1) if lows else None,
                age_high=round(float(np.median(highs)), 1) if highs else None,
                gender="female" if female >= 0.5 else "male", gender_probability=round(max(female, 1 - female), 4),
                female_probability=round(female, 4), first_seen=round(track["first"], 3),
                last_seen=round(track["last"], 3), frames=len(track["ages"])))
        return people


def _centre_and_width(box) -> tuple[float, float, float]:
    x0, y0, x1, y1 = box
    return (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, 1)


def _distance(box, other) -> float:
    """Centre distance in widths of the larger box."""
    x, y, width = _centre_and_width(box)
    ox, oy, other_width = _centre_and_width(other)
    return math.hypot(x - ox, y - oy) / max(width, other_width)


def _similar_size(box, other) -> bool:
    ratio = _centre_and_width(box)[2] / _centre_and_width(other)[2]
    return 1 / 1.5 <= ratio <= 1.5


@dataclass
class VideoFrame:
    """One sampled frame: its time, the decoded image, its faces and the person number of each."""
    time: float
    photo: Image.Image
    faces: list
    people: list[int]

    def to_dict(self) -> dict:
        """Time and faces, each face's dict led by its person number (for JSON)."""
        return {"time": round(self.time, 3),
                "faces": [{"person": person, **face.to_dict()} for person, face in zip(self.people, self.faces)]}


class VideoResult:
    """`Predictor.predict_video`'s answer: iterate it for the sampled frames as they are read; then `people` gives one
    age and gender per person, `error` says why a broken file ended early, and `info` describes the video."""

    def __init__(self, predictor, source, every: float, min_face, workers):
        check_every(every)
        self.info = video_info(source)  # a wrong path or a non-video fails here, before any frame
        self._predictor, self._reader = predictor, FrameReader(source, every, self.info.duration)
        self._min_face, self._workers = min_face, workers
        self._tracker = PersonTracker(max_gap=max(1.0, 2 * every))  # at least one missed sample is forgiven
        self.sampled = 0  # frames read and searched so far
        self.time = 0.0  # seconds into the video of the last of them

    @property
    def error(self) -> VideoError | None:
        return self._reader.error

    @property
    def people(self) -> list[Person]:
        return self._tracker.people()

    def __iter__(self) -> Iterator[VideoFrame]:
        times = deque()  # of the frames handed to predict_many, which answers in order

        def images():
            for time, image in self._reader:
                times.append(time)
                yield image

        results = self._predictor.predict_many(images(), min_face=self._min_face, workers=self._workers)
        try:
            for result in results:
                if result.error:  # a decoded frame can only be refused for a search too large (--min-face)
                    raise result.error
                time = times.popleft()
                self.sampled, self.time = self.sampled + 1, time
                yield VideoFrame(time, result.photo, result.faces, self._tracker.assign(time, result.faces))
        finally:
            results.close()


def write_annotated(source, path: str | Path, read: list[VideoFrame], until: float | None = None) -> None:
    """The video again, every frame up to `until` seconds (None: the end) at its own rate, with the boxes and labels
    of the last frame read (`read`, in time order) drawn on it until the next: a second decoding pass, so that the
    frames read need not be kept. Sound is left out."""
    from .annotate import annotate, label

    info = video_info(source)
    out = AnnotatedVideo(path, info.frame_rate or 25.0)
    shown = -1
    try:
        for time, image in FrameReader(source, every=0):
            if until is not None and time > until + 1e-6:
                break
            while shown + 1 < len(read) and read[shown + 1].time <= time + 1e-6:
                shown += 1
            if shown >= 0 and read[shown].faces:
                frame = read[shown]
                image = annotate(image, frame.faces, [f"{person}: {label(face)}"
                                                      for person, face in zip(frame.people, frame.faces)])
            out.add(image)
    finally:
        out.close()


class AnnotatedVideo:
    """An H.264 .mp4 of frames played at `rate` frames a second."""

    def __init__(self, path: str | Path, rate: float):
        import av
        from fractions import Fraction

        self._av = av
        self._container = av.open(str(path), "w")
        self._stream = self._container.add_stream("libx264", rate=Fraction(rate).limit_denominator(1000),
                                                  options={"preset": "veryfast"})
        self._stream.pix_fmt = "yuv420p"
        self._size = None

    def add(self, image: Image.Image) -> None:
        if self._size is None:  # H.264's 4:2:0 colour needs even sides
            self._size = (image.width // 2 * 2, image.height // 2 * 2)
            self._stream.width, self._stream.height = self._size
        if image.size != self._size:
            image = image.resize(self._size)
        for packet in self._stream.encode(self._av.VideoFrame.from_image(image)):
            self._container.mux(packet)

    def close(self) -> None:
        if self._size is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()
