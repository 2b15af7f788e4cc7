"""The `agegender` command: it only parses arguments and calls the modules that do the work."""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the terminal

from .errors import DataError, DataWarning, ImageError, ModelError
from .faces import DETECTORS
from .images import image_files
from .recipes import PROTOCOLS, RECIPES, get_recipe

# A wrong path of any kind (missing, a folder where a file belongs or the reverse, a file where a folder would be
# made, not ours to write) is the user's to fix: one line, not a traceback.
USER_ERRORS = (DataError, ImageError, ModelError, ValueError, FileNotFoundError, PermissionError, IsADirectoryError,
               NotADirectoryError, FileExistsError)


def _train(args) -> int:
    from .train import train

    recipe = get_recipe(args.recipe)
    overrides = recipe.parse_settings(args.set)
    flags = {"protocol": args.protocol, "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
             "mixed_precision": True if args.mixed_precision else None}
    # a flag left out keeps what --set gave (--set protocol=holdout is not undone by an absent --protocol)
    overrides.update({key: value for key, value in flags.items() if value is not None})
    metrics = train(recipe, args.data, args.out, resume=args.resume, overrides=overrides,
                    backbone_weights=args.backbone_weights, init_from=args.init_from)
    print(json.dumps(metrics, indent=2))
    return 0


def _labelled_rows(args, default_split: str):
    """The labelled rows chosen by --data / --protocol / --split / --split-name."""
    from .data import load_split, protocol_split, read_dataset
    from .recipes import Recipe

    if not (args.data or args.split):
        raise DataError("name the images with --data (optionally --protocol), or a run's split with --split")
    if args.split:
        frame = load_split(Path(args.split))
    else:
        frame = read_dataset(args.data)
        if not args.protocol:
            return frame, str(args.data)
        frame = protocol_split(frame, args.protocol, Recipe.seed if args.seed is None else args.seed)
    name = args.split_name or default_split
    if not (frame["split"] == name).any():
        raise DataError(f"the split has no {name!r} rows (it has: {', '.join(sorted(frame['split'].unique()))})")
    return frame[frame["split"] == name], f"the {name} split of {args.split or f'protocol {args.protocol}'}"


def _evaluate(args) -> int:
    from .evaluate import breakdown, breakdown_markdown, evaluate_frame, write_evaluation
    from .predictor import AgeGenderModel

    model = AgeGenderModel(args.model, flip=args.flip)
    frame, source = _labelled_rows(args, "test" if args.protocol == "holdout" else "val")
    result = breakdown(evaluate_frame(model, frame))
    title = f"{model.path.name} on {source}" + (" (with test-time flip)" if model.flip else "")
    if args.out:
        for path in write_evaluation(result, Path(args.out), title):
            print(f"wrote {path}", file=sys.stderr)
    print(json.dumps(result, indent=2) if args.json else breakdown_markdown(result, title))
    return 0


def _calibrate(args) -> int:
    from .calibration import fit_age_intervals, fit_distribution_widening, fit_gender_temperature
    from .evaluate import evaluate_frame
    from .export import update_metadata
    from .predictor import AgeGenderModel

    model = AgeGenderModel(args.model, flip=args.flip)
    if model.path.suffix != ".onnx":
        raise ModelError(f"{model.path}: calibrate an exported .onnx model (agegender export)")
    if args.like:
        return _copy_calibration(model, args)
    model.gender_temperature = None  # fit on the network's own probabilities, not a previous calibration's
    frame, source = _labelled_rows(args, "val")
    predicted, distribution = evaluate_frame(model, frame, keep_distribution=True)
    if distribution is not None:  # the model's own interval, conformalized
        table = fit_distribution_widening(predicted["predicted_age"], distribution, predicted["age"], level=args.level)
    else:
        table = fit_age_intervals(predicted["predicted_age"], predicted["age"], level=args.level)
    temperature = fit_gender_temperature(predicted["female_probability"], predicted["gender"])
    update_metadata(model.path, {"test_time_flip": model.flip, "age_interval": table,
                                 "gender_temperature": temperature,
                                 "calibrated_on": f"{len(predicted)} faces, {source}"})
    print(json.dumps({"age_interval": table, "gender_temperature": temperature}, indent=2))
    print(f"wrote the calibration into {model.path}", file=sys.stderr)
    return 0


