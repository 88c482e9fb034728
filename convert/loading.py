"""Loading a trained Keras model from any of the files people have, with one-line errors."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

from edgelite.errors import EdgeliteError, one_line
from edgelite.files import sha256
from edgelite.quiet import quiet


def import_tensorflow():
    """Import TensorFlow (and let it probe for GPUs) without its start-up log lines."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet():
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")
    return tf


APPLICATIONS = {"mobilenetv2": "MobileNetV2"}


def source_of(path: str | Path, weights: str | None = None) -> dict:
    """What the artifacts were made from: file name and sha256 (of the weights for a named model)."""
    path = Path(path)
    if path.exists():
        return {"file": path.name, "sha256": sha256(path)}
    source = {"file": str(path), "application": APPLICATIONS[str(path).lower()], "weights": weights}
    if weights and Path(weights).exists():
        source["sha256"] = sha256(weights)
    return source


def load_source(model, output: int | str | None = None, size: tuple[int, int] | None = None, example=None):
    """A model from outside Keras as a Source (onnx_source.py), by its file type: ONNX rebuilt channels-last and
    run by onnxruntime as the reference; a .pt2 / TorchScript .pt, or an nn.Module given from Python, exported
    to ONNX and run by torch as the reference (torch_source.py). None for what `load_model` takes."""
    from .torch_source import SUFFIXES as TORCH, is_module, load_module, load_torch_file

    if is_module(model):
        return load_module(model, output, size, example)
    path = Path(model)
    suffix = path.suffix.lower()
    if suffix not in (".onnx", *TORCH) or path.is_dir():
        return None
    if not path.exists():
        raise EdgeliteError(f"no such model: {path}")
    if suffix == ".onnx":
        from .onnx_source import load_onnx

        return load_onnx(path, output, size)
    return load_torch_file(path, output, size)


def load_model(path: str | Path, unsafe: bool = False, weights: str | None = None):
    """A Keras model from .keras, .h5 (Keras 3 or legacy Keras 2), a SavedModel folder,
    or an application by name ("mobilenetv2") with weights "imagenet" or a file."""
    import keras

    path = Path(path)
    if not path.exists() and str(path).lower() in APPLICATIONS:
        return _load_application(str(path).lower(), weights)
    if weights:
        raise EdgeliteError("--weights goes with a model name (mobilenetv2), not a model file")
    if not path.exists():
        raise EdgeliteError(f"no such model: {path}")
    suffix = path.suffix.lower()
    try:
        if path.is_dir():
            if not (path / "saved_model.pb").exists():
                raise EdgeliteError(f"{path}: a folder but not a SavedModel (no saved_model.pb)")
            return _load_saved_model(path)
        if suffix == ".keras":
            if not zipfile.is_zipfile(path):
                raise EdgeliteError(f"{path}: not a Keras model file (not a .keras archive)")
            return keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
        if suffix in (".h5", ".hdf5"):
            return _load_h5(path, unsafe)
    except EdgeliteError:
        raise
    except Exception as exc:
        if "safe_mode" in str(exc):
            raise EdgeliteError(f"{path}: the model holds Python code (e.g. a Lambda layer), which safe mode "
                                "refuses; if you trust its source, pass --unsafe") from None
        raise EdgeliteError(f"{path}: cannot load as a Keras model ({one_line(exc)})") from None
    raise EdgeliteError(f"{path}: unknown model type {suffix!r} (expected .keras, .h5, a SavedModel folder, "
                        ".onnx, .pt2 or a TorchScript .pt)")


def _load_application(name: str, weights: str | None):
    import keras

    builder = getattr(keras.applications, APPLICATIONS[name])
    weights = weights or "imagenet"
    if weights != "imagenet" and not Path(weights).is_file():
        raise EdgeliteError(f"no such weights file: {weights}")
    try:
        return builder(weights=weights)
    except Exception as exc:
        hint = " (no network? pass --weights PATH.h5)" if weights == "imagenet" else ""
        raise EdgeliteError(f"cannot build {APPLICATIONS[name]} with weights {weights}{hint}: {one_line(exc)}") from None


def _load_h5(path: Path, unsafe: bool):
    import h5py
    import keras

    if not h5py.is_hdf5(path):
        raise EdgeliteError(f"{path}: not an HDF5 file")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as keras3_error:
        try:  # a legacy Keras 2 file that Keras 3 refuses: tf_keras (Keras 2) reads it
            import tf_keras
        except ImportError:
            raise EdgeliteError(
                f"{path}: Keras 3 cannot load it ({one_line(keras3_error)}); "
                "for legacy Keras 2 files install tf-keras"
            ) from None
        custom = {}
        try:  # TF-Hub's KerasLayer (a Keras 2 layer around a SavedModel), as its tutorials save it
            import tensorflow_hub

            custom["KerasLayer"] = tensorflow_hub.KerasLayer
        except ImportError:
            pass
        try:
            return tf_keras.models.load_model(path, compile=False, safe_mode=not unsafe, custom_objects=custom)
        except Exception as keras2_error:
            raise EdgeliteError(
                f"{path}: neither Keras 3 ({one_line(keras3_error)}) nor Keras 2 "
                f"({one_line(keras2_error)}) can load it"
            ) from None


def _load_saved_model(path: Path):
    """A SavedModel's serving signature wrapped as a Keras model with a known input."""
    import keras
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures.get("serving_default")
    if signature is None:
        raise EdgeliteError(f"{path}: the SavedModel has no serving_default signature")
    inputs = list(signature.structured_input_signature[1].values())
    if len(inputs) != 1:
        raise EdgeliteError(f"{path}: expected one image input, the signature has {len(inputs)}")
    inp = keras.Input(shape=tuple(inputs[0].shape[1:]), dtype=inputs[0].dtype.name)
    out = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")(inp)
    if isinstance(out, dict):
        if len(out) != 1:
            raise EdgeliteError(f"{path}: expected one output, the signature has {len(out)}")
        out = next(iter(out.values()))
    return keras.Model(inp, out, name=path.name)

