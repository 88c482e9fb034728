"""Load test of `edgelite serve` against a plain `Classifier.predict` loop on the same images.

    python -m edgelite.benchmarks.load MODEL --images DIR [--requests 1000] [--clients 8] [--out DIR]

Starts `edgelite serve` on 127.0.0.1 (loopback only) in a subprocess and sends `--requests`
multipart uploads (as the page sends them; `--raw` for raw bodies) first from one client, then
from `--clients` concurrent client threads (urllib, a new connection per request). Every answer
must equal `Classifier.predict` of that image computed here (top-k indices and labels equal, scores
within 1e-5); each run stops at `--time-limit` seconds. Prints a Markdown table (p50/p99 latency,
requests/s) and the service's overhead per request (p50 with one client minus p50 predict), and
writes load.json to --out. Exits 1 on any error or mismatch. Client threads share this process's
cores with the server: on a small device the numbers include the clients' own cost.
"""
from __future__ import annotations

import argparse
import itertools
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from edgelite import Classifier
from edgelite.errors import EdgeliteError, guarded
from edgelite.files import find_images, write_json

from edgelite.timing import percentiles

BOUNDARY = "edgeliteLoadBoundary"


def multipart(data: bytes, name: str) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def same(answer: list[dict], want: list) -> bool:
    """The service's predictions equal the in-process ones: indices and labels, scores within 1e-5."""
    return len(answer) == len(want) and all(
        a["index"] == w.index and a["label"] == w.label and abs(a["score"] - w.score) <= 1e-5
        for a, w in zip(answer, want))


def summary(name: str, latencies: list[float], wall: float, errors: int, server_ms: list[float] = ()) -> dict:
    ms = percentiles(np.asarray(latencies) * 1e3)
    row = {"run": name, "requests": len(latencies), "errors": errors, "p50_ms": ms["p50_ms"], "p99_ms": ms["p99_ms"],
           "per_s": len(latencies) / wall if wall else None, "wall_s": wall}
    if len(server_ms):
        row["server_p50_ms"] = percentiles(server_ms)["p50_ms"]
    return row


def predict_loop(clf: Classifier, images: list[tuple[str, bytes]], requests: int, top_k: int) -> dict:
    """The baseline: Classifier.predict on the same bytes, one after another, in this process."""
    for _, data in images[:5]:
        clf.predict(data, top_k)  # warm-up, as the service's first requests are
    latencies, start = [], time.perf_counter()
    for i in range(requests):
        t = time.perf_counter()
        clf.predict(images[i % len(images)][1], top_k)
        latencies.append(time.perf_counter() - t)
    return summary("Classifier.predict loop (in-process)", latencies, time.perf_counter() - start, 0)


def load_run(url: str, images, expected, requests: int, clients: int, top_k: int, raw: bool,
             time_limit: float) -> tuple[dict, list[str]]:
    """`requests` requests from `clients` threads; -> (summary row, first problems seen)."""
    counter, lock = itertools.count(), threading.Lock()
    latencies, server_ms, problems = [], [], []
    errors = [0]
    deadline = time.monotonic() + time_limit
    endpoint = f"{url}classify?top_k={top_k}"

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                i = next(counter)
            if i >= requests:
                return
            name, data = images[i % len(images)]
            body = data if raw else multipart(data, name)
            kind = "application/octet-stream" if raw else f"multipart/form-data; boundary={BOUNDARY}"
            request = urllib.request.Request(endpoint, data=body, headers={"Content-Type": kind})
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    answer = json.loads(response.read())
                problem = None if same(answer["predictions"], expected[i % len(images)]) else \
                    f"{name}: answer differs from Classifier.predict: {answer['predictions'][:2]}"
            except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
                problem, answer = f"{name}: {type(exc).__name__}: {exc}", None
            elapsed = time.perf_counter() - t
            with lock:
                latencies.append(elapsed)
                if answer is not None:
                    server_ms.append(answer.get("ms", 0))
                if problem:
                    errors[0] += 1
                    problems.append(problem)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    name = f"edgelite serve, {clients} client{'s' if clients > 1 else ''}"
    return summary(name, latencies, wall, errors[0], server_ms), problems[:5]