def _copy_calibration(model, args) -> int:
    """A refit has no held-out faces of its own to calibrate on: it takes the calibration of the model it refits,
    fitted on validation faces before they joined training."""
    from .export import update_metadata
    from .predictor import AgeGenderModel

    if args.data or args.split:
        raise DataError("--like copies another model's calibration; give it without --data or --split")
    source = AgeGenderModel(args.like)
    keys = ("test_time_flip", "age_interval", "gender_temperature")
    if not all(key in source.metadata for key in keys):
        raise ModelError(f"{source.path} holds no calibration to copy; calibrate it first (agegender calibrate)")
    copied = {key: source.metadata[key] for key in keys}
    if args.flip is not None and args.flip != copied["test_time_flip"]:
        raise DataError(f"{source.path} was calibrated {'with' if copied['test_time_flip'] else 'without'} "
                        "test-time flip; a copied calibration keeps that setting")
    update_metadata(model.path, {**copied, "calibrated_on": f"{source.metadata.get('calibrated_on', 'unrecorded')} "
                                                            f"(copied from {source.path.name})"})
    print(json.dumps({"age_interval": copied["age_interval"], "gender_temperature": copied["gender_temperature"]},
                     indent=2))
    print(f"wrote {source.path.name}'s calibration into {model.path}", file=sys.stderr)
    return 0


def _export(args) -> int:
    from .export import export_onnx

    calibration = _calibration_images(args) if args.int8 == "static" else None
    print(f"wrote {export_onnx(args.model, args.out, int8=args.int8, calibration_images=calibration)}")
    return 0


def _average(args) -> int:
    from .ensemble import average_models

    out = average_models(args.models, args.out, gender_weights=args.gender_weights, age_weights=args.age_weights)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); calibrate it: agegender calibrate {out} --data ...")
    return 0


def _info(args) -> int:
    from .model_info import info_text, model_info

    info = model_info(args.model)
    print(json.dumps(info, indent=2) if args.json else info_text(info))
    return 0


def _members(args) -> int:
    from .ensemble import extract_members

    for path in extract_members(args.model, args.out):
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def _calibration_images(args, count: int = 256) -> list[str]:
    """Face crops that set static int8's activation ranges: a run's own training images, or --calibration-data."""
    import pandas as pd

    from .data import load_split, read_dataset

    run_split = Path(args.model) / "split.csv"
    if args.calibration_data and Path(args.calibration_data).is_dir():  # face crops; labels are not needed
        paths = [str(p) for p in image_files(args.calibration_data)]
    elif args.calibration_data:
        paths = read_dataset(args.calibration_data)["path"].tolist()
    elif run_split.is_file():
        rows = load_split(run_split)
        paths = rows.loc[rows["split"] == "train", "path"].tolist()
    else:
        raise ValueError("--int8 static needs calibration images: export a run folder (its training images are "
                         "used) or pass --calibration-data")
    if not paths:
        raise ValueError(f"no images found in {args.calibration_data}")
    return pd.Series(paths).sample(min(count, len(paths)), random_state=0).tolist()


def _teacher(args) -> int:
    from .data import read_dataset
    from .teacher import write_teacher_embeddings

    paths = read_dataset(args.data)["path"].tolist()
    print(f"wrote {write_teacher_embeddings(paths, args.out, args.workers)} ({len(paths)} faces)")
    return 0


def _compare(args) -> int:
    from .compare import compare

    print(f"wrote {compare([Path(run) for run in args.runs], Path(args.out))}")
    return 0


