"""The `agegender` command: it only parses arguments and calls the modules that do the work."""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the terminal

from .data import PROTOCOLS, DataError, DataWarning
from .data import IMAGE_SUFFIXES
from .images import ImageError
from .predictor import ModelError
from .recipes import RECIPES, get_recipe

USER_ERRORS = (DataError, ImageError, ModelError, ValueError, FileNotFoundError, PermissionError)


def _train(args) -> int:
    from .train import train

    overrides = {"protocol": args.protocol, "epochs": args.epochs, "batch_size": args.batch_size,
                 "seed": args.seed, "mixed_precision": True if args.mixed_precision else None}
    metrics = train(get_recipe(args.recipe), args.data, args.out, resume=args.resume, overrides=overrides,
                    backbone_weights=args.backbone_weights)
    print(json.dumps(metrics, indent=2))
    return 0


def _evaluate(args) -> int:
    from .data import read_dataset
    from .evaluate import breakdown, breakdown_markdown, evaluate_frame, write_evaluation
    from .predictor import CropPredictor

    predictor = CropPredictor(args.model)
    frame = read_dataset(args.data)
    if args.split:
        from .data import load_split

        split = load_split(Path(args.split))
        frame = split[split["split"] == args.split_name] if "split" in split else split
    result = breakdown(evaluate_frame(predictor, frame))
    title = f"{predictor.path.name} on {args.split or args.data}"
    if args.out:
        for path in write_evaluation(result, Path(args.out), title):
            print(f"wrote {path}", file=sys.stderr)
    print(json.dumps(result, indent=2) if args.json else breakdown_markdown(result, title))
    return 0


def _export(args) -> int:
    from .export import export_onnx

    print(f"wrote {export_onnx(args.model, args.out)}")
    return 0


def _expand(inputs: list[str]) -> list[str]:
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(str(p) for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(item)
    return files


def _predict(args) -> int:
    import csv

    from .predictor import CropPredictor

    predictor = CropPredictor(args.model)
    predictions, errors = predictor.predict_files(_expand(args.inputs))
    rows = [p.to_dict() for p in predictions]
    if args.json:
        print(json.dumps({"predictions": rows, "errors": errors}, indent=2))
    elif args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=["file", "age", "gender", "gender_probability",
                                                        "female_probability"])
        writer.writeheader()
        writer.writerows(rows)
    else:
        for row in rows:
            print(f"{row['file']}: age {row['age']:.0f}, {row['gender']} ({row['gender_probability']:.0%})")
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 0 if rows or not errors else 1


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="agegender", description="Estimate age and gender from face images; "
                                   "train, evaluate and compare the models that do it.")
    commands = main.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a recipe into a run folder (resumable)")
    train.add_argument("--recipe", default="seed-a", choices=list(RECIPES), help="named recipe (default seed-a)")
    train.add_argument("--data", help="UTKFace folder, folder with labels.csv, or a path,age,gender CSV")
    train.add_argument("--out", required=True, help="run folder to create (or to continue with --resume)")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    train.add_argument("--protocol", choices=PROTOCOLS, help="full: 80:20 of all data; 5k: 4,000/1,000 subset")
    train.add_argument("--epochs", type=int, help="override the recipe's epochs (also extends a resumed run)")
    train.add_argument("--batch-size", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--mixed-precision", action="store_true", help="bfloat16 compute (faster on recent CPUs)")
    train.add_argument("--backbone-weights", help="Xception weights: a local .weights.h5 file or 'imagenet'")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="accuracy and MAE overall and per age, gender and race")
    evaluate.add_argument("model", help="a .keras or .onnx model, or a run folder")
    evaluate.add_argument("--data", required=True, help="labelled data (as for train)")
    evaluate.add_argument("--split", help="a run's split.csv: evaluate only its --split-name rows")
    evaluate.add_argument("--split-name", default="val")
    evaluate.add_argument("--out", help="write OUT.json and OUT.md")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    evaluate.set_defaults(run=_evaluate)

    predict = commands.add_parser("predict", help="age and gender of aligned face crops")
    predict.add_argument("inputs", nargs="+", help="image files or folders")
    predict.add_argument("--model", required=True, help="a .keras or .onnx model, or a run folder")
    output = predict.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true")
    output.add_argument("--csv", action="store_true")
    predict.set_defaults(run=_predict)

    export = commands.add_parser("export", help="convert a trained model to ONNX (prediction without TensorFlow)")
    export.add_argument("model", help="a .keras model or a run folder")
    export.add_argument("--out", required=True, help="the .onnx file to write")
    export.set_defaults(run=_export)
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
    finally:
        warnings.formatwarning = plain_format


if __name__ == "__main__":
    sys.exit(main())
