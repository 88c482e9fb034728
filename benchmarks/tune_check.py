"""Is `edgelite tune`'s pick right? Every setting tune timed to the end, measured again apart from tune, each in
a process of its own (edgelite.timing.Worker: the same turns, rounds alternating the order, no early exits, no
final), and the pick verified again with its own settings.

    python -m edgelite.benchmarks.tune_check BUNDLE [--rounds 10] [--out check.json]

Prints a table (steadiest first: by the slowest turn) and the verdicts of the issue that asked for it:
- the pick's median is within --tolerance (10 %) of the fastest setting's median, or its slowest turn within
  --tolerance of the steadiest setting's slowest turn (a steady pick may lose the median to a setting that is
  fast only at some moments);
- tune's recorded figure for the pick is within --figure-tolerance (15 %) of the median measured here;
- the pick passes verify.
Exit 0 when all hold, 1 when not. Timings mean something only on a real, idle CPU: under an emulator check
correctness only.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgelite.checkset import verify
from edgelite.classifier import Classifier
from edgelite.errors import EdgeliteError, guarded
from edgelite.files import write_json
from edgelite.timing import in_rounds, medians, start_workers, summary
from edgelite.machine import machine
from edgelite.tune import label, read_record


def check(bundle: Path, rounds: int = 10, calls: int = 10, tolerance: float = 0.10,
          figure_tolerance: float = 0.15) -> dict:
    record = read_record(bundle)
    if record is None or "choice" not in record or "slow_ms" not in record["choice"]:
        raise EdgeliteError(f"{bundle} has no recorded choice of this edgelite: run edgelite tune {bundle} first")
    rows = [r for r in record["table"] if r["status"] in ("timed", "chosen")
            and r.get("turns", 0) >= record["settings"]["rounds_run"]]  # the ones that did not leave early
    print(f"timing {len(rows)} settings, each in a process of its own: {rounds} rounds of {calls} calls",
          file=sys.stderr)
    workers = start_workers({i: (bundle / r["artifact"], r["threads"], r["options"]) for i, r in enumerate(rows)})
    try:
        per_turn = in_rounds(workers, rounds, calls)
    finally:
        for worker in workers.values():
            worker.close()
    figures = {i: {**summary(t), "slowest_ms": max(medians(t))} for i, t in per_turn.items()}
    pick = next(i for i, r in enumerate(rows) if r["status"] == "chosen")
    fastest = min(figures, key=lambda i: figures[i]["ms"])
    steadiest = min(figures, key=lambda i: figures[i]["slowest_ms"])
    mine = figures[pick]
    by_median = mine["ms"] / figures[fastest]["ms"]
    by_slowest = mine["slowest_ms"] / figures[steadiest]["slowest_ms"]
    recorded = record["choice"]["ms"] / mine["ms"]
    report = verify(Classifier(bundle / rows[pick]["artifact"], threads=rows[pick]["threads"],
                               options=rows[pick]["options"]))
    return {"machine": machine(), "tuned_on": record["machine"], "tuned": record["date"], "rounds": rounds,
            "calls": calls, "method": "each setting in a process of its own (edgelite.timing.Worker), turns as tune",
            "table": [{"setting": label(rows[i]), **{k: figures[i][k] for k in ("ms", "fast_ms", "slow_ms",
                                                                                  "slowest_ms")},
                       "tune_ms": rows[i]["ms"], "tune_slow_ms": rows[i]["slow_ms"]}
                      for i in sorted(figures, key=lambda i: figures[i]["slowest_ms"])],
            "pick": label(rows[pick]), "pick_ms": mine["ms"], "pick_slowest_ms": mine["slowest_ms"],
            "fastest": label(rows[fastest]), "fastest_ms": figures[fastest]["ms"],
            "steadiest": label(rows[steadiest]), "steadiest_slowest_ms": figures[steadiest]["slowest_ms"],
            "ratio_median": by_median, "ratio_slowest": by_slowest, "tolerance": tolerance,
            "within": by_median <= 1 + tolerance or by_slowest <= 1 + tolerance,
            "recorded_ms": record["choice"]["ms"], "recorded_ratio": recorded,
            "recorded_within": abs(recorded - 1) <= figure_tolerance, "figure_tolerance": figure_tolerance,
            "pick_agreement": report["agreement"], "pick_passes_verify": report["passed"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgelite.benchmarks.tune_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path, help="a bundle tuned on this machine (edgelite tune)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=10, help="timed calls per setting per turn")
    parser.add_argument("--tolerance", type=float, default=0.10)
    parser.add_argument("--figure-tolerance", type=float, default=0.15)
    parser.add_argument("--out", type=Path, help="write the result as JSON")
    args = parser.parse_args(argv)

    def run() -> int:
        result = check(args.bundle, args.rounds, args.calls, args.tolerance, args.figure_tolerance)
        m = result["machine"]
        print(f"{m['cpu']} [{' '.join(m['flags'])}], {m['cores']} cores; {result['rounds']} rounds, "
              f"{result['method']}")
        print(f"{'setting':62s} {'ms':>7s} {'p10-p90':>13s} {'slowest':>8s} {'tune ms':>8s} {'tune p90':>8s}")
        for row in result["table"]:
            spread = f"{row['fast_ms']:.2f}-{row['slow_ms']:.2f}"
            print(f"{row['setting']:62s} {row['ms']:7.2f} {spread:>13s} {row['slowest_ms']:8.2f} "
                  f"{row['tune_ms']:8.2f} {row['tune_slow_ms']:8.2f}")
        tol = result["tolerance"]
        print(f"pick {result['pick']}: median {result['pick_ms']:.2f} ms = {result['ratio_median']:.3f}x the fastest "
              f"({result['fastest']}, {result['fastest_ms']:.2f}); slowest turn {result['pick_slowest_ms']:.2f} = "
              f"{result['ratio_slowest']:.3f}x the steadiest's ({result['steadiest']}, "
              f"{result['steadiest_slowest_ms']:.2f}): {'within' if result['within'] else 'NOT within'} {tol:.0%}")
        print(f"tune recorded {result['recorded_ms']:.2f} ms for it = {result['recorded_ratio']:.3f}x the median "
              f"here: {'within' if result['recorded_within'] else 'NOT within'} {result['figure_tolerance']:.0%}; "
              f"verify {'passes' if result['pick_passes_verify'] else 'FAILS'} "
              f"(agreement {result['pick_agreement']:.1%})")
        if args.out:
            write_json(args.out, result)
        return 0 if result["within"] and result["recorded_within"] and result["pick_passes_verify"] else 1

    return guarded(run, prog="tune_check")


if __name__ == "__main__":
    sys.exit(main())
