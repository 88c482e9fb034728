"""Is `edgelite tune`'s pick right? A fresh, longer race of every setting tune found passing, measured apart
from tune (no early exits, no final among close settings; spinning onnxruntime settings raced in a block of
their own, as tune does), and the pick verified again with its own settings.

    python -m edgelite.benchmarks.tune_check BUNDLE [--rounds 60] [--out check.json]

Prints a table (fastest first) and one verdict line: the pick's median against the fastest one measured
here, within --tolerance (default 10 %), and whether the pick passes verify. Exit 0 when both hold, 1 when
not. Timings mean something only on a real, idle CPU: under an emulator check correctness only.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from edgelite.checkset import verify
from edgelite.classifier import Classifier
from edgelite.errors import EdgeliteError, guarded
from edgelite.files import write_json
from edgelite.tune import label, machine, race_apart, read_record, sample_input


def check(bundle: Path, rounds: int = 60, calls: int = 3, tolerance: float = 0.10) -> dict:
    record = read_record(bundle)
    if record is None or "choice" not in record:
        raise EdgeliteError(f"{bundle} has no recorded choice: run edgelite tune {bundle} first")
    rows = [r for r in record["table"] if r["status"] in ("timed", "chosen")]
    runs, opened = {}, {}
    for index, row in enumerate(rows):
        clf = Classifier(bundle / row["artifact"], threads=row["threads"], options=row["options"])
        opened[index], x = clf, sample_input(clf)
        runs[index] = lambda clf=clf, x=x: clf.scores(x)
    print(f"racing {len(runs)} settings, {rounds} rounds of {calls} calls", file=sys.stderr)
    # raced as tune races them: onnxruntime's spinning settings apart from the others (edgelite.tune.race_apart)
    medians = {i: statistics.median(times) for i, times in race_apart(runs, rows, rounds=rounds, calls=calls).items()}
    pick = next(i for i, r in enumerate(rows) if r["status"] == "chosen")
    fastest = min(medians, key=medians.get)
    report = verify(opened[pick])
    ratio = medians[pick] / medians[fastest]
    return {"machine": machine(), "tuned_on": record["machine"], "tuned": record["date"], "rounds": rounds,
            "calls": calls,
            "table": [{"setting": label(rows[i]), "ms": medians[i], "tune_ms": rows[i]["ms"]}
                      for i in sorted(medians, key=medians.get)],
            "pick": label(rows[pick]), "pick_ms": medians[pick], "fastest": label(rows[fastest]),
            "fastest_ms": medians[fastest], "ratio": ratio, "within": ratio <= 1 + tolerance, "tolerance": tolerance,
            "pick_agreement": report["agreement"], "pick_passes_verify": report["passed"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgelite.benchmarks.tune_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path, help="a bundle tuned on this machine (edgelite tune)")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--calls", type=int, default=3, help="calls per setting per round")
    parser.add_argument("--tolerance", type=float, default=0.10)
    parser.add_argument("--out", type=Path, help="write the result as JSON")
    args = parser.parse_args(argv)

    def run() -> int:
        result = check(args.bundle, args.rounds, args.calls, args.tolerance)
        m = result["machine"]
        print(f"{m['cpu']} [{' '.join(m['flags'])}], {m['cores']} cores; {result['rounds']} rounds")
        print(f"{'setting':70s} {'ms':>8s} {'tune ms':>8s}")
        for row in result["table"]:
            print(f"{row['setting']:70s} {row['ms']:8.2f} {row['tune_ms']:8.2f}")
        print(f"pick {result['pick']} {result['pick_ms']:.2f} ms = {result['ratio']:.3f} x the fastest "
              f"({result['fastest']}, {result['fastest_ms']:.2f} ms): "
              f"{'within' if result['within'] else 'NOT within'} {result['tolerance']:.0%}; verify "
              f"{'passes' if result['pick_passes_verify'] else 'FAILS'} (agreement {result['pick_agreement']:.1%})")
        if args.out:
            write_json(args.out, result)
        return 0 if result["within"] and result["pick_passes_verify"] else 1

    return guarded(run, prog="tune_check")


if __name__ == "__main__":
    sys.exit(main())
