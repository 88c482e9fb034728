"""Options and one-line descriptions that several commands share."""
from __future__ import annotations

import argparse


def preprocessing_options(p: argparse.ArgumentParser) -> None:
    """The same preprocessing options on every command, merged field by field over what the model carries."""
    g = p.add_argument_group("preprocessing (merged over what the model carries; see runtime/resolve.py)")
    g.add_argument("--preprocess", metavar="PRESET|SPEC.json",
                   help="a preset (mobilenet, unit, raw, caffe, torch: sets the normalisation) or a spec .json")
    g.add_argument("--resize", choices=["crop", "stretch"], help="centre crop, or the whole frame")
    g.add_argument("--crop-fraction", type=float, help="with --resize crop: the share of the shorter side kept")
    g.add_argument("--antialias", action=argparse.BooleanOptionalAction, default=None,
                   help="Pillow's antialiasing bilinear, or (--no-antialias) TFLite's RESIZE_BILINEAR")
    g.add_argument("--mean", type=float, nargs="+", metavar="V", help="pixel mean(s) in 0..255: (pixel - mean) / std")
    g.add_argument("--std", type=float, nargs="+", metavar="V", help="pixel std(s) in 0..255")
    g.add_argument("--channel-order", choices=["RGB", "BGR"])


def preprocess_choice(args) -> dict | None:
    """What the user said about preprocessing, as fields for the one resolver (None: nothing)."""
    from edgelite.resolve import merge, user_fields

    singles = {"resize": args.resize, "crop_fraction": args.crop_fraction, "antialias": args.antialias,
               "channel_order": args.channel_order, "mean": args.mean, "std": args.std}
    chosen = merge(user_fields(args.preprocess), singles)
    return chosen or None


def model_choice(model: str, backend: str | None = None, threads: int | None = None) -> dict:
    """A model argument as Classifier keywords: a file as given; a bundle folder (edgelite bundle) as the
    choice `edgelite tune` recorded there (tuning first when there is none for this machine), with the
    user's --threads over the recorded ones."""
    from pathlib import Path

    if not Path(model).is_dir():  # a model file: no need to import the tuner (cold start)
        return {"model": model, "backend": backend, "threads": threads}
    from edgelite.tune import is_bundle, open_choice

    if not is_bundle(model):
        return {"model": model, "backend": backend, "threads": threads}
    if backend:
        from edgelite.errors import EdgeliteError

        raise EdgeliteError(f"--backend does not apply to a bundle: {model}'s recorded choice names one "
                            "(edgelite tune chooses it)")
    choice = open_choice(model)
    return {"model": choice.path, "backend": choice.backend, "threads": threads or choice.threads,
            "options": choice.options}
