"""The command-line options that send `predict` and `bench` to a Ray cluster."""
from __future__ import annotations

import argparse


def add_ray_options(parser: argparse.ArgumentParser, evaluation: bool = False) -> None:
    """--ray [ADDRESS] and --actors N; for predict (evaluation False) also --out and --resume.

    ADDRESS: `local` (a Ray instance started for this run on this machine; the default when --ray is
    given alone), `auto` (the cluster this machine has joined with `ray start`), `HOST:6379` or
    `ray://HOST:10001` (Ray Client)."""
    g = parser.add_argument_group("on a Ray cluster (pip install 'edgelite[cluster]')")
    g.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run on Ray: local (a Ray instance on this machine, the default), auto (the cluster this "
                        "machine joined), HOST:6379 or ray://HOST:10001")
    g.add_argument("--actors", type=int, metavar="N",
                   help="with --ray: classifier actors, each one single-threaded interpreter (default: the "
                        "cluster's CPUs)")
    if not evaluation:
        g.add_argument("--out", metavar="RESULTS.parquet|.csv|.jsonl",
                       help="with --ray: the results, one row per input, format by suffix")
        g.add_argument("--resume", action="store_true",
                       help="with --ray: skip the files already in --out and add the rest to it")