def start_server(model: str, threads: int | None) -> tuple[subprocess.Popen, str]:
    """`edgelite serve MODEL --port 0` on loopback; -> (process, its URL) once it listens."""
    command = [sys.executable, "-m", "edgelite.cli", "serve", model, "--host", "127.0.0.1", "--port", "0"]
    if threads:
        command += ["--threads", str(threads)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    line = process.stdout.readline()  # "edgelite serve: http://127.0.0.1:PORT/ model ..."
    if "http://" not in line:
        process.kill()
        raise EdgeliteError(f"edgelite serve did not start (exit {process.wait()}): {line.strip()}")
    return process, line.split()[2]


def table(rows: list[dict]) -> str:
    lines = ["| run | requests | errors | p50 ms | p99 ms | requests/s | server p50 ms |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        server = f"{r['server_p50_ms']:.2f}" if "server_p50_ms" in r else ""
        lines.append(f"| {r['run']} | {r['requests']} | {r['errors']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{r['per_s']:.1f} | {server} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help=".tflite or .onnx file")
    parser.add_argument("--images", required=True, help="image folder (recursive) or files")
    parser.add_argument("--requests", type=int, default=1000, help="requests per run (default 1000)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients of the second run (default 8)")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--raw", action="store_true", help="raw image bodies instead of multipart uploads")
    parser.add_argument("--threads", type=int, help="inference threads, for the service and the baseline")
    parser.add_argument("--time-limit", type=float, default=300, help="seconds per run at most (default 300)")
    parser.add_argument("--out", help="folder for load.json")
    parser.add_argument("--force", action="store_true", help="overwrite an existing load.json")
    args = parser.parse_args(argv)
    return guarded(lambda: run(args))


def run(args) -> int:
    from .bench import environment

    out = Path(args.out) / "load.json" if args.out else None
    if out is not None and out.exists() and not args.force:
        raise EdgeliteError(f"{out} already exists (use --force to overwrite)")
    if out is not None:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgeliteError(f"cannot write to {out.parent}: {exc.strerror or exc}") from None
    paths = find_images([args.images])
    if not paths:
        raise EdgeliteError(f"{args.images}: no images found")
    images = [(p.name, p.read_bytes()) for p in paths]
    clf = Classifier(args.model, threads=args.threads)
    expected = [clf.predict(data, args.top_k) for _, data in images]

    rows = [predict_loop(clf, images, args.requests, args.top_k)]
    problems: list[str] = []
    process, url = start_server(args.model, args.threads)
    try:
        load_run(url, images, expected, 10, 1, args.top_k, args.raw, 30)  # warm-up
        for clients in dict.fromkeys([1, args.clients]):
            row, seen = load_run(url, images, expected, args.requests, clients, args.top_k, args.raw, args.time_limit)
            rows.append(row)
            problems += seen
    finally:
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=30)

    idle = [r["run"] for r in rows if r["p50_ms"] is None]
    if idle:
        raise EdgeliteError(f"no request finished within --time-limit {args.time_limit:g} s ({', '.join(idle)}): "
                            f"the server exited with {exit_code}; problems: {'; '.join(problems[:3]) or 'none'}")
    overhead = rows[1]["p50_ms"] - rows[0]["p50_ms"]
    print(f"\n{clf.path.name}: {len(images)} images, {'raw' if args.raw else 'multipart'} uploads, top-{args.top_k}, "
          f"loopback; the server exited with {exit_code}\n")
    print(table(rows))
    print(f"service overhead per request: {overhead:.2f} ms (p50 with 1 client {rows[1]['p50_ms']:.2f} ms - "
          f"p50 predict {rows[0]['p50_ms']:.2f} ms)")
    short = [r for r in rows[1:] if r["requests"] < args.requests]
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    for r in short:
        print(f"{r['run']}: stopped at the time limit after {r['requests']} requests", file=sys.stderr)
    ok = not problems and not short and exit_code == 0
    if out is not None:
        write_json(out, {"model": clf.path.name, "backend": clf.backend.version, "images": len(images),
                         "settings": {k: v for k, v in vars(args).items() if k not in ("out", "force")},
                         "rows": rows, "overhead_ms": overhead, "server_exit_code": exit_code,
                         "problems": problems, "ok": ok, "environment": environment()})
        print(f"written: {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
