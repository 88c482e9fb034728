"""Every keras.applications family through `edgelite convert`, as a new user runs it: one table.

    python -m edgelite.benchmarks.keras_families --out DIR [--families MobileNetV3Small ...] [--timeout 1800]

Builds each family with random weights (`weights=None`, seed 0: no downloads; structure and speed only, so
agreement figures say nothing of accuracy), saves it as .keras, runs `edgelite convert MODEL --calib
imagenet-sample --out ...` in a process of its own (no other flag), and prints a row per family: exit, wall
seconds, formats that passed, the preprocessing convert recorded, GFLOPs (2 x the multiply-adds of the
convolution and dense layers at batch 1), wall seconds per GFLOP, tflite-int8 against tflite-fp32 ms per
image (one thread, each file timed alone in alternating rounds: edgelite.timing), and the noise floor: how many
of 100 big-cats photos the tflite-fp32 export itself answers differently when their pixels move by +-0.5 level
(edgelite.noise; strict, and with the gate's near-ties), what an int8 file of that model is up against.
`Transfer` is a headless EfficientNetB0 under a user's Dense head (the transfer-learning shape `edgelite train`
makes), `TransferV3` a headless MobileNetV3Large (its dynamic input left as keras.applications builds it
headless) under a Dense(10) head. Writes keras_families.json in --out; each family's convert output stays in
--out/NAME, its stdout and stderr (progress bars included) in --out/NAME.convert.log.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgelite.errors import EdgeliteError, guarded
from edgelite.files import write_atomic

from .convert_runs import convert_cli, speed
from .shared_data import shared_dir, spread

# smallest and fastest first
FAMILIES = ["MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0", "Transfer", "TransferV3", "NASNetMobile",
            "DenseNet121", "ResNet50", "ResNet50V2", "EfficientNetV2B0", "ConvNeXtTiny", "EfficientNetB1",
            "EfficientNetB2", "EfficientNetB3", "InceptionV3", "Xception", "VGG16"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the models, artifacts and JSON")
    parser.add_argument("--families", nargs="+", default=FAMILIES, help=f"default: {' '.join(FAMILIES)}")
    parser.add_argument("--calib", type=Path, help="calibration folder (default: shared imagenet-sample)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per family's convert (default 1800)")
    parser.add_argument("--rounds", type=int, default=4, help="timing rounds (default 4)")
    args = parser.parse_args(argv)
    return guarded(lambda: run(args), prog="keras_families")


def run(args) -> int:
    unknown = [f for f in args.families if f not in FAMILIES]
    if unknown:
        raise EdgeliteError(f"unknown families {', '.join(unknown)} (choose from {', '.join(FAMILIES)})")
    calib = args.calib or shared_dir() / "data" / "imagenet-sample"
    if not calib.is_dir():
        raise EdgeliteError(f"no calibration folder {calib}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for family in args.families:
        rows.append(one_family(family, calib, args))
        print(table_line(rows[-1]), flush=True)
        write_atomic(args.out / "keras_families.json", json.dumps(rows, indent=1))
    print("\n" + table(rows))
    return 0


def build(family: str):
    """The family with random weights, seed 0, as keras.applications builds it by default."""
    import keras

    keras.utils.set_random_seed(0)
    if family == "Transfer":
        base = keras.applications.EfficientNetB0(weights=None, include_top=False, pooling="avg",
                                                 input_shape=(224, 224, 3))
        inputs = keras.Input((224, 224, 3))
        x = keras.layers.Dropout(0.2)(base(inputs))
        return keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(x), name="my_classifier")
    if family == "TransferV3":  # the base's own input: (None, None, 3), as include_top=False leaves it
        base = live(keras.applications.MobileNetV3Large(weights=None, include_top=False, pooling="avg"))
        inputs = keras.Input((None, None, 3))
        x = keras.layers.Dropout(0.2)(base(inputs))
        return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x), name="my_v3_classifier")
    return live(getattr(keras.applications, family)(weights=None))


def live(model):
    """The random model with a live output. Some families' random weights shrink every activation layer after
    layer (MobileNetV3Small: 1e-9 before the softmax, whose 1000 outputs are then exactly 0.001, in Keras itself:
    nothing to check an export against); others grow it (EfficientNetB1-B3: features of 1e4 before the head, a
    softmax of exactly 1 and 0 whose top class float32 rounding alone decides). There, each BatchNormalization's
    moving mean and variance are set, in graph order, to its input's statistics on 16 big-cats photos (not the
    calibration folder; raw pixels, as these families, which normalise inside, take them): what a few training
    steps would make them, every activation at unit scale on photos. Random noise is not enough: its statistics
    differ from photos', and a deep network amplifies the difference block by block (EfficientNetB1's activations
    still grew to 1e3 with statistics from noise). Families whose output is neither dead nor saturated are left
    alone."""
    import keras
    import numpy as np

    from edgelite.preprocess import PreprocessSpec, batch

    size = tuple(model.inputs[0].shape[1:3])
    photos = sorted((shared_dir() / "data" / "big-cats").rglob("*.jpg"))
    x = batch(photos[:: max(1, len(photos) // 16)][:16],
              PreprocessSpec(size=(224, 224) if None in size else size, preset="raw"))
    scores = np.asarray(model(x, training=False))
    if np.ptp(scores, axis=1).max() > 1e-6 and scores.max(axis=1).min() < 0.999:
        return model
    for layer in model.layers:
        if type(layer).__name__ != "BatchNormalization":
            continue
        inputs = np.asarray(keras.Model(model.inputs[0], layer.input)(x, training=False), np.float64)
        axes = tuple(range(inputs.ndim - 1))
        gamma, beta, _, _ = layer.get_weights()
        layer.set_weights([gamma, beta, inputs.mean(axes), inputs.var(axes) + 1e-3])
    return model


def one_family(family: str, calib: Path, args) -> dict:
    model = build(family)
    path = args.out / f"{family}.keras"
    model.save(path)
    from edgelite.convert.keras_variants import fixed_input

    gflops = 2 * multiply_adds(fixed_input(model)) / 1e9  # at the size convert takes
    out = args.out / family
    log = args.out / f"{family}.convert.log"  # all it printed
    row = {"family": family, **convert_cli(path, calib, out, args.timeout, log=log), "gflops": gflops,
           "input": list(model.inputs[0].shape[1:])}
    row["s_per_gflop"] = row["wall_s"] / gflops
    row.update(speed(out, family, args.rounds))
    fp32 = out / f"{family}_fp32.tflite"
    if fp32.exists():
        from edgelite.files import find_images
        from edgelite.noise import of_file

        photos = spread(find_images([shared_dir() / "data" / "big-cats"]), 100)
        row["noise_floor"] = of_file(fp32, photos, levels=(0.5,))[0]
    return row


def multiply_adds(model) -> int:
    """Multiply-adds of the convolution and dense layers at batch 1 (nested models included)."""
    import numpy as np

    total = 0
    for layer in getattr(model, "layers", []):
        if hasattr(layer, "layers"):
            total += multiply_adds(_at_call_size(layer))
            continue
        weights = {w.path.split("/")[-1]: tuple(w.shape) for w in layer.weights}
        try:  # the layer's last call: a model given a fixed input (convert's) calls its layers again
            positions = int(np.prod(layer._inbound_nodes[-1].outputs[0].shape[1:-1]))
        except (AttributeError, IndexError, ValueError, TypeError):
            continue
        for name in ("kernel", "depthwise_kernel", "pointwise_kernel"):
            if name in weights:
                total += positions * int(np.prod(weights[name]))
    return total


def _at_call_size(model):
    """A nested model with a dynamic input (a headless MobileNetV3 base) at the size it was last called with: its
    own layers know no size until called on a fixed input."""
    from edgelite.convert.keras_variants import fixed_input

    try:
        called = tuple(model._inbound_nodes[-1].input_tensors[0].shape[1:3])
    except (AttributeError, IndexError):
        return model
    if None in tuple(model.inputs[0].shape[1:3]) and None not in called:
        return fixed_input(model, called)
    return model


def table_line(row: dict) -> str:
    speed = (f"{row['int8_ms']:.1f} / {row['fp32_ms']:.1f}" if "int8_ms" in row else "-")
    failed = "; ".join(f"{f}: {d}" for f, d in row["failed"].items())
    floor = row.get("noise_floor")
    floor = f"{floor['strict_median']:.0%} / {floor['gate_agreement_median']:.0%}" if floor else "-"
    return (f"| {row['family']} | {row['exit']} | {row['wall_s']:.0f} | {len(row['passed'])}/6 | "
            f"{row['preprocessing'] or '-'} | {row['gflops']:.2f} | {row['s_per_gflop']:.0f} | {speed} | {floor} | "
            f"{failed or '-'} |")


def table(rows: list) -> str:
    head = ("| family | exit | wall s | passed | preprocessing recorded | GFLOPs | s/GFLOP | int8 / fp32 ms | "
            "fp32 kept under +-0.5 px (strict / near-ties) | what failed |\n|---|---|---|---|---|---|---|---|---|---|")
    return "\n".join([head, *map(table_line, rows)])


if __name__ == "__main__":
    sys.exit(main())
