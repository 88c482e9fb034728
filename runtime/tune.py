"""`edgelite tune`: the fastest right artifact of a bundle, chosen on the machine that runs it.

Which format is fastest is a property of the CPU (fp16 beat int8 on an AVX2 EPYC; int8 wins on ARM
boards with dot-product instructions), so it is measured where it runs: every artifact of a bundle is
verified on this machine's kernels (its check set: an artifact below its gate here is left out), then
every (artifact, threads, backend options) that passed is timed as it will run, alone, in alternating rounds
spread over the measuring time (runtime/timing.py), and one is chosen by a policy within an optional latency
budget, on its slow moments (`slow_ms`), not its best ones. The choice is recorded in BUNDLE/tune.json
with the machine it was made on; `open_choice` reuses it while the CPU and the packages are the same,
and tunes again when they are not. Numpy and the backends only: no TensorFlow.
"""
from __future__ import annotations

import json
import logging
import os
import statistics
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
from tqdm import tqdm

from .backends import BACKENDS
from .bundle import MANIFEST, check_file, read_manifest
from .checkset import verify
from .classifier import Classifier
from .errors import EdgeliteError, one_line
from .figures import pyplot, write_figure
from .files import sha256, write_json
from .machine import changed, machine
from .timing import METHOD, Load, measure, opener, summary

log = logging.getLogger(__name__)
RECORD, PLOT = "tune.json", "tune.png"
PREFER = ("fastest", "smallest", "accurate")
SCHEMA = 2  # tune.json's layout: 2 = figures of settings timed alone (ms, fast_ms, slow_ms over turns)
ROUNDS, CALLS = 8, 10  # rounds of one turn per setting, timed calls per turn
SECONDS, MIN_ROUNDS = 60.0, 4  # the timing's budget (a device with many settings runs fewer rounds, never < 4)
DROP_SLOWER = 2.0  # after a third of the rounds, settings whose best turn is this much slower than their
# artifact's best setting leave
FINAL = 1.25  # settings whose fast moments are within this of the steadiest one's slow moments go to a final
CHOICE = ("artifact", "backend", "threads", "options", "ms", "fast_ms", "slow_ms", "agreement")


def _silent(line: str) -> None:
    pass


class Choice(NamedTuple):
    path: Path
    backend: str
    threads: int
    options: dict


def is_bundle(path: str | Path) -> bool:
    """Whether a path is a folder made by `edgelite bundle`."""
    return (Path(path) / MANIFEST).is_file()


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
    if record.get("schema") != SCHEMA:
        return "recorded by another edgelite version"
    manifest = bundle_dir / MANIFEST
    if not manifest.is_file() or record.get("bundle_sha256") != sha256(manifest):
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


