"""edgelite: Keras image classifiers on small devices. This package is the device side:
numpy, Pillow and one inference backend; never TensorFlow."""
from .classifier import Classifier, Prediction, Result, read_labels
from .errors import EdgeliteError
from .preprocess import PRESETS, PreprocessSpec, load_image, to_input

__version__ = "0.1.0"
__all__ = ["Classifier", "Prediction", "Result", "EdgeliteError", "PreprocessSpec", "PRESETS",
           "load_image", "to_input", "read_labels", "__version__"]
