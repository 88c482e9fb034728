"""The noise floor (edgelite.noise): pixel noise in the model's input units, and what it counts."""
import numpy as np

from edgelite.noise import describe, noise_floor, pixel_step


def test_noise_is_measured_in_pixel_levels_of_the_inputs_normalisation():
    """A two-class model that answers by the sign of the first input value; 100 inputs 0.6 pixel level above
    zero (mobilenet normalisation: one level is 1/127.5). Half a level of noise changes none of them; one level
    changes those whose noise fell below -0.6 (a fifth)."""
    def score(x):
        p = 1.0 / (1.0 + np.exp(-1e4 * x[:, 0, 0, 0]))
        return np.stack([1 - p, p], axis=1)

    step = pixel_step([127.5, 127.5, 127.5])
    inputs = [np.full((1, 1, 1, 3), 0.6 / 127.5, np.float32) for _ in range(100)]
    half, one = noise_floor(score, inputs, step, levels=(0.5, 1.0), seeds=3)
    assert half["strict_min"] == half["strict_max"] == 1.0 and half["changed_median"] == 0
    assert 0.65 < one["strict_min"] <= one["strict_median"] <= one["strict_max"] < 0.95
    assert one["changed_median"] == round((1 - one["strict_median"]) * 100) and one["images"] == 100
    assert describe(half) == "+-0.5 px: 100.0% strict (100.0%-100.0%, 3 seeds), 100.0% with near-ties"


def test_pixel_step_follows_the_layout():
    assert pixel_step([58.4, 57.1, 57.4], "NCHW").shape == (3, 1, 1)
    assert np.allclose(pixel_step([2.0, 4.0, 1.0]), [0.5, 0.25, 1.0])
