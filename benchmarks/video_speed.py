"""How fast `agegender video` reads videos: decoding alone, and decoding with face search and the model.

    python benchmarks/video_speed.py [--model PATH] [--seconds 20] [--out reports/benchmarks/video_speed.json]
        [--detectors both hog]

The videos are the example photo filmed by a slowly panning and zooming camera (one face of 220-290 px in 720p, 330-435 px in 1080p), encoded
as H.264 at 30 frames a second in 720p and 1080p, as phones and webcams record. Reported per size: frames decoded a
second when every frame is only decoded, and for `Predictor.predict_video` at --every 0.5 (the default) and 0
(every frame): frames searched a second, and seconds of video read per second of wall time (above 1 keeps up with
the video as it plays); with the frames where the face was found and the people counted (1 is right); and the
frames a second of writing the annotated copy (`--annotate`: every frame decoded again, drawn on, encoded). Each
size is timed with each of `--detectors` in turn.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from PIL import Image

from agegender import Predictor
from agegender.video import FrameReader, write_annotated

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"


def make_video(path: Path, width: int, height: int, seconds: float, rate: int = 30) -> Path:
    import av

    photo = Image.open(EXAMPLE).convert("RGB")
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    frames = round(seconds * rate)
    for index in range(frames):
        # The camera drifts right and zooms in: a view from the photo's whole width to three quarters of it, in the
        # video's shape, around the face (at about x 222, y 126 of 512).
        progress = index / frames
        view_width = photo.width * (1 - 0.25 * progress)
        view_height = view_width * height / width
        centre_x, centre_y = 190 + 60 * progress, 140
        left = min(max(centre_x - view_width / 2, 0), photo.width - view_width)
        top = min(max(centre_y - view_height / 2, 0), photo.height - view_height)
        view = photo.crop((round(left), round(top), round(left + view_width), round(top + view_height)))
        for packet in stream.encode(av.VideoFrame.from_image(view.resize((width, height), Image.BILINEAR))):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", default="reports/benchmarks/video_speed.json")
    parser.add_argument("--detectors", nargs="+", default=["both", "hog"], help="face detectors to time, in turn")
    args = parser.parse_args()
    predictors = {detector: Predictor(args.model, detector=detector) for detector in args.detectors}
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for width, height in ((1280, 720), (1920, 1080)):
            video = make_video(Path(folder) / f"{height}p.mp4", width, height, args.seconds)  # once for all detectors
            for detector, predictor in predictors.items():
                start = time.perf_counter()
                decoded = sum(1 for _ in FrameReader(video, every=0))
                row = {"size": f"{width}x{height}", "seconds": args.seconds, "detector": detector,
                       "decode_only_frames_per_s": round(decoded / (time.perf_counter() - start), 1)}
                for every in (0.5, 0.0):
                    reading = predictor.predict_video(video, every=every)
                    start = time.perf_counter()
                    read = [replace(frame, photo=None) for frame in reading]
                    found = [bool(frame.faces) for frame in read]
                    elapsed, frames = time.perf_counter() - start, len(found)
                    row[f"every_{every:g}"] = {"frames": frames, "frames_with_a_face": sum(found),
                                               "frames_per_s": round(frames / elapsed, 2),
                                               "video_seconds_per_s": round(args.seconds / elapsed, 2),
                                               "people": len(reading.people)}
                    if every:  # `agegender video --annotate`: the whole video again, with the boxes drawn
                        start = time.perf_counter()
                        write_annotated(video, Path(folder) / "annotated.mp4", read)
                        row["annotated_video_frames_per_s"] = round(decoded / (time.perf_counter() - start), 1)
                print(json.dumps(row))
                results.append(row)
    report = {"model": str(predictor.model.path), "flip": predictor.model.flip,
              "command": "python benchmarks/video_speed.py", "cpus": os.cpu_count(),
              "machine": platform.processor() or platform.machine(), "videos": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