def tune(bundle_dir: str | Path, prefer: str = "fastest", budget_ms: float | None = None, rounds: int = ROUNDS,
         threads: list[int] | None = None, calls: int = CALLS, record: bool = True,
         say: Callable[[str], None] | None = None, seconds: float = SECONDS) -> dict:
    """Verify every artifact of the bundle here, time every setting of those that pass as it runs alone
    (runtime/timing.py), choose one. Returns the record (also written to tune.json, and a plot to tune.png, with
    `record`)."""
    if prefer not in PREFER:
        raise EdgeliteError(f"unknown --prefer {prefer!r} (choose from {', '.join(PREFER)})")
    bundle_dir, say = Path(bundle_dir), say or _silent
    manifest = read_manifest(bundle_dir)
    sweep = sorted(set(threads or range(1, (os.cpu_count() or 1) + 1)))
    if sweep[0] < 1:
        raise EdgeliteError("--threads must be at least 1")
    rows, openers = [], {}
    for entry in manifest["artifacts"]:
        settings = [(t, o) for t in sweep for o in BACKENDS[entry["backend"]].speed_settings(t)]
        checked: dict = {}  # options -> the verify report of one classifier with them
        for t, options in settings:
            row = {"artifact": entry["file"], "format": entry["format"], "bytes": entry["bytes"],
                   "backend": entry["backend"], "threads": t, "options": options}
            rows.append(row)
            key = json.dumps(options, sort_keys=True)
            path = bundle_dir / entry["file"]
            try:
                if key not in checked:
                    say(f"verifying {entry['file']} ({entry['backend']}{_options(options)})")
                    check_file(bundle_dir, entry["file"])  # the bytes that were bundled, or one line saying not
                    clf = Classifier(path, threads=t, options=options)
                    checked[key] = {**_verified(clf), "threads": t, "runs_as": clf.backend.version}
                    del clf  # released: only the setting being timed is ever loaded
            except EdgeliteError as exc:
                checked[key] = {"passed": False, "why": one_line(exc), "error": True}
            report = checked[key]
            if report.get("error"):
                row.update(status="error", note=report["why"])
                continue
            row.update(agreement=report.get("agreement"), gate=report.get("min_agreement"))
            if not report["passed"]:
                row.update(status="excluded", note=report["why"])
                continue
            row.update(status="timed", note=report.get("why"), verified_threads=report["threads"],
                       runs_as=report["runs_as"])
            openers[len(rows) - 1] = opener(path, t, options)
    if not openers:
        raise EdgeliteError("no artifact of the bundle passed verify here: " +
                            "; ".join(sorted({f"{r['artifact']} {r['note']}" for r in rows})))
    started = time.perf_counter()
    say(f"timing {len(openers)} settings, each alone: {rounds} rounds of one turn each ({calls} calls after a "
        "warm-up), the order alternating")
    with Load() as load:
        per_turn, first = _timed(openers, rounds, calls, rows, say, seconds)
    figures = {i: summary(times) for i, times in per_turn.items()}
    for index, f in figures.items():
        rows[index].update({k: f[k] for k in ("ms", "fast_ms", "slow_ms", "turns")})
        if f["turns"] < first:  # left early
            rows[index]["note"] = (f"left after {f['turns']} turns: every turn >{DROP_SLOWER:g}x its "
                                   "artifact's best")
    while True:  # the choice is verified with its own thread count too
        chosen = rows.index(choose(rows, prefer, budget_ms))
        row = rows[chosen]
        if row.pop("verified_threads") == row["threads"]:
            break
        report = _verified(Classifier(bundle_dir / row["artifact"], threads=row["threads"], options=row["options"]))
        if report["passed"]:
            break
        row.update(status="excluded", note=report["why"] + f" on {row['threads']} threads", ms=None, slow_ms=None)
    for row in rows:
        row.pop("verified_threads", None)
    rows[chosen]["status"] = "chosen"
    result = {"schema": SCHEMA, "bundle_sha256": sha256(bundle_dir / MANIFEST), "machine": machine(),
              "date": time.strftime("%Y-%m-%d %H:%M:%S"), "policy": {"prefer": prefer, "budget_ms": budget_ms},
              "settings": {"rounds": rounds, "rounds_run": first, "calls": calls, "seconds_budget": seconds,
                           "threads": sweep, "measure": "Classifier.scores",
                           "method": METHOD, "turns": sum(len(t) for t in per_turn.values()),
                           "seconds": round(time.perf_counter() - started, 1), "meanwhile": load.figures},
              "choice": choice_of(rows, rows[chosen]),
              "table": rows}
    if record:
        save(bundle_dir, result)
    return result


def choose(rows: list[dict], prefer: str = "fastest", budget_ms: float | None = None) -> dict:
    """The row a policy picks among the timed ones whose slow moments (`slow_ms`) are within the budget:
    fastest, the lowest slow_ms (a setting fast only at some moments does not win on them); smallest file
    (ties: faster); accurate, the highest agreement verified here (ties: faster; unverified ones last)."""
    timed = [r for r in rows if r.get("slow_ms") is not None]
    if not timed:
        raise EdgeliteError("no artifact of the bundle passed verify here")
    within = [r for r in timed if budget_ms is None or r["slow_ms"] <= budget_ms]
    if not within:
        best = min(timed, key=lambda r: r["slow_ms"])
        raise EdgeliteError(f"no artifact meets the {budget_ms:g} ms budget here (fastest: {best['artifact']} on "
                            f"{best['threads']} threads at {best['slow_ms']:.1f} ms at its slow moments)")
    order = {"fastest": lambda r: r["slow_ms"], "smallest": lambda r: (r["bytes"], r["slow_ms"]),
             "accurate": lambda r: (-(r["agreement"] if r.get("agreement") is not None else -1.0), r["slow_ms"])}
    return min(within, key=order[prefer])


