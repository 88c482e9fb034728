"""`edgelite tune`: the fastest right artifact of a bundle, chosen on the machine that runs it.

Which format is fastest is a property of the CPU (fp16 beat int8 on an AVX2 EPYC; int8 wins on ARM
boards with dot-product instructions), so it is measured where it runs: every artifact of a bundle is
verified on this machine's kernels (its check set: an artifact below its gate here is left out), then
every (artifact, threads, backend options) that passed is raced round-robin (runtime/timing.py) and
one is chosen by a policy within an optional latency budget. The choice is recorded in BUNDLE/tune.json
with the machine it was made on; `open_choice` reuses it while the CPU and the packages are the same,
and tunes again when they are not. Numpy and the backends only: no TensorFlow.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from .backends import BACKENDS
from .bundle import check_file
from .checkset import cpu_kernels, cpu_name, decode, unpack, verify
from .classifier import Classifier
from .errors import EdgeliteError, one_line
from .files import write_json
from .timing import race

log = logging.getLogger(__name__)
MANIFEST, RECORD, PLOT = "bundle.json", "tune.json", "tune.png"
PREFER = ("fastest", "smallest", "accurate")
PACKAGES = ("edgelite", "numpy", "pillow", "ai-edge-litert", "tflite-runtime", "onnxruntime")
DROP_SLOWER = 2.0  # after a quarter of the rounds, settings whose best round is this much slower than their
# artifact's best setting leave the race
FINAL = 1.25  # settings within this of the fastest race again among themselves


class Choice(NamedTuple):
    path: Path
    backend: str
    threads: int
    options: dict


def machine() -> dict:
    """What a choice depends on: the CPU, its SIMD flags, the cores, Python and the package versions."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            continue
    return {"cpu": cpu_name(), **cpu_kernels(), "cores": os.cpu_count(), "python": platform.python_version(),
            "packages": packages}


