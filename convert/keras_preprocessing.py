"""The pixel normalisation a Keras model carries at its input, read from its layers.

Many Keras models take raw pixels (0..255) and normalise them themselves: the TensorFlow
tutorials put augmentation layers (inactive at inference) and then ``Rescaling(1./255)``,
``Rescaling(1./127.5, offset=-1)`` or a ``Normalization(mean, variance)`` at the input, sometimes
inside a nested Sequential ("data_augmentation"), or apply
``keras.applications.mobilenet_v2.preprocess_input`` to the input tensor (Keras 2 records it as
TFOpLambda layers, Keras 3 as ``TrueDivide``/``Subtract`` operations), or wrap it in a ``Lambda``;
Keras 3 applications and KerasCV backbones do it inside the backbone. :func:`input_normalisation`
finds that so the converter can feed raw pixels and record that the model normalises itself.

Traversal. Starting at the model's (single) input, follow the chain of layers one by one:

* a Sequential (or a ``keras.layers.Pipeline``) is walked in the order of its ``layers``;
* a Functional model is walked along its graph: from the current tensor to the one node that
  consumes it (that node must have one input and one output tensor), until the model's single
  output is reached. A tensor consumed by several nodes (a branch) or by none ends the walk;
* a layer that is itself a Sequential or Functional model (nested "data_augmentation", a
  backbone) is walked into; when the walk reaches its output it goes on in the outer model,
  when it stops inside, everything stops;
* ``InputLayer``/``Identity`` and the augmentation and noise layers (identity at inference:
  RandomFlip, RandomRotation, RandomZoom, RandomTranslation, RandomContrast, RandomBrightness,
  RandomCrop, ... Dropout, GaussianNoise; see ``INACTIVE``) are walked past;
* ``Resizing`` (without padding) and ``CenterCrop`` are walked past: they move or resample pixels
  with weights that sum to one, so they commute with a per-channel affine map;
* ``Rescaling(scale, offset)``: y = x * scale + offset, scalar or per channel;
* ``Normalization`` (``invert=False``, per-channel or global axis, values given or adapted):
  y = (x - mean) / max(sqrt(variance), epsilon);
* arithmetic with a constant, as Keras records it from ``x / 127.5 - 1`` or ``preprocess_input``
  on a symbolic tensor: Keras 2 ``TFOpLambda`` (tf.math.truediv, multiply, subtract, add,
  negative, cast to float) and Keras 3 operations (TrueDivide, Divide, Multiply, Subtract, Add,
  Negative, Cast to float);
* a ``Lambda`` whose function is a ``keras.applications.*.preprocess_input`` (Keras 3 or 2): that
  function is applied to a few probe pixels and accepted when it is per-channel affine
  ("tf" and "torch" modes, the pass-through of EfficientNet/ConvNeXt/...), refused when it mixes
  channels ("caffe" mode flips RGB to BGR, which a mean/std cannot express);
* anything else ends the walk: a weighted layer (Conv2D, Dense, BatchNormalization, ...), any
  other Lambda or TFOpLambda, a TFSMLayer (a SavedModel is opaque), a subclassed model, a merge.

The maps met on the way compose into one affine map y = a * x + b per channel, which is
(x - mean) / std with std = 1 / a and mean = -b / a, in the units of the model's input (raw
pixels). When the walk stops at something it cannot read, what was found before it is returned
(the model does at least that to its pixels); None when nothing was found.

Layers are recognised by class name, not by ``isinstance`` of one library, so Keras 3
(``keras.layers``) models and legacy Keras 2 (``tf_keras.layers``, e.g. loaded from .h5) both work.
"""
from __future__ import annotations

import re
from collections import defaultdict

import numpy as np

from edgelite.errors import EdgeliteError
from edgelite.resolve import geometry

from . import keras_graph as graph