def choice_of(rows: list[dict], pick: dict) -> dict:
    """The record's choice: the picked row's setting and figures, and how sure it is: the steadiest other
    setting, and whether it is within the pick's noise (its fast moments reach the pick's slow ones)."""
    chosen = {k: pick[k] for k in CHOICE}
    others = [r for r in rows if r.get("slow_ms") is not None and r is not pick]
    if not others:
        return {**chosen, "runner_up": None}
    runner = min(others, key=lambda r: r["slow_ms"])
    return {**chosen, "runner_up": {"setting": label(runner), "ms": runner["ms"], "slow_ms": runner["slow_ms"]},
            "margin": runner["slow_ms"] / pick["slow_ms"] - 1, "within_noise": runner["fast_ms"] <= pick["slow_ms"]}


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


def _timed(openers: dict, rounds: int, calls: int, rows: list[dict], say: Callable[[str], None],
           seconds: float) -> tuple[dict, int]:
    """Every setting in `rounds` rounds (those clearly slower than their artifact's best leave after a third of
    them), then the contenders (fast moments within FINAL of the steadiest one's slow moments) as many rounds
    again among themselves: the close call gets more data. Each stage ends early, after MIN_ROUNDS at least,
    when its share of `seconds` is spent (the first 60 %). ({setting: its turns}, rounds of the first stage)."""
    start, done = time.monotonic(), []

    def spent(share: float) -> Callable[[int], bool]:
        return lambda number: number >= MIN_ROUNDS and time.monotonic() - start > share * seconds

    def tick(number: int) -> None:
        bar.update()
        done.append(number)

    with tqdm(total=rounds, desc="rounds", unit="round", disable=say is _silent, leave=False) as bar:
        per_turn = measure(openers, rounds, calls, drop_after=max(2, rounds // 3), drop=_slower(rows), tick=tick,
                           until=spent(0.6))
    figures = {i: summary(times) for i, times in per_turn.items()}
    best = min(f["slow_ms"] for f in figures.values())
    close = [i for i, f in figures.items() if f["fast_ms"] <= FINAL * best]
    if len(close) > 1:
        say(f"final: {len(close)} settings within {FINAL - 1:.0%} of the steadiest, {rounds} more rounds")
        with tqdm(total=rounds, desc="final", unit="round", disable=say is _silent, leave=False) as bar:
            for index, times in measure({i: openers[i] for i in close}, rounds, calls, tick=lambda n: bar.update(),
                                        until=spent(1.0)).items():
                per_turn[index].extend(times)
    return per_turn, done[-1]


def _slower(rows: list[dict]) -> Callable[[dict], set]:
    """The rule for leaving early: even the best turn of a setting DROP_SLOWER x slower than the median turn
    of its artifact's best setting so far (a burst of another job's work does not hit every turn)."""
    def drop(turns: dict) -> set:
        best: dict = {}
        for index, figures in turns.items():
            artifact, ms = rows[index]["artifact"], statistics.median(figures)
            best[artifact] = min(ms, best.get(artifact, ms))
        return {i for i, figures in turns.items() if min(figures) > DROP_SLOWER * best[rows[i]["artifact"]]}
    return drop


def _options(options: dict) -> str:
    return "".join(f" {k}={v}" for k, v in options.items())


def _plot(record: dict, path: Path) -> None:
    import matplotlib

    plt = pyplot()
    rows = sorted((r for r in record["table"] if r.get("ms") is not None), key=lambda r: -r["ms"])
    fig, ax = plt.subplots(figsize=(10, 0.3 * len(rows) + 1.5))
    ms = np.array([r["ms"] for r in rows])
    spread = np.array([[r["ms"] - r["fast_ms"] for r in rows], [r["slow_ms"] - r["ms"] for r in rows]])
    ax.barh([label(r) for r in rows], ms, xerr=spread, capsize=3,
            color=[matplotlib.colors.to_rgba("tab:orange" if r["status"] == "chosen" else "tab:blue",
                                             0.45 if r.get("turns", 0) < record["settings"]["rounds_run"] else 1.0)
                   for r in rows])
    ax.set_xlabel("ms per image, each setting timed alone: median over turns, whiskers 10th-90th percentile "
                  "(pale: left early)")
    m = record["machine"]
    ax.set_title(f"{m['cpu']} [{' '.join(m['flags'])}], {m['cores']} cores\nchosen ({record['policy']['prefer']}, "
                 f"on its 90th percentile): {label(record['choice'])}", fontsize=9)
    fig.tight_layout()
    write_figure(fig, path, dpi=100)
    plt.close(fig)
