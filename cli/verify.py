"""`edgelite verify`: an artifact's agreement with Keras, measured on this machine's kernels."""
from __future__ import annotations

import json
from pathlib import Path


def add(sub) -> None:
    p = sub.add_parser("verify", help="measure an artifact's agreement with Keras on this machine (no TensorFlow)",
                       description="Run the check set an edgelite artifact carries (images at the model's size and "
                                   "the Keras model's probabilities on them) through this machine's backend and "
                                   "integer kernels. Exit 0 if the top-1 agreement reaches the gate, 1 if not.")
    p.add_argument("models", nargs="+", help=".tflite or .onnx files made by edgelite convert, or bundle folders "
                                             "(each artifact checked against the sha256 its bundle.json records)")
    p.add_argument("--min-agreement", type=float, help="the gate (default: the one recorded at export)")
    p.add_argument("--backend", help="force a backend: litert or onnxruntime")
    p.add_argument("--json", action="store_true", help="one JSON object per model")
    p.set_defaults(run=run)


def run(args) -> int:
    from edgelite.checkset import verify
    from edgelite.classifier import Classifier

    failed = 0
    for model in _artifacts(args.models):
        report = verify(Classifier(model, backend=args.backend), args.min_agreement)
        failed += not report["passed"]
        print(json.dumps(report) if args.json else describe(model, report))
    return 1 if failed else 0


def _artifacts(paths: list[str]) -> list:
    """The models named, a bundle folder standing for its artifacts, each the file its bundle recorded."""
    from edgelite.bundle import MANIFEST, check_file, read_manifest

    found = []
    for path in map(Path, paths):
        if (path / MANIFEST).is_file():
            found += [check_file(path, entry["file"]) for entry in read_manifest(path).get("artifacts", [])]
        else:
            found.append(path)
    return found


def describe(model, report: dict) -> str:
    """A verify report as three lines for a person."""
    from edgelite.parity import far_note

    k = report["kernels"]
    gate = "no gate" if report["min_agreement"] is None else f"gate {report['min_agreement']:.1%}"
    exported = report["exported_on"] or {}
    reference = report.get("reference", "Keras")
    return "\n".join([
        f"{model}: agreement with {reference} {report['agreement']:.1%} on {report['images']} check images ({gate}) "
        f"-> {'ok' if report['passed'] else 'BELOW THE GATE'}; strict top-1 {report['top1_agreement']:.1%}, "
        f"{report['near_ties_flipped']} near-ties (within {report['near_tie']:g}) flipped"
        + (f", {report['dead_outputs']} dead outputs (all one value)" if report.get("dead_outputs") else "")
        + far_note(report, reference),
        f"  max |dp| vs {reference} {report['max_abs_diff']:.3f}; vs the exporting machine: same top-1 "
        f"{report['same_top1_as_export']:.1%}, max |dp| {report['max_abs_diff_from_export']:.3f}"
        + ("" if report["pixels_identical"] else "; check images decode differently here"),
        f"  here: {k['machine']} [{' '.join(k['flags'])}] {k['backend']}; exported on: "
        f"{exported.get('machine', '?')} [{' '.join(exported.get('flags', []))}] {exported.get('backend', '')}"])