# identity when called with training=False (Keras 3 and Keras 2 / tf_keras; KerasCV uses the same names)
INACTIVE = frozenset({
    "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
    "RandomBrightness", "RandomCrop", "RandomHeight", "RandomWidth", "RandomGrayscale", "RandomHue",
    "RandomSaturation", "RandomSharpness", "RandomShear", "RandomPerspective", "RandomInvert",
    "RandomPosterization", "RandomErasing", "RandomGaussianBlur", "RandomColorDegeneration",
    "RandomColorJitter", "RandomElasticTransform", "Solarization", "RandAugment", "AugMix",
    "CutMix", "MixUp", "GaussianNoise", "GaussianDropout", "Dropout", "SpatialDropout1D",
    "SpatialDropout2D", "SpatialDropout3D", "AlphaDropout",
})
PASS = frozenset({"InputLayer", "Identity"})
# change where pixels are, not their units (convex or sum-to-one resampling)
GEOMETRY = frozenset({"Resizing", "CenterCrop"})

# arithmetic with a constant: Keras 2 TFOpLambda symbols and Keras 3 operation class names
OPERATIONS = {
    "__operators__.add": "add", "math.add": "add", "Add": "add",
    "math.subtract": "sub", "Subtract": "sub",
    "math.multiply": "mul", "math.scalar_mul": "mul", "compat.v1.math.scalar_mul": "mul", "Multiply": "mul",
    "math.truediv": "div", "math.divide": "div", "TrueDivide": "div", "Divide": "div",
    "math.negative": "neg", "Negative": "neg",
    "cast": "cast", "dtypes.cast": "cast", "Cast": "cast",
}
APPLICATION_MODULE = re.compile(r"(?:tf_keras|keras|tensorflow\.python\.keras)(?:\.src)?\.applications\.\w+")


def input_normalisation(model) -> dict | None:
    """What the model does to raw pixels before its first weighted layer, walking from the input through
    augmentation layers (inactive at inference), InputLayer, nested Sequential/Functional models, Rescaling
    and Normalization layers (composed: several may follow each other), and stopping at the first other layer.
    Returns {"mean": [m, m, m] or per-channel, "std": [...], "layers": ["rescaling", ...]} in 0..255 pixel units
    such that the model computes (pixel - mean) / std itself, or None when no such layer sits at the input.

    "layers" names the layers (or operations) that make up the normalisation, in order. See the module
    docstring for the traversal.
    """
    walk = _Walk(_input_channels(model))
    walk.through(model)
    return walk.result()


