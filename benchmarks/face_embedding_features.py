"""Do dlib's face-recognition embeddings add anything to a model's age and gender estimates?

    python benchmarks/face_embedding_features.py MODEL --data ../shared/datasets/utkface \
        --cache teacher.npz [--workers 2]

dlib's ResNet (`face-recognition-models`, already a dependency for its landmarks) maps a face to 128
numbers (agegender.teacher). They are computed for the holdout train and validation images (never the test
part) and cached; a file from `agegender teacher` that covers them serves as the cache.
On them a linear model is fitted on train (ridge regression for age, L2 logistic regression for gender) and
read on validation, alone and blended with MODEL's outputs (the gender log-odds and the ages averaged with
one weight). The weight is cross-fitted: the validation groups are cut in two halves, each half is scored
with the weight chosen on the other. Also printed: the embedding's time per face, the cost inference would pay.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from agegender.calibration import logit
from agegender.data import protocol_split, read_dataset
from agegender.evaluate import evaluate_frame
from agegender.predictor import AgeGenderModel
from agegender.recipes import Recipe
from agegender.teacher import embed_chips, load_teacher_embeddings, write_teacher_embeddings

def embeddings(paths: list[str], cache: Path, workers: int) -> np.ndarray:
    if not cache.is_file():  # the cache is `agegender teacher`'s file
        write_teacher_embeddings(paths, cache, workers)
    return load_teacher_embeddings(cache, paths)


def with_bias(x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((len(x), 1))])


def ridge(x: np.ndarray, y: np.ndarray, penalty: float = 1.0) -> np.ndarray:
    x = with_bias(x)
    return np.linalg.solve(x.T @ x + penalty * np.eye(x.shape[1]), x.T @ y)


def logistic(x: np.ndarray, y: np.ndarray, penalty: float = 1.0) -> np.ndarray:
    x, w = with_bias(x), np.zeros(x.shape[1] + 1)
    for _ in range(25):  # Newton steps; the problem is convex and small
        p = 1 / (1 + np.exp(-(x @ w)))
        gradient = x.T @ (p - y) + penalty * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + penalty * np.eye(len(w))
        w -= np.linalg.solve(hessian, gradient)
    return w


def cross_fitted_blend(frame: pd.DataFrame, model_score: np.ndarray, embedding_score: np.ndarray,
                       loss, rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
    """Blended scores where each half of the validation groups uses the weight best on the other half."""
    weights = np.linspace(0, 1, 21)
    half = frame["group"].isin(rng.permutation(frame["group"].unique())[: frame["group"].nunique() // 2]).to_numpy()
    blended, chosen = np.empty_like(model_score), []
    for fitted_on, applied_to in ((half, ~half), (~half, half)):
        best = min(weights, key=lambda w: loss(w * model_score[fitted_on] + (1 - w) * embedding_score[fitted_on],
                                               fitted_on))
        blended[applied_to] = best * model_score[applied_to] + (1 - best) * embedding_score[applied_to]
        chosen.append(round(float(best), 2))
    return blended, chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data", required=True)
    parser.add_argument("--cache", type=Path, required=True, help="npz file for the embeddings (made if absent)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    split = protocol_split(read_dataset(args.data), "holdout", Recipe.seed)
    split = split[split["split"].isin(["train", "val"])].reset_index(drop=True)
    vectors = embeddings(split["path"].tolist(), args.cache, args.workers)
    train, val = (split["split"] == "train").to_numpy(), (split["split"] == "val").to_numpy()
    female = (split["gender"] == 1).to_numpy(float)  # UTKFace: 0 male, 1 female
    age = split["age"].to_numpy(float)

    embedding_age = np.maximum(with_bias(vectors[val]) @ ridge(vectors[train], age[train]), 0)
    embedding_logit = with_bias(vectors[val]) @ logistic(vectors[train], female[train])
    frame = evaluate_frame(AgeGenderModel(args.model), split[val])
    assert len(frame) == int(val.sum()), "an unreadable validation image would misalign the two"
    model_age, model_logit = frame["predicted_age"].to_numpy(), logit(frame["female_probability"].to_numpy())
    true_age, true_female = age[val], female[val]

    def wrong(scores, rows=slice(None)):  # scores of the faces `rows` picks
        return float(np.mean((scores > 0) != (true_female[rows] == 1)))

    def age_error(ages, rows=slice(None)):
        return float(np.mean(np.abs(ages - true_age[rows])))

    rng = np.random.default_rng(0)
    blended_logit, gender_weights = cross_fitted_blend(frame, model_logit, embedding_logit,
                                                      wrong, rng)
    blended_age, age_weights = cross_fitted_blend(frame, model_age, embedding_age,
                                                  age_error, rng)
    report = {
        "validation_faces": int(val.sum()),
        "embedding_ms_per_face": round(1000 * embed_chips(split.loc[val, "path"].tolist()[:50])[1], 1),  # one process
        "embedding_alone": {"gender_accuracy": round(1 - wrong(embedding_logit), 4),
                            "age_mae": round(age_error(embedding_age), 3)},
        "model_alone": {"gender_accuracy": round(1 - wrong(model_logit), 4), "age_mae": round(age_error(model_age), 3)},
        "blend": {"gender_accuracy": round(1 - wrong(blended_logit), 4), "age_mae": round(age_error(blended_age), 3),
                  "model_weight_gender": gender_weights, "model_weight_age": age_weights},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
