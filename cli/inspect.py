"""`edgelite inspect`: what an artifact carries, and its per-layer quantization report."""
from __future__ import annotations

import json
from pathlib import Path

from edgelite.errors import EdgeliteError


def add(sub) -> None:
    p = sub.add_parser("inspect", help="an artifact's metadata and per-layer quantization report",
                       description="Show what an artifact carries: format, labels, preprocessing, quantization "
                                   "recipe (layers kept in float), parity at export and where it was measured, and "
                                   "the per-layer error report written when an export was rescued (or "
                                   "--float to compute it now from the ONNX float and int8 files).")
    p.add_argument("model", help=".tflite or .onnx file")
    p.add_argument("--float", dest="float_model",
                   help="the float .onnx export, to compute the per-layer report now (needs edgelite[convert])")
    p.add_argument("--worst", type=int, default=10, help="layers to list (default 10)")
    p.set_defaults(run=run)


def run(args) -> int:
    from edgelite.classifier import Classifier
    from edgelite.layers import format_table, format_tries, method_label
    from edgelite.noise import describe

    clf = Classifier(args.model)
    meta = clf.metadata
    print(f"{args.model}: {meta.get('format', 'no edgelite metadata')}; input {clf.input.shape} {clf.input.dtype}, "
          f"output {clf.output.shape} {clf.output.dtype}; {len(clf.labels or [])} labels")
    print(f"  preprocessing: {json.dumps(clf.spec.to_dict())}")
    recipe = meta.get("quantization", {})
    if recipe:
        print(f"  quantization: {json.dumps({k: v for k, v in recipe.items() if k != 'rescue'})}")
    if "parity" in meta:
        p = meta["parity"]
        k = p.get("kernels", {})
        agreement = f"agreement {p['agreement']:.1%}, top-1 " if "agreement" in p else "top-1 agreement "
        print(f"  parity at export: {agreement}{p['top1_agreement']:.1%} on {p['images']} images (gate "
              f"{p['min_agreement']:.1%}), max |dp| {p['max_abs_diff']:.3f}; measured on {k.get('machine', '?')} "
              f"[{' '.join(k.get('flags', []))}] {k.get('backend', '')}")
    rescue = recipe.get("rescue")
    if rescue:
        kept = (", ".join(rescue["excluded"]) or "none") if rescue.get("passed") else "none (no try passed)"
        method = f"; {method_label(rescue['method'])}" if rescue.get("passed") and rescue.get("method") else ""
        print(f"  rescue: {format_tries(rescue['tries'])}{method}; kept in float: {kept}")
        if rescue.get("noise_floor"):
            print(f"  the float model's noise floor on the check images: {describe(rescue['noise_floor'])}")
    if args.float_model:
        layers = _onnx_report_now(clf, Path(args.float_model), Path(args.model))
    else:
        report = Path(args.model).with_name(rescue["report"]) if rescue and rescue.get("report") else None
        layers = json.loads(report.read_text()) if report and report.is_file() else None
    if layers:
        key = (rescue or {}).get("key") or ("sqnr_db" if Path(args.model).suffix == ".onnx" else "rmse_scale")
        print(format_table(layers, key, worst=args.worst))
    elif recipe.get("weights") == "int8":
        print("  no per-layer report stored (written when an int8 or dynamic-range export is rescued); "
              "for ONNX pass --float MODEL_fp32.onnx to compute one")
    return 0


def _onnx_report_now(clf, float_model: Path, model: Path) -> list[dict]:
    """The per-layer report of an int8 ONNX file against its float sibling, on the check set it carries."""
    import numpy as np

    from edgelite.checkset import decode, unpack

    try:
        from edgelite.convert.onnx_layer_error import onnx_layer_report
    except ImportError:
        raise EdgeliteError("--float needs the converter's packages: pip install 'edgelite[convert]'") from None
    payload = clf.backend.check_set()
    blobs = unpack(payload)[0] if payload else []
    if not blobs:
        raise EdgeliteError(f"{model} carries no check set to compute the report on")
    inputs = np.concatenate([clf.prepare_pixels(decode(b)) for b in blobs[:16]]).astype(np.float32)
    return onnx_layer_report(float_model, model, inputs, clf.backend.session.get_inputs()[0].name)
