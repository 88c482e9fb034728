"""The rescue's search: the cheapest change that brings an export below its gate back over it, given the layers
ranked by a per-format report (onnx_layer_error.py, tflite_layer_error.py, dynamic_range.py) and an evaluator
that builds and measures one try (exporter.py's `TrialEvaluator`). NNCF's accuracy control splits its ranker,
evaluator and algorithm the same way."""
from __future__ import annotations

from typing import Callable, Sequence

from edgelite.errors import EdgeliteError
from edgelite.layers import worst_first


def fallback_search(layers: list[dict], evaluate: Callable[..., float], gate: float, key: str,
                    max_layers: int = 8, methods: Sequence[str] = (), baseline: float | None = None,
                    refine: bool = False) -> dict:
    """The cheapest change that reaches `gate`: first another method (`evaluate([], method)`: a calibration
    method, bias correction), then the worst 1, 2, 4, 8... layers (by `key`) kept in float (`evaluate(names)`;
    agreement 0..1). With `baseline` (the plain export's agreement), the layers are kept in float on top of
    the best method when it beat the baseline (`evaluate(names, method)`). `refine` (for cheap tries) bisects
    between the last failing and the first passing count for fewer layers. When none passes, the best try is
    returned."""
    names = [r["node"] for r in worst_first(layers, key)]
    sizes, n = [], 1
    while n < min(max_layers, len(names)):
        sizes.append(n)
        n *= 2
    if names and max_layers > 0:
        sizes.append(min(max_layers, len(names)))
    tries, best = [], None

    def attempt(excluded: list[str], method: str | None) -> dict | None:
        nonlocal best
        record = {"excluded": len(excluded), **({"method": method} if method else {})}
        try:
            agreement = float(evaluate(excluded, method) if method else evaluate(excluded))
        except EdgeliteError as exc:
            tries.append({**record, "agreement": None, "error": str(exc)})
            return None
        tries.append({**record, "agreement": agreement})
        found = {"excluded": excluded, "agreement": agreement, **({"method": method} if method else {})}
        if best is None or agreement > best["agreement"]:
            best = found
        return found

    for method in methods:
        found = attempt([], method)
        if found and found["agreement"] >= gate:
            return {**found, "tries": tries, "passed": True}
    method = best.get("method") if best and baseline is not None and best["agreement"] > baseline else None
    failed = 0
    for size in sizes:
        found = attempt(names[:size], method)
        if found is None or found["agreement"] < gate:
            failed = size
            continue
        low, high = failed, size  # fails at `low` layers (or was not tried), passes at `high`
        while refine and high - low > 1:
            middle = (low + high) // 2
            trial = attempt(names[:middle], method)
            if trial is not None and trial["agreement"] >= gate:
                high, found = middle, trial
            else:
                low = middle
        return {**found, "tries": tries, "passed": True}
    return {**(best or {"excluded": [], "agreement": None}), "tries": tries, "passed": False}
