"""Top-1 accuracy of ImageNet classifiers' artifacts on photos that calibration never saw.

    python -m edgelite.benchmarks.heldback ARTIFACT [ARTIFACT ...] [--out heldback.json]

Two labelled sets, both held back from `edgelite convert --calib ../shared/data/imagenet-sample`:
- the ImageNet sample's held-back half (125 photos, 125 classes: the split `convert` makes);
- the big-cats photos of the 7 classes ImageNet has (1096 photos: leopard, jaguar, cheetah, lion,
  tiger, snow leopard, cougar), which calibration never touches.
A 1.5-point bar needs the second: on 125 photos one photo is 0.8 point, and the difference of two
models that disagree on 15 photos has a standard error near 3 points. Prints a table (the first
artifact is the reference the differences are taken from) and writes JSON.
"""
from __future__ import annotations

import argparse
import platform
from pathlib import Path

from tqdm import tqdm

from edgelite import Classifier
from edgelite.benchmarks.shared_data import IMAGENET_CATS, SHARED
from edgelite.classifier import background_offset
from edgelite.convert.samples import split_images
from edgelite.errors import EdgeliteError, guarded
from edgelite.files import find_images, write_json
from edgelite.labeled import labeled_images


def held_back(classes: int, imagenet: Path = SHARED / "data/imagenet-sample",
              big_cats: Path = SHARED / "data/big-cats") -> dict[str, list[tuple[Path, int]]]:
    """{set name: [(photo, true index)]} for a model with `classes` outputs (1001: index 0 = background)."""
    items = labeled_images(imagenet, None, classes)
    truth = dict(items)
    _, check = split_images([p for p, _ in items])
    offset = background_offset(classes, 1000)
    cats = [(p, IMAGENET_CATS[p.parent.name] + offset) for p in find_images([big_cats])
            if p.parent.name in IMAGENET_CATS]
    return {"imagenet held-back": [(p, truth[p]) for p in check], "big-cats (ImageNet classes)": cats}


def top1(classifier: Classifier, items: list[tuple[Path, int]], progress=None) -> float:
    right = 0
    for path, truth in items:
        right += int(classifier.scores(classifier.prepare(path))[0].argmax() == truth)
        if progress is not None:
            progress.update()
    return right / len(items)


def measure(artifacts: list[Path]) -> dict:
    """Top-1 per artifact on each held-back set and on both together."""
    rows, sets = [], None
    for path in artifacts:
        clf = Classifier(path)
        sets = sets or held_back(clf.output.shape[-1])
        row = {"artifact": path.name, "format": clf.metadata.get("format", path.suffix[1:])}
        with tqdm(total=sum(len(i) for i in sets.values()), desc=path.name, leave=False) as progress:
            for name, items in sets.items():
                row[name] = top1(clf, items, progress)
        row["both"] = sum(row[n] * len(i) for n, i in sets.items()) / sum(len(i) for i in sets.values())
        rows.append(row)
    return {"sets": {n: len(i) for n, i in sets.items()}, "rows": rows, "machine": platform.machine()}


def table(result: dict) -> str:
    names = [*result["sets"], "both"]
    counts = {**result["sets"], "both": sum(result["sets"].values())}
    lines = ["| artifact | " + " | ".join(f"{n} ({counts[n]})" for n in names) + " |",
             "|---|" + "---:|" * len(names)]
    base = result["rows"][0]
    for row in result["rows"]:
        cells = [f"{row[n]:.1%}" + ("" if row is base else f" ({(row[n] - base[n]) * 100:+.1f} pt)") for n in names]
        lines.append(f"| {row['format']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifacts", nargs="+", type=Path, help="the first is the reference (e.g. the fp32 export)")
    parser.add_argument("--out", type=Path, default=Path("heldback.json"))
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    args = parser.parse_args(argv)
    return guarded(lambda: _run(args))


def _run(args) -> int:
    if args.out.exists() and not args.force:
        raise EdgeliteError(f"{args.out} already exists (use --force to overwrite)")
    for path in args.artifacts:
        if not path.is_file():
            raise EdgeliteError(f"no such file: {path}")
    result = measure(args.artifacts)
    print(table(result))
    write_json(args.out, result, args.force)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
