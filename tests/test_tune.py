"""`edgelite bundle` of many artifacts and `edgelite tune`: verified here, raced, the choice recorded and used.

Nothing here asserts which artifact is fastest (that is the CPU's business): the choice is checked against
the table tune itself measured, which holds on every machine.
"""
import json
import shutil

import numpy as np
import pytest

from edgelite import Classifier
from edgelite.checkset import cpu_kernels, cpu_name, pack, unpack
from edgelite.tune import choose

from conftest import run_cli


def _copy_with(source, target, change=None, shift=False):
    """An artifact copied with its recorded metadata changed, or its check set's Keras reference moved so
    that it fails verify on every machine."""
    from edgelite.convert.onnx_export import embed_metadata

    clf = Classifier(source)
    shutil.copyfile(source, target)
    blobs, reference, exported = unpack(clf.backend.check_set())
    reference = np.roll(reference, 1, axis=1) if shift else reference
    meta = {**clf.metadata, "parity": {**clf.metadata["parity"], **(change or {})}}
    embed_metadata(target, meta, {"edgelite_check": pack(blobs, reference, exported)})
    return target


@pytest.fixture(scope="module")
def sources(converted, tmp_path_factory):
    """The convert output plus an artifact below its gate at export and one that fails verify here."""
    folder = tmp_path_factory.mktemp("sources")
    for a in converted.artifacts:
        shutil.copyfile(a.path, folder / a.path.name)
        shutil.copyfile(f"{a.path}.json", folder / f"{a.path.name}.json")
    onnx_fp32 = next(a.path for a in converted.artifacts if a.format == "onnx-fp32")
    _copy_with(onnx_fp32, folder / "failed_at_export.onnx", {"agreement": 0.5})
    _copy_with(onnx_fp32, folder / "fails_here.onnx", shift=True)
    return folder


@pytest.fixture(scope="module")
def tuned(sources, tmp_path_factory):
    """The bundle, tuned once (short race): its folder and tune's own stdout."""
    out = tmp_path_factory.mktemp("bundle") / "b"
    done = run_cli("bundle", sources, "--out", out, "--no-wheel")
    assert done.returncode == 0, done.stderr
    tuned = run_cli("tune", out, "--runs", "4")
    assert tuned.returncode == 0, tuned.stderr
    return out, tuned


def _record(bundle):
    return json.loads((bundle / "tune.json").read_text())


def test_bundle_holds_every_artifact_that_passed_its_gate(converted, sources, tuned):
    bundle, _ = tuned
    manifest = json.loads((bundle / "bundle.json").read_text())
    passed = {a.path.name for a in converted.artifacts if a.passed} | {"fails_here.onnx"}
    assert {e["file"] for e in manifest["artifacts"]} == passed
    assert [e["artifact"] for e in manifest["excluded"]] == [str(sources / "failed_at_export.onnx")]
    assert "below its gate at export" in manifest["excluded"][0]["reason"]
    assert not (bundle / "failed_at_export.onnx").exists()
    for entry in manifest["artifacts"]:
        assert (bundle / entry["file"]).stat().st_size == entry["bytes"]
        assert (bundle / f"{entry['file']}.json").is_file() or entry["file"] == "fails_here.onnx"
    requirements = (bundle / "requirements.txt").read_text()
    assert "ai-edge-litert==" in requirements and "onnxruntime==" in requirements  # every backend needed
    assert "edgelite tune ." in (bundle / "README.md").read_text()


def test_tune_verifies_times_and_records_the_fastest_of_its_own_table(tuned):
    bundle, done = tuned
    record = _record(bundle)
    assert record["machine"]["cpu"] == cpu_name() and record["machine"]["flags"] == cpu_kernels()["flags"]
    timed = [r for r in record["table"] if r.get("ms") is not None]
    chosen = [r for r in record["table"] if r["status"] == "chosen"]
    assert len(chosen) == 1 and chosen[0]["ms"] == min(r["ms"] for r in timed)
    assert record["choice"]["artifact"] == chosen[0]["artifact"] and record["choice"]["threads"] >= 1
    failed = [r for r in record["table"] if r["artifact"] == "fails_here.onnx"]
    assert failed and all(r["status"] == "excluded" and "below its gate here" in r["note"] for r in failed)
    assert {r["threads"] for r in timed} == set(record["settings"]["threads"])
    assert {json.dumps(r["options"]) for r in timed if r["backend"] == "litert"} >= {"{}", '{"xnnpack": false}'}
    assert "fails_here.onnx" in done.stdout and "chosen (fastest)" in done.stdout
    assert (bundle / "tune.png").is_file()
    clf = Classifier(bundle / record["choice"]["artifact"], threads=record["choice"]["threads"],
                     options=record["choice"]["options"])
    from edgelite.checkset import verify

    assert verify(clf)["passed"]


