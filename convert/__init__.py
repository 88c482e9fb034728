"""edgelite.convert: the workstation side (TensorFlow, tf2onnx, onnxruntime quantization)."""
from .pipeline import FORMATS, Artifact, Conversion, convert

__all__ = ["convert", "FORMATS", "Artifact", "Conversion"]