def _serve(args) -> int:
    from .serve import run

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port}: expected a port number from 0 to 65535")
    if not args.max_upload_mb > 0:
        raise ValueError(f"--max-upload-mb {args.max_upload_mb}: expected a size above 0")
    run(args.host, args.port, args.model, args.max_upload_mb, args.flip, args.detector)
    return 0


def _expand(inputs: list[str]) -> list[str]:
    from .video import video_files

    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(str(p) for p in image_files(path))
            if videos := len(video_files(path)):  # said, not silently passed over
                print(f"agegender: {videos} video{'s' if videos > 1 else ''} in {item} not read; read them with: "
                      f"agegender video {item}", file=sys.stderr)
        else:
            files.append(item)
    return files


CSV_FIELDS = ["file", "face", "x0", "y0", "x1", "y1", "age", "age_low", "age_high", "gender", "gender_probability",
              "female_probability", "detection_score", "detector", "landmarks"]


def _predictor(args):
    """The Predictor that `predict` and `video` search with, from their shared options."""
    from .predictor import Predictor

    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers {args.workers}: expected 1 or more")
    return Predictor(args.model, min_score=args.min_score, flip=args.flip, min_face=args.min_face,
                     detector=args.detector)


def _csv_row(record: dict) -> dict:
    """A face's record with its box as four columns and its landmarks as JSON, for CSV."""
    x0, y0, x1, y1 = record["box"]
    return {**record, "x0": x0, "y0": y0, "x1": x1, "y1": y1,
            "landmarks": json.dumps(record["landmarks"]) if record["landmarks"] else ""}


def _age_text(record: dict) -> str:
    """`age 27 (21-34)`: the age and, when the model gives one, its interval."""
    interval = f" ({record['age_low']:.0f}-{record['age_high']:.0f})" if record["age_low"] is not None else ""
    return f"age {record['age']:.0f}{interval}"


def _predict(args) -> int:
    import csv

    from tqdm import tqdm

    predictor = _predictor(args)
    files = _expand(args.inputs)
    if not files:  # only empty folders: say so, rather than print nothing and succeed
        raise DataError(f"no photos found in {', '.join(args.inputs)}")
    if files.count("-") > 1:
        raise ValueError("- (a photo read from standard input) can be given once")
    if args.annotate:
        from .annotate import annotate

        Path(args.annotate).mkdir(parents=True, exist_ok=True)
    # Every output but --json is written photo by photo, so a long run that is interrupted keeps what it did and a
    # pipeline reads results as they come; --json is one document, printed at the end (also after Ctrl-C).
    records, no_face, errors, annotated_names, done = [], [], [], set(), 0
    writer = csv.DictWriter(sys.stdout, fieldnames=CSV_FIELDS, extrasaction="ignore") if args.csv else None
    if writer:
        writer.writeheader()
    sources = [_standard_input() if file == "-" else file for file in files]
    results = predictor.predict_many(sources, aligned=args.aligned, workers=args.workers)
    progress = tqdm(results, total=len(files), desc="photos", unit="photo", disable=None if len(files) > 1 else True,
                    file=sys.stderr)
    try:
        for result in progress:
            file, faces = getattr(result.source, "name", result.source), result.faces
            if result.error:
                errors.append(str(result.error))
                progress.write(f"error: {result.error}", file=sys.stderr)
                if args.jsonl:
                    print(json.dumps({"file": file, "error": str(result.error)}), flush=True)
                done += 1
                continue
            if args.annotate and faces:
                # a/img.jpg and b/img.jpg become img and img-2
                name = _unique_name("stdin" if file == "-" else Path(file).stem, annotated_names)
                annotate(result.photo, faces).save(Path(args.annotate) / f"{name}.annotated.jpg", quality=90)
            _print_photo(args, writer, file, faces, records, no_face)
            done += 1
    except KeyboardInterrupt:
        progress.close()
        results.close()  # stops the threads still reading photos
        print(f"agegender: interrupted after {done} of {len(files)} photos", file=sys.stderr)
        if args.json:
            print(json.dumps({"faces": records, "no_face": no_face, "errors": errors, "interrupted": True}, indent=2))
        return 130
    if args.json:
        print(json.dumps({"faces": records, "no_face": no_face, "errors": errors}, indent=2))
    return 1 if errors and len(errors) == len(files) else 0


