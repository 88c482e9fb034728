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
    assert len(chosen) == 1 and chosen[0]["slow_ms"] == min(r["slow_ms"] for r in timed)
    assert all(r["fast_ms"] <= r["ms"] <= r["slow_ms"] and r["turns"] >= 1 for r in timed)
    taken = record["settings"]
    assert record["schema"] == 2 and taken["method"]["isolation"].startswith("one setting loaded at a time")
    assert taken["turns"] >= 4 * len(timed) // 2 and taken["seconds"] > 0
    if record["choice"]["runner_up"] is not None:
        assert record["choice"]["runner_up"]["slow_ms"] >= record["choice"]["slow_ms"]
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
    rows = [{"artifact": "a", "threads": 1, "bytes": 30, "agreement": 0.99, "slow_ms": 5.0},
            {"artifact": "b", "threads": 2, "bytes": 10, "agreement": 0.97, "slow_ms": 9.0},
            {"artifact": "c", "threads": 1, "bytes": 20, "agreement": 1.0, "slow_ms": 12.0},
            {"artifact": "d", "threads": 1, "bytes": 5, "agreement": 1.0, "slow_ms": None}]  # not timed: never chosen
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


class FakeClock:
    """Nanoseconds that pass only when a fake setting works: the tests below do not depend on this machine."""

    def __init__(self):
        self.now = 0

    def __call__(self) -> int:
        return self.now


def fake_settings(clock, ms: dict, state: dict) -> dict:
    """Openers of fake settings whose calls take `ms[name]`, plus what a real neighbour costs: 5 ms more on each
    of the first 3 calls after another setting ran (its caches cold, its pool threads parked), and 3 ms more
    for each other setting loaded at the time (their pool threads spinning)."""
    import weakref

    def opener(name):
        def open_setting():
            state["loaded"].add(name)

            def run():
                state["streak"] = state["streak"] + 1 if state["last"] == name else 1
                state["last"] = name
                cost = ms[name](state) if callable(ms[name]) else ms[name]
                cost += 5.0 * (state["streak"] <= 3 and len(state["ran"] - {name}) > 0)
                cost += 3.0 * len(state["loaded"] - {name})
                state["ran"].add(name)
                clock.now += int(cost * 1e6)

            weakref.finalize(run, state["loaded"].discard, name)  # released with its call, as a Classifier is
            return run
        return open_setting

    return {name: opener(name) for name in ms}


def _state():
    return {"last": None, "streak": 0, "loaded": set(), "ran": set()}


def test_each_setting_is_timed_as_it_runs_alone_whatever_ran_before_it():
    from edgelite.timing import measure, summary

    clock, state = FakeClock(), _state()
    per_turn = measure(fake_settings(clock, {"a": 2.0, "b": 3.0, "c": 4.0}, state), rounds=4, calls=5, clock=clock)
    assert {key: summary(turns)["ms"] for key, turns in per_turn.items()} == {"a": 2.0, "b": 3.0, "c": 4.0}
    assert all(len(turns) == 4 and all(len(t) == 5 for t in turns) for turns in per_turn.values())
    assert state["loaded"] == set()  # every setting released after its turn

    # the way tune timed before (every setting loaded, round-robin, 3 calls a round, no warm-up per round) reads
    # each one slower than it runs alone: the test's fakes do what real neighbours did
    from edgelite.timing import time_calls

    clock, state = FakeClock(), _state()
    loaded = {key: open_setting() for key, open_setting in fake_settings(clock, {"a": 2.0, "b": 3.0}, state).items()}
    raced = {key: [] for key in loaded}
    for _ in range(4):
        for key, run in loaded.items():
            raced[key].extend(time_calls(run, 3, clock))
    assert all(min(times) > alone for times, alone in zip(raced.values(), (2.0, 3.0)))


