"""The named training recipes: the one place where hyper-parameters live.

The CLI, the tests and the reports all read these definitions; a run folder stores the resolved recipe
(with any command-line overrides) in `config.json`, so a run can be repeated or resumed exactly.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from . import dlib_resnet


# full: 80:20 of every image; 5k: a fixed 5,000-image subset split 4,000/1,000; holdout: full with its
# validation part cut in two, half kept as a test split for final figures only.
PROTOCOLS = ("full", "5k", "holdout")
# The residual blocks that keep their input's shape, so that the network still fits together without them:
# Xception's middle flow (blocks 5-12), and dlib's ResNet blocks (1-14 in order) that neither downsample nor
# widen (dlib_resnet.py).
DROPPABLE_BLOCKS = {"xception": tuple(range(5, 13)), "dlib_resnet": (1, 2, 3, 5, 6, 7, 9, 10, 12, 13)}
LOSS_OUTPUTS = ("gender", "age", "age_distribution", "embedding", "race")  # the outputs a loss weight can name
# The choices of the settings that name one, and the smallest face each architecture can read (the report CNN
# halves it four times; Keras's Xception needs 71 px; dlib's ResNet checks its own).
CHOICES = {"architecture": ("report_cnn", "xception", "dlib_resnet"),
           "preprocessing": ("featurewise", "unit", "xception", "dlib"),
           "schedule": ("plateau", "constant", "cosine"),
           "age_output": ("regression", "distribution", "regression_with_distribution"),
           "age_loss": ("mse", "l1")}
MIN_IMAGE_SIZE = {"report_cnn": 16, "xception": 71}


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    architecture: str              # a builder in models.py: "report_cnn", "xception" or "dlib_resnet"
    # "featurewise" (train-split mean/std), "unit" ([0, 1]), "xception" ([-1, 1]) or "dlib" (dlib's mean, / 256)
    preprocessing: str
    protocol: str = "full"         # data protocol (recipes.PROTOCOLS)
    image_size: int = 128          # square input side in pixels
    batch_size: int = 32
    epochs: int = 45
    learning_rate: float = 1e-3    # Adam's initial learning rate
    # "plateau" (ReduceLROnPlateau on val_loss), "constant", or "cosine": a linear warm-up over
    # `warmup_epochs` to `learning_rate`, then a cosine decay per step down to `min_learning_rate`.
    schedule: str = "plateau"
    warmup_epochs: int = 0
    plateau_factor: float = 0.5    # learning rate multiplier when validation loss stalls
    plateau_patience: int = 5      # epochs without improvement before lowering the learning rate
    min_learning_rate: float = 1e-6
    early_stopping_patience: int = 0  # 0: never stop early
    # The report's augmentation of training images (none for validation).
    rotation_degrees: float = 30.0
    shift_fraction: float = 0.15
    horizontal_flip: bool = True
    # Stronger augmentation (off in the report's recipes): a random zoom of up to +-zoom_fraction (a random
    # resized crop that keeps the aspect), and brightness and contrast jitter of up to +-color_jitter.
    zoom_fraction: float = 0.0
    color_jitter: float = 0.0
    # mixup (Zhang et al. 2018): each training face blended with another face of its batch, pixels, targets and
    # loss weights alike, by a share drawn from Beta(mixup, mixup); 0 is off, 0.2 the paper's usual. A regulariser
    # for noisy labels; at 0.2 it cost dlib's fine-tuned network a fifth of a year of age (accuracy.md row 44).
    mixup: float = 0.0
    # Random erasing (Zhong et al. 2020): each training face, with this probability, has one rectangle of 2-40% of
    # its area (aspect 0.3-3.3) replaced by random pixels, so that no single region (eyes, hair, beard) is read
    # alone: a regulariser for occlusions. 0 is off, 0.5 the paper's usual. At 0.5 it cost dlib's fine-tuned network
    # half a point of gender and 0.08 years on UTKFace's unoccluded chips; the Xception's third stage read the same
    # in the pair with it (accuracy.md rows 49, 51).
    random_erasing: float = 0.0
    # Sharpness-aware minimisation (Foret et al. 2021; sharpness.py): each step's gradient is taken where the loss
    # rises most within this distance of the weights (the paper's rho), for flat minima that generalise and resist
    # noisy labels. 0 is off; otherwise each step costs two passes. The paper's usual 0.05 is far too much for
    # dlib's fine-tuned network (benchmarks/sharpness_radius.py); at 0.005 for it and 0.02 for the Xception it
    # changed nothing beyond seed noise (accuracy.md rows 45-46).
    sam_radius: float = 0.0
    # Polyak averaging (an exponential moving average of the weights over the steps, Polyak and Juditsky 1992):
    # validation, the best checkpoint and the result use the average, training steps the weights themselves.
    # 0 is off; 0.999 averages over about the last 1,000 steps (two epochs of UTKFace's training part at 32). It
    # lowered dlib's fine-tuned network's age error by 0.03-0.04 years (two seeds), the over-60s' excepted, and
    # left its gender as it was (accuracy.md rows 47-48).
    ema_momentum: float = 0.0
    # Fine-tuning: backbone layers frozen from the input side (xception and dlib_resnet), and whether every
    # Xception BatchNorm stays frozen in inference mode (ImageNet statistics and scales) while the rest trains.
    frozen_layers: int = 0
    backbone_batchnorm_inference: bool = False
    # Residual blocks left out (DROPPABLE_BLOCKS), e.g. "6,10,12" of Xception's middle flow (1.6 million weights,
    # 1.6 MB at int8, each) or "13" of dlib's ResNet (1.2 million): to fit a size limit. A run that drops them
    # may start from one that has them (--init-from), which then lends the network every other weight.
    dropped_blocks: str = ""
    # Age output: "regression" (one number, MSE: the report's) or "distribution" (a softmax over ages 0-100
    # trained towards a Gaussian around the true age, KL divergence, with the expected value as the age and
    # an L1 loss on it: label distribution learning, DLDL-v2), or "regression_with_distribution" (the
    # regression's age, with such a distribution beside it on the same features, used only for the interval).
    age_output: str = "regression"
    age_sigma: float = 2.0         # years: the width of the Gaussian target of a distribution
    # The regression's age loss: "mse" (the report's; the mean age for a face) or "l1" (the absolute error in years,
    # which MAE reports: the median, less pulled by the wrong labels UTKFace has). L1's gradient is 1 where MSE's
    # is twice the error, so an L1 run wants about ten times MSE's loss_weights.age (0.1 for 0.01 at 4-5 years).
    age_loss: str = "mse"
    # Feature distillation (teacher.py): an .npz of dlib face-recognition embeddings of the training and
    # validation images; when set, an extra output "embedding" learns to reproduce them (cosine loss,
    # weight loss_weights.embedding) and the ONNX export leaves it out.
    teacher_embeddings: str = ""
    # Knowledge distillation from other models (e.g. a pair too large to ship): an .npz of their averaged female
    # probability and age per image (benchmarks/teacher_outputs.py). The training targets become
    # (1 - teacher_output_weight) x label + teacher_output_weight x teacher; validation keeps the true labels.
    teacher_outputs: str = ""
    teacher_output_weight: float = 0.5
    # Multi-task learning: an extra output "race" (a softmax over UTKFace's five race labels, weight
    # loss_weights.race; faces without a race label do not count) trained beside gender and age on the shared
    # features, which must then separate faces by race too. The ONNX export leaves it out: the product never
    # predicts race.
    race_auxiliary: bool = False
    # Label smoothing of the gender targets (Szegedy et al. 2016; against noisy labels, Lukasik et al. 2020): the
    # loss aims at gender_label_smoothing / 2 and 1 - gender_label_smoothing / 2 instead of 0 and 1, so that a face
    # whose label is wrong pulls less. 0 is off, 0.1 the usual; `calibrate` refits the probabilities after. At 0.1
    # for the Xception's third stage it changed nothing beyond seed noise (accuracy.md row 50).
    gender_label_smoothing: float = 0.0
    loss_weights: dict = field(default_factory=lambda: {"gender": 1.0, "age": 1.0})
    # Each training face's gender loss weighted by (faces in its age bracket)^-gender_balance, rescaled to a
    # mean of 1 (brackets 0-9, 10-19, 20-39, 40-59, 60+, as in evaluation): 0 weights every face alike, 1 gives
    # every bracket the same total, 0.5 (square-root inverse frequency) is between. Children and teens, the
    # fewest faces and the worst groups for gender, then count for more; the age loss is never weighted.
    gender_balance: float = 0.0
    # The same for the age loss over age bracket x gender: each face's age loss weighted by (faces of its bracket
    # and gender)^-age_balance, mean 1. UTKFace's training part holds 888 women of 40-59 against 2,045 men, and
    # they are the shipped model's worst group for age (8.2 years on test against 5.8 for the men).
    age_balance: float = 0.0
    seed: int = 1337               # the split's, and the training's unless training_seed is set
    # The final fit of a recipe already chosen on validation: train on the training and validation parts
    # together (a test part stays out), with no validation and so no checkpoint choice: the last epoch is kept.
    # Needs a schedule that does not watch validation loss (cosine or constant) and no early stopping.
    refit: bool = False
    # A fixed share of the training part's groups (the rest marked "unused" in split.csv): a learning curve in
    # data size, e.g. what more faces would buy, read on the same validation part.
    train_fraction: float = 1.0
    # Weight initialisation, augmentation and shuffling alone (-1: seed): another training_seed trains the same
    # split again, e.g. to measure how far two runs of one recipe differ, or to warm-start from a run of it.
    training_seed: int = -1
    # XLA-compile the training step: Model A trains about 15% faster with it on 2 CPU cores, but Xception
    # about 4x slower (4.5 against 18.7 images/s, measured), so the Model B recipes turn it off.
    xla: bool = True
    mixed_precision: bool = False  # bfloat16 compute, float32 weights and outputs

    @property
    def random_seed(self) -> int:
        """The seed of everything random in training but the split."""
        return self.seed if self.training_seed < 0 else self.training_seed

    @property
    def has_age_distribution(self) -> bool:
        """Whether the network outputs an age distribution (its own age, or beside a regression's)."""
        return self.age_output in ("distribution", "regression_with_distribution")

    @property
    def dropped_block_numbers(self) -> list[int]:
        try:
            numbers = sorted({int(part) for part in self.dropped_blocks.split(",") if part.strip()})
        except ValueError:
            numbers = [-1]
        if numbers and self.architecture not in DROPPABLE_BLOCKS:
            raise ValueError(f"dropped_blocks applies to the {' and '.join(DROPPABLE_BLOCKS)} architectures only")
        allowed = DROPPABLE_BLOCKS.get(self.architecture, ())
        if any(number not in allowed for number in numbers):
            raise ValueError(f"dropped_blocks={self.dropped_blocks!r}: expected block numbers of {self.architecture} "
                             f"that keep their input's shape ({', '.join(map(str, allowed))}), separated by commas")
        return numbers

    def with_overrides(self, **overrides) -> "Recipe":
        """A copy with the given fields replaced (None values are ignored)."""
        changes = {key: value for key, value in overrides.items() if value is not None}
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown recipe setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)  # checked as every Recipe is (__post_init__)

    def __post_init__(self) -> None:
        """Refuse, in one line, a setting no run could train with: every recipe is checked where it is made (named,
        overridden, or read back from a run's config.json), so nothing downstream meets an unknown choice and a
        bad setting never reaches a run folder."""
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}={getattr(self, name)!r}: expected one of {', '.join(choices)}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: expected 1 or more")
        if not (self.learning_rate >= 0 and self.min_learning_rate >= 0):  # 0 holds weights still, for checks
            raise ValueError(f"learning_rate={self.learning_rate}, min_learning_rate={self.min_learning_rate}: "
                             "expected learning rates of 0 or more")
        if any(not weight >= 0 for weight in self.loss_weights.values()):
            raise ValueError(f"loss_weights={self.loss_weights}: expected weights of 0 or more")
        self.dropped_block_numbers  # a wrong block list is refused here
        if self.architecture == "dlib_resnet":  # and so is a face size the network cannot read
            dlib_resnet.check_input_size(self.image_size)
        elif self.image_size < MIN_IMAGE_SIZE[self.architecture]:
            raise ValueError(f"image_size={self.image_size}: {self.architecture} reads faces of at least "
                             f"{MIN_IMAGE_SIZE[self.architecture]} px")
        for name in ("gender_balance", "age_balance"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)}: expected a number from 0 to 1")
        if not 0.0 <= self.mixup < float("inf"):
            raise ValueError(f"mixup={self.mixup}: expected the Beta distribution's parameter, above 0 (0: off)")
        if not 0.0 <= self.random_erasing <= 1.0:
            raise ValueError(f"random_erasing={self.random_erasing}: expected a probability from 0 to 1")
        if not 0.0 <= self.gender_label_smoothing < 1.0:
            raise ValueError(f"gender_label_smoothing={self.gender_label_smoothing}: expected a share from 0 to "
                             "below 1")
        if self.mixup and self.race_auxiliary:
            raise ValueError("mixup blends targets, and race labels are classes that cannot be blended: "
                             "use mixup or race_auxiliary, not both")
        if not 0.0 <= self.sam_radius < float("inf"):
            raise ValueError(f"sam_radius={self.sam_radius}: expected a distance of 0 (off) or more")
        if not 0.0 <= self.ema_momentum < 1.0:
            raise ValueError(f"ema_momentum={self.ema_momentum}: expected 0 (off) or a share of the average kept "
                             "at each step, below 1")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction={self.train_fraction}: expected a share above 0, at most 1")
        if self.refit and (self.schedule == "plateau" or self.early_stopping_patience):
            raise ValueError("refit=true trains without a validation part, so it needs schedule=cosine or constant "
                             "and early_stopping_patience=0 (both of the others watch validation loss)")

    def parse_setting(self, text: str) -> tuple[str, object]:
        """`KEY=VALUE` from the command line, VALUE read as the type of the recipe's field."""
        key, equals, value = text.partition("=")
        fields = {f.name: f for f in dataclasses.fields(self)}
        if not equals or key not in fields or isinstance(getattr(self, key), dict):
            raise ValueError(f"--set {text!r}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(n for n in fields if not isinstance(getattr(self, n), dict))}, "
                             f"or loss_weights.OUTPUT=WEIGHT")
        kind = type(getattr(self, key))
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"--set {key}: expected true or false, got {value!r}")
            return key, value.lower() in ("true", "1")
        try:
            return key, kind(value)
        except ValueError:
            raise ValueError(f"--set {key}: expected a {kind.__name__}, got {value!r}") from None

    def parse_settings(self, texts: list[str]) -> dict:
        """Every `--set`: `KEY=VALUE`, or `loss_weights.OUTPUT=WEIGHT` for one output's loss weight."""
        overrides: dict = {}
        for text in texts:
            key, equals, value = text.partition("=")
            field_name, dot, output = key.partition(".")
            if dot and field_name == "loss_weights":
                if output not in LOSS_OUTPUTS:
                    raise ValueError(f"--set {text!r}: the outputs are {', '.join(LOSS_OUTPUTS)}")
                try:
                    weight = float(value)
                except ValueError:
                    raise ValueError(f"--set {text!r}: expected a number") from None
                overrides["loss_weights"] = {**overrides.get("loss_weights", self.loss_weights), output: weight}
            else:
                name, parsed = self.parse_setting(text)
                overrides[name] = parsed
        return overrides

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Recipe":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            name="seed-a",
            description="The report's Model A: a 4-block custom CNN trained from scratch (SPEC.md).",
            architecture="report_cnn",
            preprocessing="featurewise",
            protocol="full",
            epochs=45,
            learning_rate=1e-3,
            schedule="plateau",
        ),
        Recipe(
            name="seed-b",
            description="The report's Model B: ImageNet Xception, first 50 layers frozen, inputs in [0, 1].",
            architecture="xception",
            preprocessing="unit",
            protocol="5k",
            epochs=140,
            learning_rate=1e-4,
            schedule="constant",
            frozen_layers=50,
            xla=False,
        ),
        Recipe(
            name="xception",
            description="Model B corrected: Xception's own [-1, 1] inputs, backbone BatchNorm kept in inference mode, "
                        "plateau schedule and early stopping on validation loss.",
            architecture="xception",
            preprocessing="xception",
            protocol="5k",
            epochs=60,
            learning_rate=1e-4,
            schedule="plateau",
            plateau_patience=3,
            early_stopping_patience=8,
            frozen_layers=50,
            backbone_batchnorm_inference=True,
            xla=False,
        ),
        Recipe(
            name="dlib-resnet",
            description="dlib's face-recognition ResNet-29 (pretrained on faces, shipped in face-recognition-models) "
                        "fine-tuned whole, with Model B's heads; 150 px faces, warm-up and cosine schedule.",
            architecture="dlib_resnet",
            preprocessing="dlib",
            protocol="holdout",
            image_size=150,
            epochs=8,
            learning_rate=1e-4,
            schedule="cosine",
            warmup_epochs=1,
            loss_weights={"gender": 1.0, "age": 0.01},
            xla=False,
        ),
    )
}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}") from None
