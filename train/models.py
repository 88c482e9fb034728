"""The models of the recipes: the tutorial CNN, and MobileNetV2 with a new softmax head."""
from __future__ import annotations

from pathlib import Path

from edgelite.errors import EdgeliteError


def small_cnn(size: int, classes: int):
    """Two conv 3x3 + max-pool blocks, a dense layer, softmax: the tutorial custom model."""
    import keras

    return keras.Sequential([
        keras.Input((size, size, 3)),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(classes, activation="softmax"),
    ], name="edgelite_cnn")


def augmentation():
    """Flip, small rotation, zoom: Keras preprocessing layers, active only while training."""
    import keras

    return keras.Sequential([
        keras.layers.RandomFlip("horizontal"),
        keras.layers.RandomRotation(0.05),
        keras.layers.RandomZoom(0.1),
    ], name="augmentation")


def mobilenetv2_backbone(size: int, alpha: float, weights: str | None):
    """MobileNetV2 without its top. weights: 'imagenet' (Keras download), None, or a file:
    a whole ImageNet model (.keras/.h5, e.g. ../shared/data/models) or a no-top weights file."""
    import keras

    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, include_top=False,
                                          weights="imagenet" if weights == "imagenet" else None)
    if weights in (None, "imagenet"):
        return base
    path = Path(weights)
    if not path.is_file():
        raise EdgeliteError(f"no such weights file: {path}")
    try:
        source = keras.saving.load_model(path, compile=False)
        donor = keras.Model(source.input, source.get_layer("out_relu").output)
        base.set_weights(donor.get_weights())  # conv weights do not depend on the input size
    except (ValueError, OSError) as whole_model_error:
        try:
            base.load_weights(path)
        except Exception as exc:
            raise EdgeliteError(f"{path}: neither a MobileNetV2 ImageNet model ({whole_model_error}) "
                                f"nor its no-top weights ({exc})") from None
    return base


def mobilenetv2_classifier(size: int, classes: int, alpha: float = 1.0, weights: str | None = "imagenet",
                           dropout: float = 0.2):
    """(model, backbone): the backbone always runs in inference mode (training=False), so its
    BatchNormalization layers keep their statistics, as Keras' transfer-learning guide says."""
    import keras

    base = mobilenetv2_backbone(size, alpha, weights)
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    features = base(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D()(features)
    x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=f"mobilenetv2_{alpha:g}_{size}_transfer"), base


def unfreeze_last(base, n: int) -> int:
    """Make the last n layers of the backbone trainable, BatchNormalization excepted."""
    import keras

    base.trainable = True
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= len(base.layers) - n and not isinstance(layer, keras.layers.BatchNormalization)
    return sum(1 for layer in base.layers if layer.trainable)
