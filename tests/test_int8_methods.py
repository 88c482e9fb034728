"""The int8 methods convert can be asked for (convert/int8_methods.py) and the activation ranges of tflite-mse."""
from __future__ import annotations

import numpy as np
import pytest

from edgelite.convert.int8_methods import DEFAULT, METHODS, int8_method
from edgelite.convert.tflite_ranges import best_range
from edgelite.errors import EdgeliteError


def test_an_unknown_int8_method_is_one_clear_error():
    with pytest.raises(EdgeliteError, match="unknown int8 method 'nope'"):
        int8_method("nope")
    assert int8_method(None) is METHODS[DEFAULT]


def test_convert_offers_the_default_and_minmax_only():
    """The other methods are int8_agreement's candidates, taken from Python, not a user's choice."""
    from edgelite.convert.int8_methods import OFFERED, offered_method

    assert DEFAULT in OFFERED and "minmax" in OFFERED and offered_method(None) is None
    with pytest.raises(EdgeliteError, match="unknown int8 method 'onnx-entropy'"):
        offered_method("onnx-entropy")
    assert int8_method("onnx-entropy").onnx_calibration == "entropy"


def squared_error(values: np.ndarray, low: float, high: float) -> float:
    scale = (high - low) / 255
    zero = np.round(-low / scale)
    return float(np.mean(np.square((np.clip(np.round(values / scale) + zero, 0, 255) - zero) * scale - values)))


def test_convert_names_an_unknown_int8_method_in_one_line(digits, tmp_path):
    from conftest import run_cli

    done = run_cli("convert", tmp_path / "model.keras", "--calib", digits, "--out", tmp_path / "out",
                   "--int8-method", "nope")
    assert done.returncode == 2 and "unknown int8 method 'nope'" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def test_a_long_tail_is_clipped_where_that_lowers_the_error():
    values = np.random.default_rng(0).laplace(0, 1, 20000)  # a linear bottleneck's output: most values small
    low, high = best_range(values, values.min(), values.max())
    assert values.min() < low < 0 < high < values.max()
    assert squared_error(values, low, high) < squared_error(values, values.min(), values.max())


def test_values_that_fill_their_range_keep_it():
    values = np.random.default_rng(1).uniform(0, 6, 20000)  # a ReLU6 output that uses all of [0, 6]
    assert best_range(values, 0.0, 6.0) == (0.0, 6.0)
