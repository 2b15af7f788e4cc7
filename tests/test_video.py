"""Videos: frames sampled in time, faces numbered by person, one age and gender per person; broken files."""
import json
import re
import sys

import numpy as np
import pytest
from PIL import Image

from agegender.cli import main
from agegender.video import PersonTracker, VideoError
from conftest import EXAMPLE, interrupt_search, panning, write_video

av = pytest.importorskip("av")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", panning())


@pytest.fixture(scope="module")
def predictor():
    from agegender import Predictor

    return Predictor()


def test_frames_are_sampled_in_time_and_one_person_is_followed(clip, predictor):
    photo_face = predictor.predict(EXAMPLE)[0]
    video = predictor.predict_video(clip, every=0.5)
    assert (video.info.width, video.info.height, video.info.duration, video.info.frame_rate) == (400, 400, 3.0, 10.0)
    frames = list(video)
    assert [frame.time for frame in frames] == pytest.approx([0, 0.5, 1.0, 1.5, 2.0, 2.5])
    assert all(len(frame.faces) == 1 and frame.people == [1] for frame in frames)
    assert frames[-1].faces[0].box[0] < frames[0].faces[0].box[0] - 40  # the face moved; the number stayed
    [person] = video.people
    assert person.frames == 6 and (person.first_seen, person.last_seen) == (0.0, 2.5)
    assert person.gender == "female" and abs(person.age - photo_face.age) < 2
    assert person.age_low < person.age < person.age_high
    assert video.error is None and video.sampled == 6
    assert len(list(predictor.predict_video(clip, every=0))) == 30


def test_two_people_get_their_own_numbers(tmp_path, predictor):
    frames = [Image.fromarray(np.hstack([np.asarray(f)] * 2)) for f in panning(10)]
    video = predictor.predict_video(write_video(tmp_path / "two.mkv", frames), every=0.2)
    seen = list(video)
    assert all(sorted(frame.people) == [1, 2] for frame in seen)
    left_person = {frame.people[int(np.argmin([f.box[0] for f in frame.faces]))] for frame in seen}
    assert len(left_person) == 1  # whoever is on the left keeps one number throughout
    assert [person.frames for person in video.people] == [5, 5]


def test_portrait_phone_video_is_turned_upright(tmp_path, predictor):
    # Phones store portrait video sideways, with a rotation for the player to apply; iPhones in 10-bit HEVC.
    upright = panning(10, width=300, height=400)
    stored = [frame.rotate(90, expand=True) for frame in upright]
    phone_video = write_video(tmp_path / "phone.mov", stored, rotation=-90, codec="libx265", pixels="yuv420p10le")
    video = predictor.predict_video(phone_video, every=0.5)
    assert (video.info.width, video.info.height) == (300, 400)
    frames = list(video)
    assert frames[0].photo.size == (300, 400) and len(frames[0].faces) == 1


def test_tracker_numbers_by_nearest_box_and_starts_anew_after_a_gap():
    from types import SimpleNamespace

    def face(x, width=80, female=0.9, age=30.0):
        return SimpleNamespace(box=[x, 100, x + width, 100 + width], age=age, age_low=age - 5, age_high=age + 5,
                               female_probability=female)

    tracker = PersonTracker(max_gap=1.0)
    assert tracker.assign(0.0, [face(0), face(300)]) == [1, 2]
    assert tracker.assign(0.5, [face(340), face(40)]) == [2, 1]  # listed the other way round, each moved 40 px
    assert tracker.assign(1.0, [face(60, width=200)]) == [3]  # far larger: someone else
    assert tracker.assign(1.5, []) == []
    assert tracker.assign(2.0, [face(360), face(80, width=200, female=0.2)]) == [4, 3]  # 2 unseen 1.5 s: new; 3 unseen 1 s: kept
    people = {person.person: person for person in tracker.people()}
    assert people[1].frames == 2 and people[1].last_seen == 0.5 and people[1].gender == "female"
    three = people[3]  # female 0.9 then 0.2: log-odds averaged, not probabilities
    assert three.female_probability == pytest.approx(1 / (1 + np.exp(-(np.log(9) + np.log(0.25)) / 2)), abs=1e-4)