def test_prefer_and_json_reuse_the_recorded_table(tuned):
    bundle, _ = tuned
    before = _record(bundle)["table"]
    done = run_cli("tune", bundle, "--prefer", "smallest", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    choice = document["choice"]
    assert {"artifact", "backend", "threads", "options"} <= set(choice)
    timed = [r for r in document["table"] if r.get("ms") is not None]
    smallest = min(r["bytes"] for r in timed)
    assert (bundle / choice["artifact"]).stat().st_size == smallest
    assert [r.get("ms") for r in document["table"]] == [r.get("ms") for r in before]  # not measured again
    accurate = json.loads(run_cli("tune", bundle, "--prefer", "accurate", "--json").stdout)["choice"]
    assert accurate["agreement"] == max(r["agreement"] for r in timed)
    assert run_cli("tune", bundle).returncode == 0  # back to fastest for the tests that follow


def test_a_budget_nobody_meets_is_one_line_and_exit_2(tuned):
    bundle, _ = tuned
    done = run_cli("tune", bundle, "--budget-ms", "0.00001")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "no artifact meets the 1e-05 ms budget" in done.stderr and "fastest:" in done.stderr


def test_choose_by_policy_and_budget():
    rows = [{"artifact": "a", "threads": 1, "bytes": 30, "agreement": 0.99, "ms": 5.0},
            {"artifact": "b", "threads": 2, "bytes": 10, "agreement": 0.97, "ms": 9.0},
            {"artifact": "c", "threads": 1, "bytes": 20, "agreement": 1.0, "ms": 12.0},
            {"artifact": "d", "threads": 1, "bytes": 5, "agreement": 1.0, "ms": None}]  # not timed: never chosen
    assert choose(rows)["artifact"] == "a"
    assert choose(rows, "smallest")["artifact"] == "b"
    assert choose(rows, "accurate")["artifact"] == "c"
    assert choose(rows, "accurate", budget_ms=10)["artifact"] == "a"


def test_predict_serve_and_bench_on_the_bundle_use_the_choice(tuned, trained, monkeypatch):
    bundle, _ = tuned
    choice = _record(bundle)["choice"]
    image = trained.val[0][0]
    on_bundle = run_cli("predict", bundle, image, "--json", "--top-k", "3")
    on_file = run_cli("predict", bundle / choice["artifact"], image, "--json", "--top-k", "3",
                      "--threads", choice["threads"])
    assert on_bundle.returncode == 0, on_bundle.stderr
    assert json.loads(on_bundle.stdout)["predictions"] == json.loads(on_file.stdout)["predictions"]
    assert "tuning" not in on_bundle.stderr  # recorded on this machine: used as it is
    from edgelite import serve

    served = {}
    monkeypatch.setattr(serve, "serve", lambda classifier, **kwargs: served.setdefault("clf", classifier) and 0)
    assert run_cli("serve", bundle, "--port", "0").returncode == 0
    assert served["clf"].path == bundle / choice["artifact"] and served["clf"].options == choice["options"]
    benched = run_cli("bench", bundle, "--runs", "3", "--warmup", "1")
    assert benched.returncode == 0, benched.stderr
    chosen = next(r for r in _record(bundle)["table"] if r["status"] == "chosen")
    assert chosen["format"] in benched.stdout and f"{choice['threads']} threads" in benched.stdout


@pytest.mark.parametrize("edit, why", [
    (lambda r: r["machine"].update(cpu="Another CPU", flags=["asimd"]), "recorded on Another CPU [asimd]"),
    (lambda r: r["machine"]["packages"].update(numpy="0.1"), "packages changed (numpy 0.1 -> "),
    (None, "no choice recorded"),
])
def test_a_choice_from_another_machine_is_tuned_again_with_a_line_saying_why(tuned, tmp_path, trained, edit, why):
    bundle = tmp_path / "copy"
    shutil.copytree(tuned[0], bundle)
    record = _record(bundle)
    if edit is None:
        (bundle / "tune.json").unlink()
    else:
        edit(record)
        (bundle / "tune.json").write_text(json.dumps(record))
    done = run_cli("predict", bundle, trained.val[0][0], "--json")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "tuning" in line]
    assert len(lines) == 1 and why in lines[0], done.stderr
    again = _record(bundle)
    assert again["machine"]["cpu"] == cpu_name() and again["date"] != (record.get("date") if edit else None)
    assert "tuning" not in run_cli("predict", bundle, trained.val[0][0]).stderr  # recorded now


def test_tune_on_a_folder_that_is_no_bundle_is_one_line(tmp_path):
    done = run_cli("tune", tmp_path)
    assert done.returncode == 2 and "not a bundle" in done.stderr and done.stderr.count("\n") == 1


def test_race_runs_rounds_over_every_candidate_and_drops_the_named_ones():
    from edgelite.timing import race

    calls = []
    runs = {key: (lambda key=key: calls.append(key)) for key in "abc"}
    seen = {}
    rounds = race(runs, rounds=6, calls=2, warmup=1, drop_after=2,
                  drop=lambda so_far: seen.update({k: len(v) for k, v in so_far.items()}) or {"c"})
    assert {k: len(v) for k, v in rounds.items()} == {"a": 6, "b": 6, "c": 2}
    assert seen == {"a": 2, "b": 2, "c": 2}
    assert calls[3:9] == ["a", "a", "b", "b", "c", "c"]  # after the warm-up: round-robin, not one after another