class _Walk:
    def __init__(self, channels: int | None):
        self.channels = channels
        self.scale = np.float64(1.0)  # y = scale * pixel + offset, scalars or per channel
        self.offset = np.float64(0.0)
        self.layers: list[str] = []

    # ---- the traversal: each returns True when it went through, False when the walk stops

    def through(self, model) -> bool:
        bases = graph.bases(model)
        if "Sequential" in bases or "Pipeline" in bases:  # (tf_keras's Sequential is also a Functional)
            return all(self.step(layer) for layer in graph.attempt(lambda: list(model.layers), []))
        if "Functional" in bases:
            return self.graph(model)
        return False

    def graph(self, model) -> bool:
        inputs = graph.attempt(lambda: list(model.inputs), [])
        outputs = graph.attempt(lambda: list(model.outputs), [])
        by_depth = getattr(model, "_nodes_by_depth", None)
        if len(inputs) != 1 or len(outputs) != 1 or not by_depth:
            return False
        consumers = defaultdict(list)
        nodes = [node for depth in by_depth.values() for node in depth]
        for node in nodes:
            for tensor in graph.node_inputs(node):
                consumers[graph.key(tensor)].append(node)
        tensor, end = inputs[0], graph.key(outputs[0])
        for _ in range(len(nodes) + 1):
            if graph.key(tensor) == end:
                return True
            following = consumers.get(graph.key(tensor), [])
            if len(following) != 1:
                return False
            node = following[0]
            outs = graph.node_outputs(node)
            if len(graph.node_inputs(node)) != 1 or len(outs) != 1:
                return False
            if not self.step(graph.node_operation(node), node, tensor):
                return False
            tensor = outs[0]
        return False

    def step(self, layer, node=None, tensor=None) -> bool:
        kind = type(layer).__name__
        if kind in PASS or kind in INACTIVE:
            return True
        if kind in GEOMETRY:
            return not getattr(layer, "pad_to_aspect_ratio", False)
        if kind == "Rescaling":
            return self.rescaling(layer)
        if kind == "Normalization":
            return self.normalization(layer)
        if kind == "Lambda":
            return self.application_lambda(layer)
        if kind == "TFOpLambda" or (node is not None and kind in OPERATIONS):
            return node is not None and self.operation(layer, node, tensor)
        if {"Sequential", "Functional"} & graph.bases(layer):
            return self.through(layer)
        return False

    # ---- the maps

    def compose(self, scale, offset, name: str) -> bool:
        """y -> y * scale + offset after what was found so far; False (and nothing kept) if it cannot."""
        scale, offset = self.per_channel(scale), self.per_channel(offset)
        if scale is None or offset is None:
            return False
        try:
            new_scale, new_offset = self.scale * scale, self.offset * scale + offset
            np.broadcast_shapes(np.shape(new_scale), np.shape(new_offset))
        except ValueError:
            return False
        if not (np.all(np.isfinite(new_scale)) and np.all(np.isfinite(new_offset))) or np.any(new_scale == 0):
            return False
        self.scale, self.offset = new_scale, new_offset
        self.layers.append(name)
        return True

    def per_channel(self, value) -> np.ndarray | None:
        """A scalar, or a vector over the last (channel) axis; None for anything else."""
        try:
            array = np.asarray(graph.numpy(value), dtype=np.float64)
        except (TypeError, ValueError):
            return None
        if array.size == 1:
            return array.reshape(())
        if array.ndim == 0 or any(d != 1 for d in array.shape[:-1]):
            return None
        if self.channels is not None and array.shape[-1] != self.channels:
            return None
        return array.reshape(-1)

    def rescaling(self, layer) -> bool:
        scale, offset = getattr(layer, "scale", None), getattr(layer, "offset", 0.0)
        if scale is None:
            return False
        if (np.size(graph.numpy(scale)) > 1 or np.size(graph.numpy(offset)) > 1) and _channels_first(layer):
            return False
        return self.compose(scale, offset, layer.name)

    def normalization(self, layer) -> bool:
        if getattr(layer, "invert", False) or not getattr(layer, "built", False):
            return False
        # `mean` and `variance` as `call` uses them, in the broadcast shape (1, 1, 1, C) for a per-channel
        # axis, (1, 1, 1, 1) for axis=None. Not the adapt_mean/adapt_variance weights: Keras 3 copies
        # those into `mean` only in finalize_state() (after adapt() or loading), so after set_weights()
        # the layer still computes with the old values.
        mean, variance = getattr(layer, "mean", None), getattr(layer, "variance", None)
        if mean is None or variance is None:
            return False
        mean, variance = self.per_channel(mean), self.per_channel(variance)
        if mean is None or variance is None or np.any(variance < 0):
            return False
        std = np.maximum(np.sqrt(variance), _epsilon(layer))
        return self.compose(1.0 / std, -mean / std, layer.name)

    def operation(self, op, node, tensor) -> bool:
        """A Keras 2 TFOpLambda or a Keras 3 operation: the tensor with one constant (+ - * /, -x, cast)."""
        if "Layer" in graph.bases(op) and type(op).__name__ != "TFOpLambda":
            return False  # keras.layers.Add/Subtract/Multiply merge tensors
        kind = OPERATIONS.get(getattr(op, "symbol", None) or type(op).__name__)
        args, kwargs = graph.node_arguments(node)
        operands = [a for a in args if a is not None] + [v for k, v in kwargs.items() if k != "name" and v is not None]
        mine = [i for i, o in enumerate(operands) if graph.is_symbolic(o) and graph.key(o) == graph.key(tensor)]
        others = [o for i, o in enumerate(operands) if i not in mine]
        if len(mine) != 1 or any(graph.is_symbolic(o) for o in others):
            return False
        if kind == "cast":
            dtype = others[0] if others else getattr(op, "dtype", None)
            return len(others) <= 1 and "float" in str(getattr(dtype, "name", dtype))
        if kind == "neg":
            return not others and self.compose(-1.0, 0.0, op.name)
        if kind is None or len(operands) != 2:
            return False
        constant, first = others[0], mine[0] == 0
        c = self.per_channel(constant)
        if c is None:
            return False
        if kind == "add":
            return self.compose(1.0, c, op.name)
        if kind == "mul":
            return self.compose(c, 0.0, op.name)
        if kind == "sub":
            return self.compose(1.0, -c, op.name) if first else self.compose(-1.0, c, op.name)
        if kind == "div" and first and np.all(c != 0):
            return self.compose(1.0 / c, 0.0, op.name)
        return False

    def application_lambda(self, layer) -> bool:
        """A Lambda of keras.applications.<family>.preprocess_input, measured on probe pixels."""
        function = getattr(layer, "function", None)
        if getattr(function, "__name__", None) != "preprocess_input" or not APPLICATION_MODULE.fullmatch(
                getattr(function, "__module__", "") or ""):
            return False
        channels = self.channels or 3
        rng = np.random.default_rng(0)
        probe = np.concatenate([np.zeros((1, channels)), 255.0 * np.eye(channels),
                                rng.uniform(0, 255, (4, channels))]).astype(np.float32)
        probe = probe.reshape(-1, 1, 1, channels)
        try:
            out = np.asarray(graph.numpy(function(probe.copy(), **dict(getattr(layer, "arguments", None) or {}))),
                             dtype=np.float64)
        except Exception:  # noqa: BLE001 - a function that does not take this probe is not readable
            return False
        if out.shape != probe.shape:
            return False
        out = out.reshape(-1, channels)
        offset = out[0]
        scale = (np.diag(out[1:1 + channels]) - offset) / 255.0
        predicted = probe.reshape(-1, channels).astype(np.float64) * scale + offset
        tolerance = 1e-4 * (1.0 + np.abs(offset).max() + 255.0 * np.abs(scale).max())
        if not np.allclose(out, predicted, rtol=0, atol=tolerance):
            return False  # not per-channel affine (e.g. "caffe": RGB -> BGR)
        if np.allclose(scale, 1.0) and np.allclose(offset, 0.0):
            return True  # a pass-through (EfficientNet, ConvNeXt, MobileNetV3, ...)
        return self.compose(scale, offset, layer.name)

    # ---- the answer

    def result(self) -> dict | None:
        if not self.layers:
            return None
        sizes = {np.size(self.scale), np.size(self.offset)} - {1}
        channels = self.channels or (sizes.pop() if sizes else 3)
        scale = np.broadcast_to(self.scale, (channels,))
        offset = np.broadcast_to(self.offset, (channels,))
        std, mean = 1.0 / scale, -offset / scale
        return {"mean": [_tidy(m) for m in mean], "std": [_tidy(s) for s in std], "layers": list(self.layers)}


def _tidy(value: float) -> float:
    """A float32-exact value without float64 noise (255.00000000000003 -> 255.0), and no -0.0."""
    return float(f"{float(value):.7g}") + 0.0






def _input_channels(model) -> int | None:
    """C of an image input (1 for a greyscale [N, H, W] one), None for any other input."""
    try:
        return geometry(tuple(model.inputs[0].shape), model.name)["channels"]
    except (EdgeliteError, AttributeError, IndexError, TypeError):
        return None






def _epsilon(layer) -> float:
    if graph.library(layer) == "tf_keras":
        import tf_keras

        return float(tf_keras.backend.epsilon())
    import keras

    return float(keras.config.epsilon())


def _channels_first(layer) -> bool:
    if graph.library(layer) != "keras":
        return False  # Keras 2's Rescaling broadcasts over the last axis whatever the data format
    import keras

    return keras.config.image_data_format() == "channels_first"
