"""`edgelite tune`: verify and time every artifact of a bundle on this machine, record the choice."""
from __future__ import annotations

import json
import sys

from edgelite.errors import EdgeliteError


def add(sub) -> None:
    p = sub.add_parser("tune", help="choose the fastest right artifact of a bundle on this machine (no TensorFlow)",
                       description="Verify each artifact of a bundle (edgelite bundle) on this machine's kernels, "
                                   "time every one that passes as it will run, alone, in alternating rounds over "
                                   "the settings that matter here (backend options, threads 1..cores), choose on "
                                   "each setting's slow moments (90th percentile over turns), print the table and record the choice with "
                                   "this machine in BUNDLE/tune.json (and a plot, tune.png). predict, serve and bench "
                                   "given the bundle folder use it, and tune again on another CPU or other packages.")
    p.add_argument("bundle", help="a folder made by edgelite bundle")
    p.add_argument("--prefer", choices=["fastest", "smallest", "accurate"], default="fastest",
                   help="fastest (default); smallest file; accurate: the highest agreement verified here (ties: "
                        "faster)")
    p.add_argument("--budget-ms", type=float, help="only settings at most this slow (a budget nobody meets: exit 2)")
    p.add_argument("--runs", type=int, help="rounds (default 8; each round gives every setting one turn: opened, "
                                            "warmed, timed 10 calls, released)")
    p.add_argument("--threads", type=int, nargs="+", help="thread counts to try (default 1..cores)")
    p.add_argument("--seconds", type=float, default=60.0,
                   help="time budget of the timing (default 60): past it each stage ends after 4 rounds or more")
    p.add_argument("--json", action="store_true", help="the table and the choice as one JSON document")
    p.add_argument("--force", action="store_true",
                   help="measure again even when a choice recorded on this machine exists (without it, a new "
                        "--prefer or --budget-ms is applied to the recorded table)")
    p.set_defaults(run=run)


def run(args) -> int:
    from pathlib import Path

    from edgelite import tune
    from edgelite.bundle import read_manifest

    if args.runs is not None and args.runs < 1:
        raise EdgeliteError("--runs must be at least 1")
    if args.seconds <= 0:
        raise EdgeliteError("--seconds must be more than 0")
    bundle = Path(args.bundle)
    read_manifest(bundle)  # a folder that is not a bundle: one line before anything else
    record = tune.read_record(bundle)
    reason = tune.stale(record, bundle)
    recorded = (record or {}).get("settings", {})
    other_threads = args.threads and sorted(set(args.threads)) != recorded.get("threads")
    if args.force or reason or other_threads or (args.runs and args.runs != recorded.get("rounds")):
        if not args.json:
            print(f"tuning {bundle} ({'--force' if args.force or not reason else reason})", file=sys.stderr)
        say = (lambda line: print(f"  {line}", file=sys.stderr)) if not args.json else None
        record = tune.tune(bundle, args.prefer, args.budget_ms, rounds=args.runs or tune.ROUNDS, threads=args.threads, say=say,
                           seconds=args.seconds)
    else:  # measured here already: the new policy on the recorded table
        rows = [{**row, "status": "timed" if row["status"] == "chosen" else row["status"]} for row in record["table"]]
        best = tune.choose(rows, args.prefer, args.budget_ms)
        best["status"] = "chosen"
        record = {**record, "table": rows, "policy": {"prefer": args.prefer, "budget_ms": args.budget_ms},
                  "choice": tune.choice_of(rows, best)}
        tune.save(bundle, record)
        if not args.json:
            print(f"recorded on this machine {record['date']} (--force measures again)", file=sys.stderr)
    if args.json:
        choice = {**record["choice"], "artifact": str(bundle / record["choice"]["artifact"])}
        print(json.dumps({**record, "choice": choice}))
        return 0
    print(table(record))
    return 0


def table(record: dict) -> str:
    """The tune table for a person: every setting, fastest first, the chosen one marked."""
    m = record["machine"]
    width = max(len("artifact"), *(len(r["artifact"]) for r in record["table"]))
    lines = [f"{m['cpu']} [{' '.join(m['flags'])}], {m['cores']} cores; "
             f"{', '.join(f'{k} {v}' for k, v in m['packages'].items())}",
             f"{'':2s}{'artifact':{width}s} {'backend':12s} {'threads':>7s} {'options':18s} {'MB':>6s} "
             f"{'agree':>6s} {'ms':>7s} {'p10-p90':>13s}  note"]
    rows = sorted(record["table"], key=lambda r: (r.get("slow_ms") is None, r.get("slow_ms") or 0))
    for r in rows:
        agreement = "-" if r.get("agreement") is None else f"{r['agreement']:.1%}"
        ms = "-" if r.get("ms") is None else f"{r['ms']:.2f}"
        spread = "-" if r.get("ms") is None else f"{r['fast_ms']:.2f}-{r['slow_ms']:.2f}"
        options = " ".join(f"{k}={v}" for k, v in r["options"].items()) or "default"
        lines.append(f"{'*' if r['status'] == 'chosen' else ' '} {r['artifact']:{width}s} {r['backend']:12s} "
                     f"{r['threads']:7d} {options:18s} {r['bytes'] / 1e6:6.2f} {agreement:>6s} {ms:>7s} "
                     f"{spread:>13s}  {r.get('note') or ''}")
    c, policy, taken = record["choice"], record["policy"], record["settings"]
    budget = f" within {policy['budget_ms']:g} ms" if policy.get("budget_ms") else ""
    lines.append(f"each setting timed alone ({taken['method']['isolation']}): {taken['rounds_run']} rounds of "
                 f"{taken['calls']} calls, {taken['turns']} turns in {taken['seconds']:.0f} s; ms = median over turns, "
                 "p10-p90 its spread; chosen on p90")
    lines.append(f"chosen ({policy['prefer']}{budget}): {c['artifact']} on {c['backend']}, threads {c['threads']}"
                 + "".join(f", {k}={v}" for k, v in c["options"].items())
                 + f", {c['ms']:.2f} ms ({c['fast_ms']:.2f}-{c['slow_ms']:.2f})")
    meanwhile = taken.get("meanwhile", {})
    if meanwhile.get("other_processes_cores", 0) > 0.2 or meanwhile.get("stolen_cores", 0) > 0.1:
        lines.append(f"meanwhile other processes kept {meanwhile['other_processes_cores']:.1f} cores busy and the "
                     f"host took {meanwhile['stolen_cores']:.1f}: settings of several threads were timed with less "
                     "than the whole machine (edgelite tune --force on an idle machine, if it will run on one)")
    runner = c.get("runner_up")
    if runner and policy["prefer"] == "fastest":
        lines.append(f"runner-up {runner['setting']}: {runner['ms']:.2f} ms, p90 {c['margin']:+.0%} against the "
                     "pick's" + (": within the noise, either will do" if c["within_noise"] else ""))
    return "\n".join(lines)
