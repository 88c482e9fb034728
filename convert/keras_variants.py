"""Variants of the user's Keras model built for the converters, sharing its layers and weights (the user's model
is never changed): the model on a fixed-size input, and the model without its final softmax (its logits)."""
from __future__ import annotations

import numpy as np

from edgelite.errors import EdgeliteError

from . import keras_graph as graph
from .keras_facts import family_size


def _library(model):
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras

        return tf_keras
    import keras

    return keras


def fixed_input(model, size: tuple[int, int] | None = None):
    """`model` with an input of a fixed height and width: a dynamic one ([N, None, None, C], MobileNetV3's
    default) gets `size`, else its family's evaluation size (keras_facts.family_size; a headless family nested
    under the user's head counts); converters and device
    runtimes need one (LiteRT's XNNPACK cannot prepare a dynamic-size graph). A model whose input is fixed
    already keeps it (a different `size` is refused)."""
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or (None not in shape[1:3] and size is None):
        return model
    fixed = shape[1:3]
    if None not in fixed:
        if tuple(size) != tuple(fixed):
            raise EdgeliteError(f"{model.name} takes {fixed[0]}x{fixed[1]} images: --size {size[0]} {size[1]} "
                                "is for models with a dynamic input size")
        return model
    size = size or family_size(model.name) or _base_size(model)
    if size is None:
        raise EdgeliteError(f"{model.name} has a dynamic input size {shape[1:3]}: pass --size H W")
    if min(size) < 1:
        raise EdgeliteError(f"--size {size[0]} {size[1]}: height and width must be positive")
    library = _library(model)
    inputs = library.Input(shape=(*size, shape[3]), batch_size=None, dtype=model.inputs[0].dtype, name="image")
    try:  # the same layers on the new input: one flat graph, as the user's
        return library.models.clone_model(model, input_tensors=inputs, clone_function=lambda layer: layer)
    except Exception:  # noqa: BLE001 - a model clone_model cannot rebuild (subclassed): call it whole
        return library.Model(inputs, model(inputs), name=model.name)


def _base_size(model) -> tuple[int, int] | None:
    """The evaluation size of a keras.applications family the model holds as a nested model (a headless base
    under the user's own head: `base = MobileNetV3Large(include_top=False); head(base(inputs))`), else None."""
    for layer in graph.attempt(lambda: model.layers, []):
        if hasattr(layer, "layers"):
            found = family_size(layer.name) or _base_size(layer)
            if found:
                return found
    return None


def without_softmax(model, sample: np.ndarray):
    """The model's logits: `model` with the softmax of its last layer taken off (a Dense/Conv with softmax
    activation becomes the same layer with a linear one, sharing its weights; a final Softmax or
    Activation("softmax") layer is left out), or None where the model does not end in a softmax of one
    layer. Checked on `sample`: the softmax of its output must be the model's output."""
    outputs = graph.attempt(lambda: list(model.outputs), [])
    history = getattr(outputs[0], "_keras_history", None) if len(outputs) == 1 else None
    if history is None:
        return None
    last = history[0]  # the layer that made the output, at the node that made it (a layer may have several)
    nodes = graph.attempt(lambda: last._inbound_nodes, [])
    inputs = graph.node_inputs(nodes[history[1]]) if history[1] < len(nodes) else []
    if len(inputs) != 1:
        return None
    library, kind = _library(model), type(last).__name__
    entry = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    activation = getattr(last, "activation", None)
    name = getattr(activation, "__name__", str(activation or "")).lower()
    try:
        if kind == "Softmax" or (kind == "Activation" and "softmax" in name):
            logits = library.Model(entry, inputs[0], name=model.name)
        elif "softmax" in name and last.get_weights():
            head = type(last).from_config({**last.get_config(), "activation": "linear", "name": f"{last.name}_logits"})
            outputs = head(inputs[0])
            head.set_weights(last.get_weights())
            logits = library.Model(entry, outputs, name=model.name)
        else:
            return None
        z = np.asarray(logits(sample, training=False), np.float64).reshape(len(sample), -1)
        p = np.asarray(model(sample, training=False), np.float64).reshape(len(sample), -1)
    except Exception:  # noqa: BLE001 - a graph this cannot cut: the model converts with its softmax
        return None
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return logits if np.allclose(e / e.sum(axis=1, keepdims=True), p, atol=1e-5) else None