def test_a_video_cut_short_keeps_its_frames_and_says_so(clip, tmp_path, predictor):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[:len(clip.read_bytes()) // 2])
    video = predictor.predict_video(cut, every=0.5)
    frames = list(video)
    assert 1 <= len(frames) < 6 and video.people[0].frames == len(frames)
    assert "cut.mp4: ends at" in str(video.error) and "of the 0:03.0 its header gives" in str(video.error)


def test_unreadable_videos_get_one_line_errors(tmp_path, predictor, monkeypatch):
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(VideoError, match=r"text.mp4: not a readable video \(Invalid data"):
        predictor.predict_video(tmp_path / "text.mp4")
    audio = av.open(str(tmp_path / "audio.m4a"), "w")  # a second of silence, and no picture
    stream = audio.add_stream("aac", rate=44100)
    for index in range(44):
        silence = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        silence.sample_rate, silence.pts = 44100, index * 1024
        for packet in stream.encode(silence):
            audio.mux(packet)
    audio.close()
    with pytest.raises(VideoError, match="audio.m4a: holds no video stream"):
        predictor.predict_video(tmp_path / "audio.m4a")
    with pytest.raises(VideoError, match="missing.mp4: no such file"):
        predictor.predict_video(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="--every -1"):
        predictor.predict_video(tmp_path / "text.mp4", every=-1)
    monkeypatch.setitem(sys.modules, "av", None)  # the video extra not installed
    with pytest.raises(VideoError, match=r"pip install 'agegender\[video\]'"):
        predictor.predict_video(tmp_path / "text.mp4")


def test_video_command_outputs(clip, tmp_path, capsys):
    assert main(["video", str(clip)]) == 0
    assert re.fullmatch(rf"{re.escape(str(clip))} person 1: age 2\d \(\d+-\d+\), female \(\d+%\), "
                        r"seen 0:00.0-0:02.5 in 6 of 6 frames", capsys.readouterr().out.strip())

    assert main(["video", str(clip), "--every", "1", "--json"]) == 0
    [document] = json.loads(capsys.readouterr().out)["videos"]
    assert document["video"] == {"width": 400, "height": 400, "duration": 3.0, "frame_rate": 10.0}
    assert [frame["time"] for frame in document["frames"]] == [0.0, 1.0, 2.0] and document["sampled"] == 3
    assert document["frames"][0]["faces"][0]["person"] == 1 and document["people"][0]["frames"] == 3

    assert main(["video", str(clip), "--every", "1", "--csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("file,time,person,face,x0,y0,x1,y1,age,") and len(lines) == 4
    assert lines[2].startswith(f"{clip},1.0,1,0,")

    assert main(["video", str(clip), "--every", "1", "--jsonl"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [record.get("time") for record in records] == [0.0, 1.0, 2.0, None]
    assert records[-1]["people"][0]["person"] == 1


def test_video_command_annotates_and_fails_only_when_nothing_is_read(clip, tmp_path, capsys):
    out = tmp_path / "annotated"
    assert main(["video", str(clip), str(tmp_path / "missing.mp4"), "--annotate", str(out)]) == 0
    assert "missing.mp4: no such file" in capsys.readouterr().err
    with av.open(str(out / "clip.annotated.mp4")) as container:  # every frame, at the video's own rate
        annotated = [np.asarray(frame.to_image(), float) for frame in container.decode(video=0)]
        rate = float(container.streams.video[0].average_rate)
    with av.open(str(clip)) as container:
        plain = [np.asarray(frame.to_image(), float) for frame in container.decode(video=0)]
    assert len(annotated) == 30 and rate == 10 and annotated[0].shape == (400, 400, 3)
    # Frames between two that were read (every 0.5 s: frames 0, 5, 10, ...) carry the last one's box and label,
    # drawn in the colour for women.
    pink = [int((np.abs(frame - (230, 60, 140)).max(axis=2) < 40).sum()) for frame in (*annotated, *plain)]
    assert min(pink[:30]) > 3 * max(pink[30:]), pink
    (tmp_path / "text.mp4").write_text("not a video")
    assert main(["video", str(tmp_path / "text.mp4")]) == 1
    assert main(["video", str(tmp_path / "text.mp4"), "--every", "-1"]) == 2
    assert main(["predict", str(clip)]) == 1
    assert f"a video, not a photo; read it with: agegender video {clip}" in capsys.readouterr().err


def test_video_command_keeps_what_it_read_when_interrupted(clip, tmp_path, monkeypatch, capsys):
    interrupt_search(monkeypatch, at=3)  # Ctrl-C while the third frame is searched
    assert main(["video", str(clip), "--workers", "1", "--annotate", str(tmp_path)]) == 130
    captured = capsys.readouterr()
    assert "interrupted at 0:00.5 of" in captured.err and "in 2 of 2 frames" in captured.out
    with av.open(str(tmp_path / "clip.annotated.mp4")) as container:  # the video up to where it was stopped
        assert len(list(container.decode(video=0))) == 6


def test_the_service_reads_uploaded_videos(clip):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from agegender.serve import create_app

    client = TestClient(create_app(max_upload_bytes=2 * 1024 * 1024))
    data = clip.read_bytes()
    reply = client.post("/v1/video?every=1", files={"video": ("clip.mp4", data, "video/mp4")})
    assert reply.status_code == 200
    body = reply.json()
    assert body["video"] == {"width": 400, "height": 400, "duration": 3.0, "frame_rate": 10.0}
    assert [frame["time"] for frame in body["frames"]] == [0.0, 1.0, 2.0] and "warning" not in body
    assert body["frames"][1]["faces"][0]["person"] == 1 and body["people"][0]["frames"] == 3
    cut = client.post("/v1/video", files={"video": ("cut.mp4", data[:len(data) // 2], "video/mp4")}).json()
    assert "cut short" in cut["warning"] and cut["people"]
    for query, files, status, message in [
            ("", {"video": ("a.mp4", b"not a video", "video/mp4")}, 415, "a.mp4: not a readable video"),
            ("", {"video": ("a.mp4", b"", "video/mp4")}, 400, "empty"),
            ("", {"image": ("a.mp4", data, "video/mp4")}, 422, "no video in the request"),
            ("?every=-1", {"video": ("a.mp4", data, "video/mp4")}, 422, "every must be seconds"),
            ("?min_face=5", {"video": ("a.mp4", data, "video/mp4")}, 422, "from 20 up"),
            ("?min_face=20", {"video": ("a.mp4", data, "video/mp4")}, 200, "")]:
        reply = client.post(f"/v1/video{query}", files=files)
        assert reply.status_code == status and message in reply.text, (query, reply.text)


def test_videos_are_read_from_urls_and_a_silent_server_is_given_up(clip, predictor, monkeypatch):
    import functools
    import http.server
    import socket
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(clip.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    silent = socket.socket()  # accepts connections and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    monkeypatch.setattr("agegender.video.URL_TIMEOUT", 1)
    try:
        video = predictor.predict_video(f"http://127.0.0.1:{server.server_port}/clip.mp4", every=1)
        assert len(list(video)) == 3 and video.people[0].frames == 3
        with pytest.raises(VideoError, match="404"):
            predictor.predict_video(f"http://127.0.0.1:{server.server_port}/missing.mp4")
        with pytest.raises(VideoError, match="no answer within 1 s"):
            predictor.predict_video(f"http://127.0.0.1:{silent.getsockname()[1]}/clip.mp4")
    finally:
        server.shutdown()
        silent.close()


def test_predict_on_a_folder_says_which_videos_it_leaves_to_the_video_command(clip, tmp_path, capsys):
    (tmp_path / "clip.mp4").write_bytes(clip.read_bytes())
    (tmp_path / "photo.jpg").write_bytes(EXAMPLE.read_bytes())
    assert main(["predict", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "photo.jpg face 0" in captured.out
    assert f"1 video in {tmp_path} not read; read them with: agegender video {tmp_path}" in captured.err
