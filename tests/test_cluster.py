"""edgelite.cluster: predict and evaluate on a Ray instance started once for this module (2 CPUs).

Every readable file's top-k must be what local `predict` gives (Classifier.predict_batch, the same artifact),
every bad file an error row, and bench --ray's figures local bench's."""
from __future__ import annotations

import argparse
import ast
import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, run_cli, shared

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from edgelite import Classifier  # noqa: E402
from edgelite.errors import EdgeliteError  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module: edgelite.cluster uses a driver already connected as it is."""
    if ray.is_initialized():
        ray.shutdown()
    os.environ.setdefault("RAY_worker_niceness", "0")  # Ray's default nice 15 starves the actors on a busy CI box
    # its own instance, also where a Ray runs on this machine already (ray start): 2 CPUs whatever the machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(trained, tmp_path_factory) -> list[Path]:
    """40 of the tiny CNN's validation photos, then three files no decoder can read."""
    bad = tmp_path_factory.mktemp("bad")
    (bad / "text.jpg").write_text("not an image\n")
    good = [Path(p) for p, _ in trained.val][:40]
    Image.open(good[0]).convert("RGB").resize((64, 64)).save(bad / "whole.jpg", quality=90)
    data = (bad / "whole.jpg").read_bytes()
    (bad / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (bad / "whole.jpg").unlink()
    (bad / "empty.png").write_bytes(b"")
    return good + sorted(bad.iterdir())


def local_results(model: Path, photos: list[Path], top_k: int = 5) -> dict[str, object]:
    """path -> the local predictions, or the error line: what `edgelite predict` prints for each file."""
    return {str(r.source): r.error or r.predictions
            for r in Classifier(model).predict_batch([str(p) for p in photos], top_k=top_k)}


def rows_by_path(path: Path) -> dict[str, dict]:
    from edgelite.cluster.output import read_results

    rows = read_results(path).to_pylist()
    assert len({r["path"] for r in rows}) == len(rows), "a path twice"
    return {r["path"]: r for r in rows}


def assert_same_as_local(rows: dict[str, dict], expected: dict[str, object], model: Path) -> None:
    import hashlib

    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    assert set(rows) == set(expected)
    for path, local in expected.items():
        row = rows[path]
        assert row["artifact"] == model.name and row["sha256"] == digest
        if isinstance(local, str):
            assert row["error"] == local and row["indices"] is None, path
            continue
        assert row["error"] is None, row["error"]
        assert row["indices"] == [p.index for p in local], path
        assert row["labels"] == [p.label for p in local], path
        np.testing.assert_allclose(row["scores"], [p.score for p in local], rtol=0, atol=1e-6)


def test_predict_parquet_matches_local_predict(local_ray, artifact, photos, tmp_path):
    from edgelite.cluster import predict_files

    model = artifact["tflite-int8"]
    out = tmp_path / "results.parquet"
    summary = predict_files(model, [str(p) for p in photos], address="local", out=out, actors=2, verbose=False)
    expected = local_results(model, photos)
    rows = rows_by_path(out)
    assert len(rows) == len(photos) == summary["rows"] == summary["done"]
    assert summary["errors"] == 3 and summary["actors"] == 2
    assert_same_as_local(rows, expected, model)
    bad = {Path(p).name: r["error"] for p, r in rows.items() if r["error"]}
    assert sorted(bad) == ["empty.png", "text.jpg", "truncated.jpg"]
    assert all("\n" not in e and "not a readable image" in e for e in bad.values())
    assert not list(tmp_path.glob(".*.part")), "the temporary file is renamed into place"


def test_predict_csv_onnx_one_actor_and_top_k(local_ray, artifact, photos, tmp_path):
    from edgelite.cluster import predict_files

    model = artifact["onnx-fp32"]
    out = tmp_path / "results.csv"
    predict_files(model, [str(p) for p in photos[:12]] + [str(photos[-1])], out=out, top_k=3, actors=1,
                  verbose=False)
    assert_same_as_local(rows_by_path(out), local_results(model, photos[:12] + [photos[-1]], top_k=3), model)


def test_resume_skips_what_is_done_and_refuses_to_overwrite(local_ray, artifact, photos, tmp_path):
    from edgelite.cluster import predict_files

    model = artifact["tflite-int8"]
    out = tmp_path / "results.jsonl"
    first = predict_files(model, [str(p) for p in photos[:10]], out=out, verbose=False)
    assert first["rows"] == 10
    kept = out.read_text().splitlines()
    with pytest.raises(EdgeliteError, match="already exists"):
        predict_files(model, [str(p) for p in photos], out=out, verbose=False)
    with pytest.raises(EdgeliteError, match="another artifact"):
        predict_files(artifact["tflite-fp32"], [str(p) for p in photos], out=out, resume=True, verbose=False)
    second = predict_files(model, [str(p) for p in photos], out=out, resume=True, verbose=False)
    assert (second["skipped"], second["done"], second["rows"]) == (10, len(photos) - 10, len(photos))
    assert out.read_text().splitlines()[:10] == kept, "the rows already there are kept as they were"
    assert_same_as_local(rows_by_path(out), local_results(model, photos), model)
    third = predict_files(model, [str(p) for p in photos], out=out, resume=True, verbose=False)
    assert third["done"] == 0 and third["rows"] == len(photos)
    fresh = predict_files(model, [str(p) for p in photos[:5]], out=out, force=True, verbose=False)
    assert fresh["rows"] == 5 and len(rows_by_path(out)) == 5


def test_interrupted_run_leaves_a_readable_file_and_resume_finishes_it(local_ray, artifact, photos, tmp_path,
                                                                       monkeypatch):
    """Ctrl-C after the first rows came back: those rows are in --out (a whole parquet file), --resume adds
    the rest."""
    from edgelite.cluster import predict as predict_module
    from edgelite.cluster import predict_files

    real = predict_module.classify

    def interrupted(*args, **kwargs):
        for n, table in enumerate(real(*args, **kwargs)):
            if n == 1:
                raise KeyboardInterrupt
            yield table

    model = artifact["tflite-int8"]
    out = tmp_path / "results.parquet"
    monkeypatch.setattr(predict_module, "classify", interrupted)
    with pytest.raises(KeyboardInterrupt):
        predict_files(model, [str(p) for p in photos], out=out, batch_size=8, verbose=False)
    partial = rows_by_path(out)
    assert 0 < len(partial) < len(photos)
    monkeypatch.setattr(predict_module, "classify", real)
    summary = predict_files(model, [str(p) for p in photos], out=out, resume=True, verbose=False)
    assert summary["skipped"] == len(partial)
    assert_same_as_local(rows_by_path(out), local_results(model, photos), model)


def test_evaluate_gives_local_bench_figures(local_ray, artifact, digits):
    """bench --ray's accuracy on a labeled folder (class sub-folders) equals local bench's, and the second
    artifact's agreement with the first is parity.py's measure on local scores."""
    from edgelite.benchmarks.bench import bench
    from edgelite.labeled import labeled_images
    from edgelite.cluster import evaluate
    from edgelite.parity import parity

    models = [artifact["tflite-fp32"], artifact["tflite-int8"]]
    document = evaluate(models, digits, address="local", limit=150, verbose=False)
    local = bench(models, data=digits, runs=2, warmup=1, threads=[1], limit=150, cold_repeat=1, verbose=False)
    assert [r["path"] for r in document["rows"]] == [r["path"] for r in local["rows"]]
    for ours, theirs in zip(document["rows"], local["rows"]):
        assert (ours["top1"], ours["top5"]) == (theirs["top1"], theirs["top5"])
        assert ours["images"] == ours["labeled"] == 150 and ours["errors"] == 0
    first, second = (Classifier(m) for m in models)
    items = labeled_images(digits, first.labels, first.classes)[:150]
    scores = [np.concatenate([c.scores(c.prepare(p)) for p, _ in items]) for c in (first, second)]
    assert document["rows"][1]["agreement"] == parity(*scores)["top1_agreement"]
    assert document["rows"][0]["agreement"] == 1.0


def test_cli_predict_and_bench_with_ray(local_ray, artifact, photos, digits, tmp_path):
    """The commands end to end, in this process (the module's Ray instance): exit 1 for the unreadable files,
    2 for an existing --out, the summary with --json, the table of bench --ray."""
    import json

    model, out = artifact["tflite-int8"], tmp_path / "results.jsonl"
    first = run_cli("predict", model, *photos, "--ray", "--out", out)
    assert first.returncode == 1, first.stderr
    assert "preprocessing: " in first.stderr and "3 unreadable" in first.stderr
    assert len(rows_by_path(out)) == len(photos)
    again = run_cli("predict", model, *photos, "--ray", "--out", out)
    assert again.returncode == 2 and "already exists" in again.stderr
    resumed = run_cli("predict", model, *photos, "--ray", "local", "--out", out, "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["skipped"] == len(photos)
    local = run_cli("predict", model, photos[0], "--out", out)
    assert local.returncode == 2 and "go with --ray" in local.stderr
    bench = run_cli("bench", artifact["tflite-fp32"], model, "--data", digits, "--ray", "--limit", "60")
    assert bench.returncode == 0, bench.stderr
    assert "60 images of" in bench.stdout and bench.stdout.count("| tflite-") == 2


def test_predict_with_ray_runs_a_bundles_tuned_choice(local_ray, artifact, photos, digits, tmp_path):
    """A bundle folder given to predict --ray: the artifact and backend options tune recorded there, on
    single-threaded actors, with the answers local predict gives with that choice; bench --ray measures that
    one artifact too, as local bench does."""
    import json

    bundle = tmp_path / "b"
    made = run_cli("bundle", artifact["tflite-int8"], artifact["onnx-fp32"], "--out", bundle, "--no-wheel")
    assert made.returncode == 0, made.stderr
    tuned = run_cli("tune", bundle, "--runs", "2")
    assert tuned.returncode == 0, tuned.stderr
    choice = json.loads((bundle / "tune.json").read_text())["choice"]
    chosen = bundle / choice["artifact"]
    out = tmp_path / "results.parquet"
    done = run_cli("predict", bundle, *photos[:10], "--ray", "local", "--out", out)
    assert done.returncode == 0, done.stderr
    expected = {str(r.source): r.predictions for r in Classifier(
        chosen, backend=choice["backend"], options=choice["options"]).predict_batch([str(p) for p in photos[:10]])}
    assert_same_as_local(rows_by_path(out), expected, chosen)
    bench = run_cli("bench", bundle, "--data", digits, "--ray", "--limit", "30")
    assert bench.returncode == 0, bench.stderr
    assert bench.stdout.count("| tflite-") + bench.stdout.count("| onnx-") == 1, bench.stdout
    assert f"| {Classifier(chosen).metadata['format']} |" in bench.stdout


def test_shipped_model_carries_backend_options_to_the_worker(artifact):
    """A tuned choice's backend options reach the actor's Classifier (as predict --ray on a bundle ships them)."""
    from edgelite.cluster.shipped_model import ShippedModel

    model, driver = ShippedModel.read(artifact["tflite-int8"], options={"xnnpack": False})
    worker = model.open()  # what each actor does, without Ray
    assert driver.options == worker.options == {"xnnpack": False}
    assert "xnnpack=False" in worker.backend.version and worker.spec == driver.spec


def test_options_and_errors_without_a_cluster(tmp_path, monkeypatch):
    from edgelite.cli.ray_options import add_ray_options
    from edgelite.cluster import predict_files
    from edgelite.cluster.session import MISSING, import_ray

    predict, bench = argparse.ArgumentParser(), argparse.ArgumentParser()
    add_ray_options(predict, evaluation=False)
    add_ray_options(bench, evaluation=True)
    args = predict.parse_args(["--ray", "--out", "r.parquet", "--resume", "--actors", "3"])
    assert (args.ray, args.out, args.resume, args.actors) == ("local", "r.parquet", True, 3)
    assert predict.parse_args([]).ray is None
    assert bench.parse_args(["--ray", "auto"]).ray == "auto"
    with pytest.raises(SystemExit):
        bench.parse_args(["--resume"])
    with pytest.raises(EdgeliteError, match="--out"):
        predict_files("m.tflite", ["x"], out=None)
    with pytest.raises(EdgeliteError, match=r"\.parquet, \.csv or \.jsonl"):
        predict_files("m.tflite", ["x"], out=tmp_path / "r.txt")
    from edgelite.cluster.session import _check_reachable

    with pytest.raises(EdgeliteError, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        _check_reachable("127.0.0.1:1")  # at once, where Ray itself retries for minutes
    with pytest.raises(EdgeliteError, match="HOST:PORT"):
        _check_reachable("nonsense")
    from edgelite.cluster.session import _running_here

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # --ray local joins a Ray the environment names
    assert _running_here(ray)
    from edgelite.cluster.batch_inference import worker_error

    failure = RuntimeError("The actor died because of an error raised in its creation task\nTraceback ...\n"
                           "edgelite.errors.EdgeliteError: m.tflite: not a valid TFLite model (bad)")
    assert worker_error(failure) == "m.tflite: not a valid TFLite model (bad)"  # what a node's failure says
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(EdgeliteError) as caught:
        import_ray()
    assert str(caught.value) == MISSING == "Ray is not installed: pip install 'edgelite[cluster]'"


def test_results_writer_keeps_rows_when_interrupted(tmp_path):
    import pyarrow as pa

    from edgelite.cluster.output import ResultsWriter, read_results
    from edgelite.cluster.workers import ROWS

    rows = [{"path": f"p{i}.jpg", "indices": [i, 1], "labels": ["a", "b"], "scores": [0.75, 0.25], "error": None,
             "artifact": "m.tflite", "sha256": "0" * 64} for i in range(3)]
    rows.append({"path": "bad.jpg", "indices": None, "labels": None, "scores": None, "error": "bad.jpg: not an image",
                 "artifact": "m.tflite", "sha256": "0" * 64})
    for suffix in (".parquet", ".csv", ".jsonl"):
        out = tmp_path / f"results{suffix}"
        with pytest.raises(KeyboardInterrupt), ResultsWriter(out) as writer:
            writer.write(pa.Table.from_pylist(rows, schema=ROWS))
            raise KeyboardInterrupt
        assert read_results(out).to_pylist() == rows, suffix
        before = out.read_bytes()  # a run that fails before any new row (a cluster out of reach) changes nothing
        with pytest.raises(EdgeliteError), ResultsWriter(out, force=True):
            raise EdgeliteError("cannot reach the Ray cluster")
        assert out.read_bytes() == before and not list(tmp_path.glob(".*.part")), suffix


def test_runtime_never_imports_ray_or_the_cluster_side():
    """The device side (runtime/) stays free of Ray: no import of ray or edgelite.cluster anywhere in it."""
    for path in (ROOT / "runtime").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] != "ray" and not name.startswith("edgelite.cluster"), (path, name)


@pytest.mark.slow
def test_shared_photos_on_local_ray_equal_local_predict(local_ray, tmp_path):
    """Google's uint8 MobileNetV2 over the ImageNet sample and big-cats (1,800+ photos) plus unreadable files:
    one row per input, every readable file's top-5 equal to local predict, every bad file an error row."""
    from edgelite.cluster import predict_files

    model = shared("data/third-party-models/mobilenet_v2_1.0_224_quant.tflite")
    folders = [shared("data/imagenet-sample"), shared("data/big-cats")]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notes.jpg").write_text("not a photo")
    tench = (folders[0] / "n01440764_tench.JPEG").read_bytes()
    (bad / "cut.JPEG").write_bytes(tench[:3000])
    shutil.copy(folders[0] / "wnids.txt", bad / "wnids.png")
    out = tmp_path / "results.parquet"
    summary = predict_files(model, [*map(str, folders), str(bad)], out=out, verbose=False)
    from edgelite.files import find_images

    photos = find_images([*folders, bad])
    assert summary["rows"] == len(photos) > 1800 and summary["errors"] == 3
    assert_same_as_local(rows_by_path(out), local_results(model, photos), model)