def _print_photo(args, writer, file: str, faces: list, records: list, no_face: list) -> None:
    """One photo's faces in the chosen format, flushed at once (--json: kept for the end)."""
    face_dicts = [face.to_dict() for face in faces]
    face_records = [{"file": file, **face} for face in face_dicts]
    if args.json:
        records.extend(face_records)
        if not faces:
            no_face.append(file)
        return
    if args.jsonl:
        print(json.dumps({"file": file, "faces": face_dicts}))
    elif writer:
        for record in face_records:
            writer.writerow(_csv_row(record))
    else:
        for record in face_records:
            print(f"{record['file']} face {record['face']}: {_age_text(record)}, {record['gender']} "
                  f"({record['gender_probability']:.0%}), box {record['box']}")
        if not faces:
            print(f"{file}: no face found")
    sys.stdout.flush()


VIDEO_CSV_FIELDS = ["file", "time", "person", *CSV_FIELDS[1:]]


def _video(args) -> int:
    import csv

    from .video import check_every, video_files

    every = check_every(args.every)
    predictor = _predictor(args)
    files = []
    for item in args.inputs:
        if Path(item).is_dir():
            files.extend(map(str, video_files(Path(item))))
        else:
            files.append(item)  # a file or a URL
    if not files:
        raise DataError(f"no videos found in {', '.join(args.inputs)}")
    if args.annotate:
        Path(args.annotate).mkdir(parents=True, exist_ok=True)
    writer = csv.DictWriter(sys.stdout, fieldnames=VIDEO_CSV_FIELDS, extrasaction="ignore") if args.csv else None
    if writer:
        writer.writeheader()
    documents, unread, annotated_names = [], 0, set()
    for file in files:
        document, interrupted = _video_file(args, predictor, every, file, writer, annotated_names)
        documents.append(document)
        unread += not document.get("sampled")
        if interrupted:
            if args.json:
                print(json.dumps({"videos": documents, "interrupted": True}, indent=2))
            return 130
    if args.json:
        print(json.dumps({"videos": documents}, indent=2))
    return 1 if unread == len(files) else 0


def _video_file(args, predictor, every: float, file: str, writer, annotated_names: set) -> tuple[dict, bool]:
    """One video's frames and people in the chosen format: (its JSON document, whether Ctrl-C stopped it)."""
    from dataclasses import asdict, replace

    from tqdm import tqdm

    from .video import format_time, write_annotated

    try:
        video = predictor.predict_video(file, every, workers=args.workers)
    except ImageError as error:
        print(f"error: {error}", file=sys.stderr)
        if args.jsonl:
            print(json.dumps({"file": file, "error": str(error)}), flush=True)
        return {"file": file, "error": str(error)}, False
    info, document, interrupted = video.info, {"file": file, "video": asdict(video.info), "frames": []}, False
    rate = 1 / every if every else (info.frame_rate or 25.0)
    read = []  # each frame read, without its image, for --annotate
    total = round(info.duration * rate) + 1 if info.duration else None
    progress = tqdm(video, total=total, desc=Path(file).name, unit="frame", disable=None, file=sys.stderr)
    try:
        for frame in progress:
            record = frame.to_dict()
            if args.json:
                document["frames"].append(record)
            elif args.jsonl:
                print(json.dumps({"file": file, **record}), flush=True)
            elif writer:
                for face in record["faces"]:
                    writer.writerow(_csv_row({"file": file, "time": record["time"], **face}))
                sys.stdout.flush()
            if args.annotate:
                read.append(replace(frame, photo=None))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
    people = [person.to_dict() for person in video.people]
    document.update(sampled=video.sampled, people=people)
    if video.error:  # a warning when frames before it were read
        print(f"{'warning' if video.sampled else 'error'}: {video.error}", file=sys.stderr)
        document["error"] = str(video.error)
    if interrupted:
        print(f"agegender: interrupted at {format_time(video.time)} of {file} ({video.sampled} frames read)",
              file=sys.stderr)
    if args.jsonl:
        print(json.dumps({"file": file, "people": people, **({"error": str(video.error)} if video.error else {})}),
              flush=True)
    elif not args.json and not writer:
        for person in people:
            print(f"{file} person {person['person']}: {_age_text(person)}, {person['gender']} "
                  f"({person['gender_probability']:.0%}), seen {format_time(person['first_seen'])}-"
                  f"{format_time(person['last_seen'])} in {person['frames']} of {video.sampled} frames")
        if not people:
            print(f"{file}: no face found in {video.sampled} frames")
    sys.stdout.flush()
    if args.annotate and video.sampled:  # last: the results are out before this second pass over the video
        if info.duration is None and "://" in file:
            print(f"warning: {file} is a live stream, which cannot be read a second time to annotate it",
                  file=sys.stderr)
        else:
            path = Path(args.annotate) / f"{_unique_name(Path(file).stem, annotated_names)}.annotated.mp4"
            print(f"writing {path}", file=sys.stderr)
            write_annotated(file, path, read, until=video.time if interrupted else None)
    return document, interrupted


