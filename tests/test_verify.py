"""`edgelite verify`: the check set each artifact carries, measured on this machine; and the rescue."""
import json

import numpy as np
import pytest

from edgelite import Classifier
from edgelite.checkset import pack, unpack, verify
from edgelite.convert import convert

from conftest import run_cli


def test_every_artifact_verifies_here_as_at_export(converted):
    for a in converted.artifacts:
        clf = Classifier(a.path)
        report = verify(clf)
        assert report["images"] == 24 and report["pixels_identical"]
        # same file, same machine: the same outputs as when it was exported
        assert report["same_top1_as_export"] == 1.0
        assert report["max_abs_diff_from_export"] < 1e-5
        assert report["passed"] == (report["agreement"] >= clf.metadata["parity"]["min_agreement"])
        assert report["agreement"] >= report["top1_agreement"]
        assert report["kernels"]["backend"] == clf.metadata["check_set"]["kernels"]["backend"]


def test_verify_cli_exit_codes_and_json(artifact):
    done = run_cli("verify", artifact["tflite-int8"], artifact["onnx-int8"], "--json")
    assert done.returncode == 0, done.stderr
    reports = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["passed"] for r in reports] == [True, True]
    done = run_cli("verify", artifact["onnx-fp32"], "--min-agreement", "1.01")  # a gate nothing can reach
    assert done.returncode == 1 and "BELOW THE GATE" in done.stdout


def test_verify_catches_outputs_that_moved(artifact, tmp_path):
    """An artifact whose outputs differ from the Keras reference it carries fails verify."""
    from edgelite.convert.onnx_export import embed_metadata

    clf = Classifier(artifact["onnx-fp32"])
    blobs, reference, exported = unpack(clf.backend.check_set())
    moved = tmp_path / "moved.onnx"
    moved.write_bytes(artifact["onnx-fp32"].read_bytes())
    shifted = np.roll(reference, 1, axis=1)  # every reference top-1 moves to another class
    embed_metadata(moved, clf.metadata, {"edgelite_check": pack(blobs, shifted, exported)})
    report = verify(Classifier(moved))
    assert report["top1_agreement"] < 0.2 and not report["passed"]
    assert report["max_abs_diff"] > 0.1
    done = run_cli("verify", moved)
    assert done.returncode == 1 and "Traceback" not in done.stderr


def test_verify_counts_a_flipped_near_tie_as_agreeing_by_the_recorded_margin(artifact, tmp_path, monkeypatch):
    """Keras's reference made to prefer another class by 0.03 on every image: no top-1 agrees, yet each
    is a near-tie, which the gate counts as agreement under the export's near_tie (0.05) and not under 0.
    (Moving the runner-up to the top moves the reference's distribution far from the artifact's: the
    total-variation bar, tested in test_convert.py, is lifted here to test the near-tie rule alone.)"""
    from edgelite.convert.onnx_export import embed_metadata

    monkeypatch.setattr("edgelite.parity.MAX_TOTAL_VARIATION", 1.0)

    clf = Classifier(artifact["onnx-fp32"])
    blobs, reference, exported = unpack(clf.backend.check_set())
    rows = np.arange(len(reference))
    tied = reference.copy()
    runner_up = np.argsort(-reference, axis=1)[:, 1]
    tied[rows, runner_up] = reference.max(axis=1) + 0.03
    for near_tie, passes in ((0.05, True), (0.0, False)):
        moved = tmp_path / f"tied{near_tie}.onnx"
        moved.write_bytes(artifact["onnx-fp32"].read_bytes())
        meta = {**clf.metadata, "parity": {**clf.metadata["parity"], "near_tie": near_tie}}
        embed_metadata(moved, meta, {"edgelite_check": pack(blobs, tied, exported)})
        report = verify(Classifier(moved))
        assert report["top1_agreement"] == 0.0 and report["near_ties_flipped"] == (len(rows) if passes else 0)
        assert report["passed"] == passes


