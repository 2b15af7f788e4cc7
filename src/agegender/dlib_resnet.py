"""dlib's face-recognition ResNet as a Keras backbone: a network pretrained on about 3 million faces.

`face-recognition-models` (a dependency, for the landmarks) ships dlib's ResNet-29 in dlib's own binary
format. This module reads that file and rebuilds the network in Keras layer for layer, so that it can be
fine-tuned for age and gender like the ImageNet Xception: a backbone that already knows faces. The layout
is dlib's `dnn_face_recognition_ex.cpp`: a 7x7 stem, 14 residual blocks of 32-256 filters, global average
pooling, and a 128-number linear embedding. dlib's BatchNorm is folded into per-channel scales and offsets
(its `affine` layers), which become frozen Keras scale-and-offset layers here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

INPUT_SIZE = 150            # the chip size the network was trained on
MIN_INPUT_SIZE = 131        # below it, the last stage's 3x3 stride-2 convolution gets under 3 px
MEAN_RGB = (122.782, 117.001, 104.298)  # stored in the file's input layer
# Per stage: filters, residual blocks, and whether its first block halves the resolution.
_STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


class DlibFileError(ValueError):
    """A file that is not dlib's face-recognition ResNet."""


def default_weights_path() -> str:
    import face_recognition_models

    return face_recognition_models.face_recognition_model_location()


class _Reader:
    """dlib's serialization: compact integers (a length byte, its top bit the sign, then little-endian bytes),
    strings as a compact length and their bytes, tensors as a version, 4 compact dimensions and raw float32s."""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def integer(self) -> int:
        head = self.data[self.at]
        size = head & 0x0F
        value = int.from_bytes(self.data[self.at + 1:self.at + 1 + size], "little")
        self.at += 1 + size
        return -value if head & 0x80 else value

    def tensor(self) -> np.ndarray:
        if self.integer() != 2:
            raise DlibFileError("unexpected tensor version")
        shape = [self.integer() for _ in range(4)]
        count = int(np.prod(shape))
        values = np.frombuffer(self.data, "<f4", count, self.at)
        self.at += 4 * count
        return values

    def seek(self, name: str) -> None:
        """Move past the next serialized string `name` (a layer's version tag)."""
        encoded = name.encode("ascii")
        found = self.data.find(bytes([1, len(encoded)]) + encoded, self.at)
        if found < 0:
            raise DlibFileError(f"no layer {name!r} where one was expected")
        self.at = found + 2 + len(encoded)


