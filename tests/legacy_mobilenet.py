"""A legacy Keras-2 .h5 MobileNet v1 0.25 with real ImageNet weights, built from shared data, for the tests.

No internet is needed: the weights are transplanted from the float TFLite model of
tensorflow/tflite-support's test data (``mobilenet_v1_0.25_224_1_metadata_1.tflite``) into
``tf_keras.applications.MobileNet(alpha=0.25, classes=1001)``, which is then saved with tf_keras in
the old HDF5 format. Input: RGB 224x224 float, ``(x - 127.5) / 127.5``; output: 1001 softmax
probabilities, index 0 = background (ImageNet class i is output i + 1).

The TFLite model has BatchNorm folded into its convolutions (kernel + bias); the Keras convs have
no bias and a BatchNormalization after each, so every BN is set to add the folded bias and
nothing else: gamma=1, beta=bias, moving_mean=0, moving_variance=1-epsilon.

    python tests/legacy_mobilenet.py OUT.h5
"""
from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np

from edgelite.benchmarks.shared_data import SHARED

MODELS = SHARED / "data" / "third-party-models"
DEFAULT = MODELS / "mobilenet_v1_0.25_224_1_metadata_1.tflite"
FALLBACK_LABELS = MODELS / "imagenet_labels.txt"
PREFIX = "MobilenetV1/MobilenetV1/"


def tflite_tensors(tflite_path: Path | str = DEFAULT) -> dict[str, np.ndarray]:
    """Every named tensor the TFLite interpreter can hand back (the constants are the weights)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(tflite_path))
    interpreter.allocate_tensors()
    tensors = {}
    for detail in interpreter.get_tensor_details():
        try:
            tensors[detail["name"]] = np.array(interpreter.get_tensor(detail["index"]))
        except ValueError:  # a tensor without data
            pass
    return tensors


def _set(layer, *weights: np.ndarray) -> None:
    expected = [tuple(w.shape) for w in layer.get_weights()]
    got = [w.shape for w in weights]
    if expected != got:
        raise ValueError(f"{layer.name}: Keras wants {expected}, TFLite gives {got}")
    layer.set_weights([w.astype(np.float32) for w in weights])


def _set_bias_bn(bn, bias: np.ndarray) -> None:
    """Make BatchNormalization(x) == x + bias (at inference)."""
    ones, zeros = np.ones_like(bias), np.zeros_like(bias)
    _set(bn, ones, bias, zeros, ones - np.float32(bn.epsilon))


def build_model(tflite_path: Path | str = DEFAULT):
    """The tf_keras MobileNet v1 0.25 (1001 classes) carrying the TFLite model's weights."""
    import tf_keras

    t = tflite_tensors(tflite_path)
    model = tf_keras.applications.MobileNet(alpha=0.25, input_shape=(224, 224, 3), weights=None,
                                            classes=1001, include_top=True)
    # Stem: TFLite Conv2D filters are [out, kh, kw, in]; Keras wants [kh, kw, in, out].
    _set(model.get_layer("conv1"), t["MobilenetV1/Conv2d_0/weights"].transpose(1, 2, 3, 0))
    _set_bias_bn(model.get_layer("conv1_bn"), t[PREFIX + "Conv2d_0/Conv2D_bias"])
    for i in range(1, 14):
        # Depthwise filters are [1, kh, kw, C]; Keras wants [kh, kw, C, 1].
        _set(model.get_layer(f"conv_dw_{i}"),
             t[f"MobilenetV1/Conv2d_{i}_depthwise/depthwise_weights"].transpose(1, 2, 3, 0))
        _set_bias_bn(model.get_layer(f"conv_dw_{i}_bn"), t[PREFIX + f"Conv2d_{i}_depthwise/depthwise_bias"])
        _set(model.get_layer(f"conv_pw_{i}"),
             t[f"MobilenetV1/Conv2d_{i}_pointwise/weights"].transpose(1, 2, 3, 0))
        _set_bias_bn(model.get_layer(f"conv_pw_{i}_bn"), t[PREFIX + f"Conv2d_{i}_pointwise/Conv2D_bias"])
    _set(model.get_layer("conv_preds"), t["MobilenetV1/Logits/Conv2d_1c_1x1/weights"].transpose(1, 2, 3, 0),
         t["MobilenetV1/Logits/Conv2d_1c_1x1/Conv2D_bias"])
    return model


def build(out_path: Path | str, tflite_path: Path | str = DEFAULT) -> Path:
    """Build the model and save it as a legacy Keras-2 HDF5 file at `out_path` (a .h5 path)."""
    out_path = Path(out_path)
    if out_path.suffix != ".h5":
        raise ValueError(f"expected a .h5 path, got {out_path}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    build_model(tflite_path).save(str(out_path), save_format="h5")
    return out_path


def labels(tflite_path: Path | str = DEFAULT) -> list[str]:
    """The model's 1001 labels (0 = background): from its TFLite metadata, else imagenet_labels.txt."""
    try:
        with zipfile.ZipFile(tflite_path) as archive:
            text = archive.read("labels.txt").decode("utf-8")
    except (zipfile.BadZipFile, KeyError, OSError):
        text = FALLBACK_LABELS.read_text(encoding="utf-8")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != 1001:
        raise ValueError(f"expected 1001 labels, got {len(names)}")
    return names


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/legacy_mobilenet.py OUT.h5")
    print(build(sys.argv[1]))