def changed(recorded: dict, here: dict) -> str | None:
    """Why a choice made on `recorded` may not hold `here` (None: same CPU, cores and packages)."""
    def cpu(m: dict) -> str:
        return f"{m.get('cpu')} [{' '.join(m.get('flags', []))}], {m.get('cores')} cores"

    if cpu(recorded) != cpu(here) or recorded.get("machine") != here["machine"]:
        return f"recorded on {cpu(recorded)}, this is {cpu(here)}"
    old, new = {**recorded.get("packages", {}), "python": recorded.get("python")}, {**here["packages"],
                                                                                   "python": here["python"]}
    moved = [f"{k} {old.get(k, '-')} -> {new.get(k, '-')}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return f"packages changed ({', '.join(moved)})" if moved else None


def is_bundle(path: str | Path) -> bool:
    """Whether a path is a folder made by `edgelite bundle`."""
    return (Path(path) / MANIFEST).is_file()


def read_manifest(bundle_dir: str | Path) -> dict:
    path = Path(bundle_dir) / MANIFEST
    if not path.is_file():
        raise EdgeliteError(f"{bundle_dir} is not a bundle (no {MANIFEST}): make one with edgelite bundle")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EdgeliteError(f"cannot read {path}: {exc}") from None


def read_record(bundle_dir: str | Path) -> dict | None:
    """The recorded choice (tune.json), or None when there is none or it cannot be read."""
    try:
        return json.loads((Path(bundle_dir) / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def stale(record: dict | None, bundle_dir: Path) -> str | None:
    """Why the recorded choice cannot be used here as it is (None: it can)."""
    if record is None or "choice" not in record:
        return "no choice recorded"
    if record.get("bundle_sha256") != _digest(bundle_dir / MANIFEST):
        return "the bundle changed since"
    if not (bundle_dir / record["choice"]["artifact"]).is_file():
        return f"the chosen {record['choice']['artifact']} is missing"
    return changed(record["machine"], machine())


def open_choice(bundle_dir: str | Path, say: Callable[[str], None] = log.info) -> Choice:
    """The artifact, backend, threads and options to run a bundle with here: the recorded choice, or a new
    one (with one line through `say` saying why) when there is none or the machine or packages differ."""
    bundle_dir = Path(bundle_dir)
    record = read_record(bundle_dir)
    reason = stale(record, bundle_dir)
    if reason:
        read_manifest(bundle_dir)
        policy = (record or {}).get("policy", {})
        say(f"edgelite: tuning {bundle_dir} first ({reason})")
        record = tune(bundle_dir, policy.get("prefer", "fastest"), policy.get("budget_ms"), record=False)
        try:
            save(bundle_dir, record)
        except EdgeliteError as exc:
            say(f"edgelite: the choice is used but not recorded: {exc}")
    choice = record["choice"]
    check_file(bundle_dir, choice["artifact"])  # the file about to run is the one bundled
    return Choice(bundle_dir / choice["artifact"], choice["backend"], choice["threads"], choice["options"])


def tune(bundle_dir: str | Path, prefer: str = "fastest", budget_ms: float | None = None, rounds: int = 20,
         threads: list[int] | None = None, calls: int = 3, record: bool = True,
         say: Callable[[str], None] | None = None) -> dict:
    """Verify every artifact of the bundle here, race every setting of those that pass, choose one.
    Returns the record (also written to tune.json, and a plot to tune.png, with `record`)."""
    if prefer not in PREFER:
        raise EdgeliteError(f"unknown --prefer {prefer!r} (choose from {', '.join(PREFER)})")
    bundle_dir, say = Path(bundle_dir), say or (lambda line: None)
    manifest = read_manifest(bundle_dir)
    sweep = sorted(set(threads or range(1, (os.cpu_count() or 1) + 1)))
    if sweep[0] < 1:
        raise EdgeliteError("--threads must be at least 1")
    rows, runs, classifiers = [], {}, {}
    for entry in manifest["artifacts"]:
        settings = [(t, o) for t in sweep for o in BACKENDS[entry["backend"]].speed_settings(t)]
        checked: dict = {}  # options -> the verify report of one classifier with them
        for t, options in settings:
            row = {"artifact": entry["file"], "format": entry["format"], "bytes": entry["bytes"],
                   "backend": entry["backend"], "threads": t, "options": options}
            rows.append(row)
            key = json.dumps(options, sort_keys=True)
            try:
                clf = Classifier(bundle_dir / entry["file"], threads=t, options=options)
                if key not in checked:
                    say(f"verifying {entry['file']} ({entry['backend']}{_options(options)})")
                    checked[key] = {**_verified(clf), "threads": t}
            except EdgeliteError as exc:
                checked.setdefault(key, {"passed": False, "why": one_line(exc)})
                row.update(status="error", note=one_line(exc))
                continue
            report = checked[key]
            row.update(agreement=report.get("agreement"), gate=report.get("min_agreement"))
            if not report["passed"]:
                row.update(status="excluded", note=report["why"])
                continue
            row.update(status="timed", note=report.get("why"), verified_threads=report["threads"],
                       runs_as=clf.backend.version)
            classifiers[len(rows) - 1], x = clf, sample_input(clf)
            runs[len(rows) - 1] = lambda clf=clf, x=x: clf.scores(x)
    if not runs:
        raise EdgeliteError("no artifact of the bundle passed verify here: " +
                            "; ".join(sorted({f"{r['artifact']} {r['note']}" for r in rows})))
    say(f"racing {len(runs)} settings round-robin, {rounds} rounds of {calls} calls each")
    per_round = race_apart(runs, rows, rounds=rounds, calls=calls, drop_after=max(2, rounds // 4),
                           drop=_slower(rows))
    best = min(statistics.median(times) for times in per_round.values())
    close = [i for i, times in per_round.items() if statistics.median(times) <= FINAL * best]
    if len(close) > 1:  # the contenders race as many rounds again, among themselves: the close call gets more data
        say(f"final: {len(close)} settings within {FINAL - 1:.0%} of the fastest, {rounds} more rounds")
        for index, times in race_apart({i: runs[i] for i in close}, rows, rounds=rounds, calls=calls,
                                       warmup=1).items():
            per_round[index].extend(times)
    for index, times in per_round.items():
        rows[index].update(ms=statistics.median(times), rounds=len(times))
        if len(times) < rounds:  # left the race early
            rows[index]["note"] = (f"left the race after {len(times)} rounds: every round >{DROP_SLOWER:g}x its "
                                   "artifact's best")
    while True:  # the choice is verified with its own thread count too
        chosen = rows.index(choose(rows, prefer, budget_ms))
        if rows[chosen].pop("verified_threads") == rows[chosen]["threads"]:
            break
        report = _verified(classifiers[chosen])
        if report["passed"]:
            break
        rows[chosen].update(status="excluded", note=report["why"] + f" on {rows[chosen]['threads']} threads", ms=None)
    for row in rows:
        row.pop("verified_threads", None)
    rows[chosen]["status"] = "chosen"
    result = {"schema": 1, "bundle_sha256": _digest(bundle_dir / MANIFEST), "machine": machine(),
              "date": time.strftime("%Y-%m-%d %H:%M:%S"), "policy": {"prefer": prefer, "budget_ms": budget_ms},
              "settings": {"rounds": rounds, "calls": calls, "threads": sweep, "measure": "Classifier.scores, median "
                           "over rounds of the mean of each round's calls, round-robin (spinning settings apart)"},
              "choice": {k: rows[chosen][k] for k in ("artifact", "backend", "threads", "options", "ms", "agreement")},
              "table": rows}
    if record:
        save(bundle_dir, result)
    return result


def choose(rows: list[dict], prefer: str = "fastest", budget_ms: float | None = None) -> dict:
    """The row a policy picks among the timed ones within the budget: fastest; smallest file (ties: faster);
    accurate, the highest agreement verified here (ties: faster; unverified ones last)."""
    timed = [r for r in rows if r.get("ms") is not None]
    if not timed:
        raise EdgeliteError("no artifact of the bundle passed verify here")
    within = [r for r in timed if budget_ms is None or r["ms"] <= budget_ms]
    if not within:
        best = min(timed, key=lambda r: r["ms"])
        raise EdgeliteError(f"no artifact meets the {budget_ms:g} ms budget here (fastest: {best['artifact']} on "
                            f"{best['threads']} threads at {best['ms']:.1f} ms)")
    order = {"fastest": lambda r: r["ms"], "smallest": lambda r: (r["bytes"], r["ms"]),
             "accurate": lambda r: (-(r["agreement"] if r.get("agreement") is not None else -1.0), r["ms"])}
    return min(within, key=order[prefer])


def save(bundle_dir: Path, record: dict) -> None:
    """tune.json (atomically) and, where matplotlib is installed, tune.png."""
    write_json(bundle_dir / RECORD, record)
    try:
        _plot(record, bundle_dir / PLOT)
    except ImportError:
        pass  # a device without matplotlib gets the table only


def label(row: dict) -> str:
    return f"{row['artifact']} {row['threads']}t{_options(row['options'])}"


def _verified(clf: Classifier) -> dict:
    """verify() on this machine, or a pass noted as unverified for a model that carries no check set."""
    if clf.backend.check_set() is None:
        return {"passed": True, "agreement": None, "why": "carries no check set: not verified"}
    report = verify(clf)
    if not report["passed"]:
        report["why"] = f"below its gate here (agreement {report['agreement']:.1%} < {report['min_agreement']:.1%})"
    return report


def sample_input(clf: Classifier) -> np.ndarray:
    """One prepared input: the first check image when the artifact carries them, else zeros."""
    payload = clf.backend.check_set()
    if payload is not None:
        return clf.prepare_pixels(decode(unpack(payload)[0][0]))
    return np.zeros((1, *[s or 1 for s in clf.input.shape[1:]]), clf.input.dtype)


def race_apart(runs: dict, rows: list[dict], **race_options) -> dict:
    """`race` the settings whose pool threads keep spinning after a call apart from the others: raced right
    after a spinning onnxruntime session, LiteRT int8 MobileNetV2 took 1.25 ms instead of 0.90 (2 threads,
    idle AMD EPYC), which the round-robin would have charged to LiteRT."""
    spinning = {i for i in runs if BACKENDS[rows[i]["backend"]].spins(rows[i]["threads"], rows[i]["options"])}
    per_round: dict = {}
    for block in ([i for i in runs if i not in spinning], [i for i in runs if i in spinning]):
        if block:
            per_round.update(race({i: runs[i] for i in block}, **race_options))
    return per_round


def _slower(rows: list[dict]) -> Callable[[dict], set]:
    """The rule for leaving the race: even the best round of a setting DROP_SLOWER x slower than the median
    of its artifact's best setting so far (a burst of another job's work does not hit every round)."""
    def drop(rounds: dict) -> set:
        best: dict = {}
        for index, times in rounds.items():
            artifact, ms = rows[index]["artifact"], statistics.median(times)
            best[artifact] = min(ms, best.get(artifact, ms))
        return {i for i, times in rounds.items() if min(times) > DROP_SLOWER * best[rows[i]["artifact"]]}
    return drop


def _options(options: dict) -> str:
    return "".join(f" {k}={v}" for k, v in options.items())


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted((r for r in record["table"] if r.get("ms") is not None), key=lambda r: -r["ms"])
    fig, ax = plt.subplots(figsize=(10, 0.3 * len(rows) + 1.5))
    ax.barh([label(r) for r in rows], [r["ms"] for r in rows],
            color=[matplotlib.colors.to_rgba("tab:orange" if r["status"] == "chosen" else "tab:blue",
                                             0.45 if r.get("rounds", 0) < record["settings"]["rounds"] else 1.0)
                   for r in rows])
    ax.set_xlabel("ms per image (median over rounds; pale: left the race early)")
    m = record["machine"]
    ax.set_title(f"{m['cpu']} [{' '.join(m['flags'])}], {m['cores']} cores\nchosen ({record['policy']['prefer']}): "
                 f"{label(record['choice'])}", fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.part.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