def _standard_input():
    """The photo piped in (`cat photo.jpg | agegender predict -`), named - in the output."""
    import io

    stream = io.BytesIO(sys.stdin.buffer.read())
    stream.name = "-"
    return stream


def _unique_name(stem: str, taken: set[str]) -> str:
    name, number = stem, 1
    while name in taken:
        number += 1
        name = f"{stem}-{number}"
    taken.add(name)
    return name


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="agegender", description="Estimate age and gender from face images; "
                                   "train, evaluate and compare the models that do it.")
    commands = main.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a recipe into a run folder (resumable)")
    train.add_argument("--recipe", default="seed-a", choices=list(RECIPES), help="named recipe (default seed-a)")
    train.add_argument("--data", help="UTKFace folder, folder with labels.csv, or a path,age,gender CSV")
    train.add_argument("--out", required=True, help="run folder to create (or to continue with --resume)")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    train.add_argument("--protocol", choices=PROTOCOLS, help="full: 80:20 of all data; 5k: 4,000/1,000 "
                       "subset; holdout: full's train, its val cut into val and a test split")
    train.add_argument("--epochs", type=int, help="override the recipe's epochs (also extends a resumed run)")
    train.add_argument("--batch-size", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--mixed-precision", action="store_true", help="bfloat16 compute (faster on recent CPUs)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override any recipe setting, e.g. --set preprocessing=xception or "
                            "--set loss_weights.age=0.01 (repeatable; recorded)")
    train.add_argument("--backbone-weights", help="Xception weights: a local .weights.h5 file or 'imagenet'")
    train.add_argument("--init-from", metavar="RUN", help="start from this run's best checkpoint (same split "
                       "and network required; only a changed age_output or teacher starts those output layers "
                       "fresh), e.g. to fine-tune the whole backbone after a first stage; or from an exported "
                       ".onnx model of the same recipe with frozen BatchNorm, e.g. a member of the shipped model "
                       "(agegender members), which must not have trained on this run's validation or test part")
    train.set_defaults(run=_train)

    def add_flip_arguments(command) -> None:
        flip = command.add_mutually_exclusive_group()
        flip.add_argument("--flip", action="store_true", default=None,
                          help="average each face with its mirror image (default: as the model's metadata says)")
        flip.add_argument("--no-flip", dest="flip", action="store_false", help="one pass per face: faster")

    def add_detector_argument(command) -> None:
        command.add_argument("--detector", choices=DETECTORS, default="both",
                             help="face detectors: dlib's HOG and BlazeFace, which also finds tilted and turned faces "
                             "(default), or either alone")

    def add_search_arguments(command, unit: str) -> None:
        """How a photo or video frame (`unit`) is searched for faces, and the model that reads them."""
        command.add_argument("--model", help="a .onnx or .keras model, or a run folder (default: the shipped model)")
        add_flip_arguments(command)
        add_detector_argument(command)
        command.add_argument("--min-score", type=float, help="HOG's confidence to keep a face (default 0.2; "
                             "lower finds more faces and more false ones)")
        command.add_argument("--workers", type=int, metavar="N", help=f"{unit}s read and searched for faces at once "
                             "(default: one per CPU core, at most 4)")
        command.add_argument("--min-face", type=float, metavar="PX", help=f"the smallest face to look for, in the "
                             f"{unit}'s pixels (default 80, or the longer side / 25.6 for {unit}s over 2048 px, 40 "
                             f"for {unit}s under 400 px; smaller is slower)")

    def add_rows_arguments(command, default_split: str) -> None:
        command.add_argument("--data", help="labelled data (as for train)")
        command.add_argument("--protocol", choices=PROTOCOLS, help="with --data: only one split of this protocol")
        command.add_argument("--seed", type=int, help="the protocol's seed (default: the recipes' 1337)")
        command.add_argument("--split", help="instead of --data, a run's split.csv")
        command.add_argument("--split-name", help=f"which split's rows ({default_split})")
        add_flip_arguments(command)

    evaluate = commands.add_parser("evaluate", help="accuracy and MAE overall and per age, gender and race")
    evaluate.add_argument("model", help="a .keras or .onnx model, or a run folder")
    add_rows_arguments(evaluate, "default: test for protocol holdout, else val")
    evaluate.add_argument("--out", help="write OUT.json and OUT.md")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    evaluate.set_defaults(run=_evaluate)

    calibrate = commands.add_parser("calibrate", help="fit an exported model's 80%% age intervals and its gender "
                                    "temperature on a calibration split and store them (and the flip setting) in "
                                    "the model")
    calibrate.add_argument("model", help="an .onnx model (rewritten in place)")
    add_rows_arguments(calibrate, "default val; never the test split you report on")
    calibrate.add_argument("--level", type=float, default=0.8, help="share of true ages inside (default 0.8)")
    calibrate.add_argument("--like", metavar="MODEL", help="instead of fitting, copy MODEL's calibration: for a "
                           "refit, which has no held-out faces left, from the model it refits")
    calibrate.set_defaults(run=_calibrate)

    predict = commands.add_parser("predict", help="age and gender of every face in photos")
    predict.add_argument("inputs", nargs="+", help="photos (JPEG, PNG, WebP, ...) or folders of them; - reads a "
                         "photo from standard input")
    predict.add_argument("--aligned", action="store_true", help="inputs are ready face crops like UTKFace's")
    predict.add_argument("--annotate", metavar="OUT_DIR", help="save copies with boxes and labels here")
    add_search_arguments(predict, "photo")
    output = predict.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON document, printed when every photo is done")
    output.add_argument("--jsonl", action="store_true", help="one JSON line per photo as it is done: its file and "
                        "faces, or its error")
    output.add_argument("--csv", action="store_true", help="one row per face, written as each photo is done")
    predict.set_defaults(run=_predict)

    video = commands.add_parser("video", help="age and gender of every person in videos (the video extra)")
    video.add_argument("inputs", nargs="+", help="videos (MP4, MOV, MKV, WebM, AVI, ...) or folders of them")
    video.add_argument("--every", type=float, default=0.5, metavar="SECONDS", help="time between the frames read "
                       "(default 0.5; 0 reads every frame)")
    video.add_argument("--annotate", metavar="OUT_DIR", help="save a copy of each video here with its faces boxed, "
                       "numbered by person and labelled (those of the last frame read)")
    add_search_arguments(video, "frame")
    output = video.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON document: each video's frames and people")
    output.add_argument("--jsonl", action="store_true", help="one JSON line per frame read, as it is read, and one "
                        "with the people at the end of each video")
    output.add_argument("--csv", action="store_true", help="one row per face per frame read, with its person number")
    video.set_defaults(run=_video)

    export = commands.add_parser("export", help="convert a trained model to ONNX (prediction without TensorFlow)")
    export.add_argument("model", help="a .keras model or a run folder")
    export.add_argument("--out", required=True, help="the .onnx file to write")
    export.add_argument("--int8", nargs="?", const="dense", choices=("dense", "static"),
                        help="dense (the default): 8-bit dense weights, the report CNN about 4x smaller; static: "
                             "every layer in int8, calibrated on training images (Xception about 4x smaller and "
                             "faster); check the loss with agegender evaluate")
    export.add_argument("--calibration-data", help="images for --int8 static (default: the run's training images)")
    export.set_defaults(run=_export)

    average = commands.add_parser("average", help="several exported models as one .onnx that averages their outputs "
                                  "(gender log-odds, ages): networks pretrained differently make different errors")
    average.add_argument("models", nargs="+", help="two or more .onnx models or run folders (their model.onnx)")
    average.add_argument("--out", required=True, help="the .onnx file to write")
    average.add_argument("--gender-weights", nargs="+", type=float, metavar="W",
                         help="one weight per model for the gender log-odds (default: equal)")
    average.add_argument("--age-weights", nargs="+", type=float, metavar="W",
                         help="one weight per model for the age (default: equal; "
                              "benchmarks/member_weights.py reads the choice on validation)")
    average.set_defaults(run=_average)

    info = commands.add_parser("info", help="what a model holds: input, weights, calibration, flip, members")
    info.add_argument("model", nargs="?", help="a .onnx or .keras model, or a run folder (default: the shipped model)")
    info.add_argument("--json", action="store_true", help="print the model's metadata as JSON")
    info.set_defaults(run=_info)

    members = commands.add_parser("members", help="write each member of an averaged model back as its own .onnx "
                                  "(to run, evaluate or re-average one network)")
    members.add_argument("model", help="an averaged .onnx model (agegender average), e.g. the default model's file")
    members.add_argument("--out", required=True, help="the folder to write the members to")
    members.set_defaults(run=_members)

    teacher = commands.add_parser("teacher", help="dlib face-recognition embeddings of a dataset's face chips, "
                                  "for distillation (--set teacher_embeddings=FILE in train)")
    teacher.add_argument("--data", required=True, help="labelled data (as for train): every image is embedded")
    teacher.add_argument("--out", required=True, help="the .npz file to write")
    teacher.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: one a core)")
    teacher.set_defaults(run=_teacher)

    compare = commands.add_parser("compare", help="learning curves and a table comparing finished runs")
    compare.add_argument("runs", nargs="+", help="run folders")
    compare.add_argument("--out", default="reports/compare.md", help="the Markdown report (figures beside it)")
    compare.set_defaults(run=_compare)

    serve = commands.add_parser("serve", help="web service and browser page (FastAPI)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--model", help="a .onnx or .keras model, or a run folder (default: the shipped model)")
    serve.add_argument("--max-upload-mb", type=float, default=10.0, help="largest accepted upload (default 10)")
    add_flip_arguments(serve)
    add_detector_argument(serve)
    serve.set_defaults(run=_serve)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    plain_format = warnings.formatwarning
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # libraries' deprecation chatter is not the user's concern
            warnings.simplefilter("always", DataWarning)
            warnings.formatwarning = lambda message, *rest, **kw: f"warning: {message}\n"
            return args.run(args)
    except USER_ERRORS as error:
        print(f"agegender: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside the loops that keep their partial results: no traceback
        print("agegender: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader (e.g. `| head`) left early: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        warnings.formatwarning = plain_format


if __name__ == "__main__":
    sys.exit(main())
