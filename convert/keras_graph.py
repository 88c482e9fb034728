"""A Keras model's layer graph read the same way for Keras 3 (`keras`) and legacy Keras 2 (`tf_keras`):
nodes, their operations, inputs, outputs and call arguments, and what a layer is."""
from __future__ import annotations


def bases(obj) -> set[str]:
    return {c.__name__ for c in type(obj).__mro__}


def attempt(get, default):
    try:
        return get()
    except (AttributeError, ValueError, TypeError):
        return default


def numpy(value):
    if hasattr(value, "numpy"):  # tf tensors and variables, Keras 3 variables
        return value.numpy()
    return value


def library(layer) -> str:
    return type(layer).__module__.split(".")[0]


def is_symbolic(value) -> bool:
    return getattr(value, "_keras_history", None) is not None


def key(tensor):
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return ("object", id(tensor))
    return (id(history[0]), history[1], history[2])


def flat(value) -> list:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in flat(item)]
    return [] if value is None else [value]


def node_operation(node):
    operation = getattr(node, "operation", None)  # Keras 3
    return operation if operation is not None else node.layer  # Keras 2


def node_inputs(node) -> list:
    if hasattr(node, "keras_inputs"):  # Keras 2 (its `input_tensors` is the first call argument)
        return list(node.keras_inputs)
    return list(getattr(node, "input_tensors", None) or [])


def node_outputs(node) -> list:
    return flat(getattr(node, "outputs", None))


def node_arguments(node) -> tuple[tuple, dict]:
    arguments = getattr(node, "arguments", None)  # Keras 3
    if arguments is not None:
        return tuple(arguments.args), dict(arguments.kwargs)
    return tuple(getattr(node, "call_args", ()) or ()), dict(getattr(node, "call_kwargs", {}) or {})
