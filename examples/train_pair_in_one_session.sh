#!/usr/bin/env bash
# Train the default model's kind of pair (an ImageNet Xception without middle-flow blocks 6 and 10, and dlib's
# face-recognition ResNet without block 13, averaged in one ONNX file) within one session: about 2 h 25 min
# of training on 2 CPU cores (reports/accuracy.md, row 18: 93.99% / 4.34 on validation, 93.68% / 4.78 on test,
# measured with the ages averaged equally, before row 34's weights).
#
#   bash examples/train_pair_in_one_session.sh DATA XCEPTION_WEIGHTS [RUNS_FOLDER]
#   e.g. nohup bash examples/train_pair_in_one_session.sh ../shared/datasets/utkface \
#            ../shared/weights/xception_imagenet_notop.weights.h5 > pair.log 2>&1 &
#
# Run the same command again after an interruption: finished stages are skipped and the interrupted one
# resumes from its last epoch. Writes RUNS_FOLDER/pair.onnx, calibrated on the validation part.
set -euo pipefail
USAGE="usage: train_pair_in_one_session.sh DATA XCEPTION_WEIGHTS [RUNS_FOLDER]"
DATA=${1:?$USAGE}
WEIGHTS=${2:?$USAGE}
RUNS=${3:-runs}
AGEGENDER=${AGEGENDER:-agegender}

# stage OUT ARGS...: train OUT from ARGS, continue it if it was interrupted, or skip it if it is finished
stage() {
    local out=$1
    shift
    if [[ -f $out/metrics.json ]]; then
        echo "finished already: $out"
    elif [[ -f $out/config.json ]]; then
        $AGEGENDER train --resume --out "$out"
    else
        $AGEGENDER train "$@" --data "$DATA" --protocol holdout --out "$out"
    fi
}

X=(--recipe xception --backbone-weights "$WEIGHTS" --set loss_weights.age=0.01 --set schedule=cosine
   --set frozen_layers=0 --set dropped_blocks=6,10)
stage "$RUNS/pair-xception" "${X[@]}" --set warmup_epochs=1 --epochs 10                    # 87 min
stage "$RUNS/pair-xception-stage2" "${X[@]}" --set warmup_epochs=0 --set learning_rate=2e-5 --epochs 3 \
    --init-from "$RUNS/pair-xception"                                                       # 25 min
stage "$RUNS/pair-dlib-probe" --recipe dlib-resnet --set frozen_layers=1000 --set schedule=constant \
    --set learning_rate=1e-3 --set warmup_epochs=0 --epochs 1                              # 1 min
stage "$RUNS/pair-dlib" --recipe dlib-resnet --set dropped_blocks=13 --set rotation_degrees=10 --epochs 16 \
    --init-from "$RUNS/pair-dlib-probe"                                                     # 29 min

# The exports are quick; remade on every run, so that a half-written file is never kept.
$AGEGENDER export "$RUNS/pair-xception-stage2" --out "$RUNS/pair-xception-int8.onnx" --int8 static
$AGEGENDER export "$RUNS/pair-dlib" --out "$RUNS/pair-dlib-int8.onnx" --int8 static
# Ages weighted towards dlib's network (reports/accuracy.md, row 34: best on validation in ten pairs of these recipes)
$AGEGENDER average "$RUNS/pair-xception-int8.onnx" "$RUNS/pair-dlib-int8.onnx" --age-weights 0.35 0.65 \
    --out "$RUNS/pair.onnx"
$AGEGENDER calibrate "$RUNS/pair.onnx" --data "$DATA" --protocol holdout --split-name val --no-flip
echo "wrote $RUNS/pair.onnx; try it: agegender predict PHOTO --model $RUNS/pair.onnx"