def read_weights(path: str | Path) -> dict:
    """Every parameter of the network, in the order the network computes them."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise DlibFileError(f"cannot read {path}: {error.strerror}") from None
    if b"loss_metric_" not in data[:32] or b"input_rgb_image_sized" not in data[:512]:
        raise DlibFileError(f"{path} is not dlib's face-recognition ResNet (dlib_face_recognition_resnet_model_v1.dat)")
    reader = _Reader(data)
    convolutions, scales = [], []
    try:
        for _ in range(1 + 2 * sum(blocks for _, blocks, _ in _STAGES)):
            reader.seek("con_4")
            params = reader.tensor()
            filters, rows, cols = reader.integer(), reader.integer(), reader.integer()
            inputs = (params.size - filters) // (filters * rows * cols)
            # dlib keeps filters as (out, in, rows, cols) then the biases; Keras wants (rows, cols, in, out).
            kernel = params[:-filters].reshape(filters, inputs, rows, cols).transpose(2, 3, 1, 0)
            convolutions.append((kernel, params[-filters:].copy()))
            reader.seek("affine_")
            params = reader.tensor()
            scales.append((params[:params.size // 2].copy(), params[params.size // 2:].copy()))
        reader.seek("fc_2")
        outputs, inputs = reader.integer(), reader.integer()
        embedding = reader.tensor().reshape(inputs, outputs).copy()
    except (IndexError, ValueError) as error:
        raise DlibFileError(f"{path} is not dlib's face-recognition ResNet ({error})") from None
    return {"convolutions": convolutions, "scales": scales, "embedding": embedding}


def preprocessing_layer():
    """dlib's input layer: (pixel - the mean colour of dlib's training faces) / 256."""
    from keras import layers

    return layers.Rescaling(1 / 256.0, offset=(-np.array(MEAN_RGB) / 256.0).tolist(), name="rescale_dlib")


def check_input_size(size: int) -> None:
    """Refuse, in one line, a face size the network cannot read."""
    if size < MIN_INPUT_SIZE:
        raise ValueError(f"dlib's ResNet needs faces of at least {MIN_INPUT_SIZE} px, not {size}; "
                         f"set image_size={INPUT_SIZE}, the size it was pretrained at")


def build_backbone(weights: str | Path, include_embedding: bool = False, dropped_blocks: list[int] = (),
                   size: int = INPUT_SIZE):
    """A Keras model with the weights of dlib's .dat file `weights`: `size` px inputs (dlib's own 150 unless
    fine-tuned at another, as the network is convolutional up to its global pooling) scaled by
    `preprocessing_layer` in, the 256 pooled features out, or with `include_embedding` dlib's 128-number face embedding (its last
    layer, which age and gender do not use). `dropped_blocks` (numbered 1-14 in order) are left out; the
    layers kept keep their names (dlib_conv{index} counts every convolution of the whole network)."""
    import keras
    from keras import layers

    check_input_size(size)
    params = read_weights(weights)
    counter = {"conv": 0, "scale": 0}
    x = inputs = keras.Input((size, size, 3), name="dlib_input")

    def conv(x, filters, size, stride):
        index = counter["conv"]
        counter["conv"] += 1
        layer = layers.Conv2D(filters, size, strides=stride, padding="same" if stride == 1 else "valid",
                              name=f"dlib_conv{index}")
        x = layer(x)
        layer.set_weights(list(params["convolutions"][index]))
        return x

    def scale(x):
        index = counter["scale"]
        counter["scale"] += 1
        channels = x.shape[-1]
        # The folded BatchNorm: a frozen per-channel scale and offset (a 1x1 depthwise convolution with bias).
        layer = layers.DepthwiseConv2D(1, trainable=False, name=f"dlib_affine{index}")
        x = layer(x)
        gamma, beta = params["scales"][index]
        layer.set_weights([gamma.reshape(1, 1, channels, 1), beta])
        return x

    def add_padded(shortcut, block):
        """dlib's add_prev: the smaller tensor is zero-padded at its far end (rows, columns, channels)."""
        rows = shortcut.shape[1] - block.shape[1]
        if rows:
            block = layers.ZeroPadding2D(((0, rows), (0, rows)))(block)
        extra = block.shape[-1] - shortcut.shape[-1]
        if extra:  # plain layers rather than a Lambda, so that a saved model loads without unsafe code
            side, channels = shortcut.shape[1], shortcut.shape[-1]
            shortcut = layers.Reshape((side, side, channels, 1))(shortcut)
            shortcut = layers.ZeroPadding3D(((0, 0), (0, 0), (0, extra)))(shortcut)
            shortcut = layers.Reshape((side, side, channels + extra))(shortcut)
        return layers.Add()([shortcut, block])

    x = layers.ReLU()(scale(conv(x, 32, 7, 2)))
    x = layers.MaxPooling2D(3, strides=2)(x)
    number = 0
    for filters, blocks, downsamples in _STAGES:
        for block in range(blocks):
            number += 1
            stride = 2 if downsamples and block == 0 else 1
            if number in dropped_blocks:  # its sum would pass the input on; ReLU leaves that unchanged
                counter["conv"] += 2
                counter["scale"] += 2
                continue
            y = layers.ReLU()(scale(conv(x, filters, 3, stride)))
            y = scale(conv(y, filters, 3, 1))
            shortcut = layers.AveragePooling2D(2, strides=2)(x) if stride == 2 else x
            x = layers.ReLU()(add_padded(shortcut, y))
    x = layers.GlobalAveragePooling2D(name="dlib_pool")(x)
    if include_embedding:
        projection = layers.Dense(128, use_bias=False, name="dlib_embedding")
        x = projection(x)
        projection.set_weights([params["embedding"]])
    return keras.Model(inputs, x, name="dlib_resnet")
