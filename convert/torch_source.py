"""PyTorch sources: a torch.export program (.pt2), a TorchScript file (.pt) or an nn.Module given from Python.

Each is exported to ONNX with torch.onnx's TorchScript-based exporter (`dynamo=False`: no onnxscript needed),
then taken by the ONNX route (onnx_source.py); the reference every artifact is measured against is torch
itself on the module. torch is an optional extra (`edgelite[torch]`), imported here only."""
from __future__ import annotations

import hashlib
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from edgelite.errors import EdgeliteError, one_line
from edgelite.files import sha256

SUFFIXES = (".pt2", ".pt", ".pth")
OPSET = 17
SAVE_INSTEAD = ("save the model itself: torch.export.save(torch.export.export(model.eval(), (example,)), "
                "'model.pt2'), or torch.jit.save(torch.jit.script(model.eval()), 'model.pt')")


def import_torch(what: str):
    try:
        import torch
    except ImportError:
        raise EdgeliteError(f"{what} needs torch, which is not installed: pip install 'edgelite[torch]'") from None
    return torch


def is_module(model) -> bool:
    """Whether `model` is an nn.Module (without importing torch where nobody has)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def load_torch_file(path: Path, output=None, size: tuple[int, int] | None = None):
    """A .pt2 (torch.export.save) or a TorchScript .pt as a Source; a bare state_dict is one line saying what
    to save instead."""
    torch = import_torch(f"{path.name} (a PyTorch file)")
    if not zipfile.is_zipfile(path):
        raise EdgeliteError(f"{path}: not a PyTorch file (not a zip archive as torch.save, torch.jit.save and "
                            "torch.export.save write)")
    kind, module, shape = _read(torch, path)
    return _from_module(torch, module, path, kind, sha256(path), shape, output, size)


def load_module(module, output=None, size: tuple[int, int] | None = None, example=None):
    """An nn.Module from Python, with an input size (H, W) or an example input [1, 3, H, W]."""
    torch = import_torch("an nn.Module")
    if example is not None:
        shape = tuple(example.shape)
    elif size is not None:
        shape = (1, 3, *size)
    else:
        raise EdgeliteError(f"{type(module).__name__}: an nn.Module needs an input size (size=(H, W)) or an "
                            "example input")
    digest = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    module.eval()
    return _from_module(torch, module, Path(f"{type(module).__name__}.module"), "nn.Module", digest.hexdigest(),
                        shape, output, None)


def _read(torch, path: Path):
    """(kind, callable module, input shape or None) of a saved file."""
    names = zipfile.ZipFile(path).namelist()
    if any(n.endswith("archive_format") for n in names) or path.suffix.lower() == ".pt2":
        try:
            program = torch.export.load(str(path))
        except Exception as exc:
            raise EdgeliteError(f"{path}: torch.export.load cannot read it ({one_line(exc)})") from None
        module = program.module()
        module.train = lambda mode=True: module  # an ExportedProgram's module refuses train()/eval(): it is eval
        return "torch.export", module, _program_shape(program)
    if any(n.endswith("constants.pkl") for n in names):
        try:
            return "TorchScript", torch.jit.load(str(path), map_location="cpu").eval(), None
        except Exception as exc:
            raise EdgeliteError(f"{path}: torch.jit.load cannot read it ({one_line(exc)})") from None
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EdgeliteError(f"{path}: a pickled Python object, not a model file edgelite can read without running "
                            f"code ({one_line(exc)}); {SAVE_INSTEAD}") from None
    if isinstance(loaded, dict):
        raise EdgeliteError(f"{path}: a bare state_dict (weights without the network); {SAVE_INSTEAD}")
    raise EdgeliteError(f"{path}: holds a {type(loaded).__name__}, not a model; {SAVE_INSTEAD}")


def _program_shape(program) -> tuple | None:
    user = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user and "val" in node.meta:
            return tuple(int(s) if str(s).isdigit() else None for s in node.meta["val"].shape)
    return None


def _from_module(torch, module, path: Path, kind: str, sha256: str, shape, output, size):
    from .onnx_source import load_onnx

    if shape is None or None in tuple(shape)[2:]:
        if size is None:
            raise EdgeliteError(f"{path}: a {kind} file does not say its input size: pass --size H W")
        shape = (1, 3, *size)
    elif size is not None and tuple(size) != tuple(shape[2:]):
        raise EdgeliteError(f"{path}: --size {size[0]} {size[1]} for a model exported at {shape[2]}x{shape[3]}")
    shape = (1, *[int(s) for s in shape[1:]])
    example = torch.zeros(shape)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / f"{path.stem}.onnx"
        try:
            torch.onnx.export(module, (example,), str(onnx_path), dynamo=False, opset_version=OPSET,
                              input_names=["input"], output_names=["output"],
                              training=torch.onnx.TrainingMode.PRESERVE)
        except Exception as exc:
            raise EdgeliteError(f"{path}: torch.onnx.export failed ({one_line(exc, last=True)})") from None
        source = load_onnx(onnx_path, output, None)
    # the reference is torch; onnxruntime on its export (its session made while the file exists) is the other
    # float32 run of it that check_rebuild's floor compares with
    source.run, source.other, source.path = _runner(torch, module), source.run, path
    source.info.update(producer=f"torch {torch.__version__.split('+')[0]} ({kind})", exported_by="torch.onnx "
                       f"(TorchScript exporter, opset {OPSET})", sha256=sha256)
    return source


def _runner(torch, module):
    """float NHWC images -> the module's outputs (torch on the module, one image at a time: a program exported
    at batch 1 guards its batch)."""

    def run(images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2), np.float32))
        with torch.no_grad():
            out = [module(x[i:i + 1]) for i in range(len(x))]
        return np.concatenate([o.detach().cpu().numpy().reshape(1, -1) for o in out])

    return run