def test_a_model_without_check_set_is_one_clear_error(tmp_path):
    done = run_cli("verify", tmp_path / "missing.tflite")
    assert done.returncode == 2 and done.stderr.count("\n") == 1


def test_logit_model_parity_compares_probabilities(tmp_path, trained):
    """A model that ends in logits: parity compares softmax(Keras) with the artifact's probabilities."""
    import keras

    model = keras.saving.load_model(trained.model_path)
    logits = keras.Model(model.inputs, model.layers[-1].output if model.layers[-1].activation is None
                         else _linear_head(model))
    path = tmp_path / "logits.keras"
    logits.save(path)
    (tmp_path / "logits.keras.json").write_text(trained.model_path.with_name("model.keras.json").read_text())
    check = [p for p, _ in trained.val[:40]]
    result = convert(path, tmp_path / "out", [], check, formats=["tflite-fp32"], verbose=False)
    a = result.artifacts[0]
    assert Classifier(a.path).metadata["outputs"] == "logits"
    assert a.parity["top1_agreement"] == 1.0 and a.parity["max_abs_diff"] < 1e-4


def _linear_head(model):
    """The model's last Dense layer applied without its softmax."""
    import keras

    last = model.layers[-1]
    head = keras.layers.Dense(last.units, activation=None)
    out = head(model.layers[-2].output)
    head.set_weights(last.get_weights())
    return out


def test_int8_below_its_gate_is_rescued_with_a_report(rescued):
    """A gate the plain int8 export cannot reach: the converter writes the per-layer report, tries
    float fallbacks of the worst layers, and says what it kept in float."""
    a = rescued
    assert a.error is None and not a.passed  # 101 % cannot be reached: still below, still written
    recipe = Classifier(a.path).metadata["quantization"]
    rescue = recipe["rescue"]
    assert rescue["tries"] and not rescue["passed"]
    report = a.path.parent / rescue["report"]
    layers = json.loads(report.read_text())
    assert len(layers) >= 3 and all(np.isfinite(row["rmse_scale"]) for row in layers)
    assert report.with_suffix(".png").is_file()
    # no try passed: the float model's own noise floor on the check images, for scale
    floor = rescue["noise_floor"]
    assert floor["level"] == 0.5 and floor["images"] == a.parity["images"] and floor["seeds"] == 3
    assert 0 <= floor["strict_min"] <= floor["strict_median"] <= floor["strict_max"] <= 1
    assert floor["gate_agreement_median"] >= floor["strict_median"]
    done = run_cli("inspect", a.path)
    assert done.returncode == 0 and "rescue:" in done.stdout and "rmse_scale" in done.stdout
    assert "noise floor on the check images: +-0.5 px: " in done.stdout


@pytest.mark.parametrize("fmt", ["onnx-int8", "tflite-int8"])
def test_a_rescue_that_passes_keeps_the_file_it_measured(fmt, trained, tmp_path, first_measure_fails):
    """The plain export's measurement is made to fail (on every CPU alike), so the rescue runs: its first
    try that passes (another calibration for ONNX, the worst layer in float for TFLite) is the file that
    ships, and what was measured is what was written."""
    calls = first_measure_fails
    calibration = [p for p, _ in trained.train][:60]
    check = [p for p, _ in trained.val][:60]
    result = convert(trained.model_path, tmp_path / "out", calibration, check, formats=[fmt], verbose=False)
    a = result.artifacts[0]
    assert a.error is None and a.passed and len(calls) >= 3  # the plain file, a rescue try, the file kept
    clf = Classifier(a.path)
    rescue = clf.metadata["quantization"]["rescue"]
    assert rescue["passed"] and rescue["from_agreement"] == 0.0
    assert rescue["tries"][-1]["agreement"] >= 0.95 and (rescue["excluded"] or rescue.get("method"))
    assert (a.path.parent / rescue["report"]).is_file()
    assert a.parity["agreement"] == rescue["tries"][-1]["agreement"]
    scores = np.concatenate([clf.scores(clf.prepare(p)) for p in check])
    assert np.abs(scores - a.scores).max() < 1e-6  # what was measured is what was written