def test_the_choice_prefers_a_steady_setting_to_one_fast_only_at_some_moments():
    from edgelite.timing import measure, summary

    def by_turns(fast, slow):  # fast or slow by turns, as a second core that comes and goes
        turns = {"n": 0}

        def cost(state):
            if state["streak"] == 1:
                turns["n"] += 1
            return fast if turns["n"] % 2 else slow
        return cost

    for bursty_slow, winner in ((3.8, "steady"), (2.9, "bursty")):
        clock = FakeClock()
        per_turn = measure(fake_settings(clock, {"bursty": by_turns(1.8, bursty_slow), "steady": 3.0}, _state()),
                           rounds=8, calls=5, clock=clock)
        figures = {key: summary(turns) for key, turns in per_turn.items()}
        rows = [{"artifact": key, "backend": "fake", "threads": 1, "options": {}, "bytes": 1, "agreement": 1.0, **f}
                for key, f in figures.items()]
        assert figures["bursty"]["ms"] < figures["steady"]["ms"]  # on the median alone the bursty one would win
        assert choose(rows)["artifact"] == winner
    from edgelite.tune import choice_of

    pick = next(r for r in rows if r["artifact"] == "bursty")
    assert choice_of(rows, pick)["within_noise"] is False  # 2.9 at worst against 3.0 every time: a sure pick
    assert choice_of(rows, next(r for r in rows if r is not pick))["within_noise"] is True


def test_rounds_alternate_the_order_and_drop_the_named_settings():
    from edgelite.timing import in_rounds

    seen, dropped_at = [], {}
    turns = {key: (lambda calls, key=key: seen.append(key) or [1.0] * calls) for key in "abc"}
    rounds = in_rounds(turns, rounds=6, calls=2, drop_after=4,
                       drop=lambda so_far: dropped_at.update({k: len(v) for k, v in so_far.items()}) or {"c"})
    assert {k: len(v) for k, v in rounds.items()} == {"a": 6, "b": 6, "c": 4}
    assert dropped_at == {"a": 4, "b": 4, "c": 4}
    first_four = [seen[i:i + 3] for i in range(0, 12, 3)]
    assert all(sorted(r) == ["a", "b", "c"] for r in first_four)  # one turn each per round
    assert {r[0] for r in first_four} == {"a", "c"} and len({tuple(r) for r in first_four}) == 4
    assert {r[-1] for r in first_four} >= {"a", "c"}  # no setting always first, none always after the same one
    budget = in_rounds(turns, rounds=8, calls=1, until=lambda done: done >= 3)  # a time budget spent after 3
    assert {k: len(v) for k, v in budget.items()} == {"a": 3, "b": 3, "c": 3}


def test_a_worker_times_a_setting_in_a_process_of_its_own(artifact, tmp_path):
    from edgelite.errors import EdgeliteError
    from edgelite.timing import Worker, start_workers

    from conftest import EMULATOR

    workers = start_workers({"int8": (artifact["tflite-int8"], 1, {}), "onnx": (artifact["onnx-fp32"], 2, {})},
                            prefix=EMULATOR)
    try:
        for worker in workers.values():
            times = worker(4)
            assert len(times) == 4 and all(t > 0 for t in times)
    finally:
        for worker in workers.values():
            worker.close()
    assert all(w.process.returncode == 0 for w in workers.values())
    bad = tmp_path / "not_a_model.tflite"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(EdgeliteError, match="not_a_model.tflite 1t in a process of its own failed: .*not_a_model"):
        Worker(bad, 1, prefix=EMULATOR).wait()


def test_tune_check_measures_the_recorded_settings_apart(tuned):
    from edgelite.benchmarks.tune_check import check

    bundle, _ = tuned
    record = _record(bundle)
    result = check(bundle, rounds=2, calls=3)
    timed = [r for r in record["table"] if r.get("turns", 0) >= record["settings"]["rounds_run"]]
    assert len(result["table"]) == len(timed) and result["pick_passes_verify"]
    assert result["recorded_ms"] == record["choice"]["ms"] and result["ratio_median"] >= 1.0
    slowest = [row["slowest_ms"] for row in result["table"]]
    assert slowest == sorted(slowest) and result["steadiest_slowest_ms"] == slowest[0]
