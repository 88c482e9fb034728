"""`edgelite train`: a classifier trained on a folder of class sub-folders (the workstation)."""
from __future__ import annotations

from .extras import require


def add(sub) -> None:
    p = sub.add_parser("train", help="train a classifier on a folder of class sub-folders",
                       description="Train on DATA_DIR/<class>/*: MobileNetV2 transfer learning (frozen backbone, "
                                   "then fine-tuning its last layers) or the small custom CNN. Seeded stratified "
                                   "split, augmentation, best epoch by validation accuracy, evaluation and plots; "
                                   "saves model.keras with its labels and preprocessing.")
    p.add_argument("data", help="folder with one sub-folder per class")
    p.add_argument("--recipe", choices=["mobilenetv2", "cnn"], default="mobilenetv2")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--size", type=int, help="input size (default 224 for mobilenetv2, 150 for cnn)")
    p.add_argument("--epochs", type=int, help="epochs (default 8 for mobilenetv2's frozen stage, 20 for cnn)")
    p.add_argument("--alpha", type=float, default=1.0, help="MobileNetV2 width (default 1.0)")
    p.add_argument("--weights", default="imagenet",
                   help="MobileNetV2 backbone: imagenet (Keras download), none, or a local ImageNet model file; "
                        "or a previous run's model.keras, to resume (either recipe)")
    p.add_argument("--fine-tune-last", type=int, default=30, help="backbone layers to fine-tune (default 30; 0: none)")
    p.add_argument("--fine-tune-epochs", type=int, default=6)
    p.add_argument("--val-split", type=float, default=0.2)
    p.add_argument("--val", help="a separate validation folder (same class folders)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-augment", action="store_true", help="train without flip/rotation/zoom")
    p.add_argument("--cache", metavar="DIR",
                   help="keep decoded pixels in DIR (one file per split, keyed by the files and preprocessing) "
                        "and reuse them in later runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--export", action="store_true", help="run `edgelite convert` on the result (into OUT/artifacts)")
    p.add_argument("--force", action="store_true")
    p.set_defaults(run=run)


def run(args) -> int:
    require("train", "tensorflow", "sklearn", "matplotlib", *(("tf2onnx", "onnx") if args.export else ()))
    from edgelite.train.recipes import train

    trained = train(args.data, args.out, recipe=args.recipe, size=args.size, epochs=args.epochs,
                    fine_tune_epochs=args.fine_tune_epochs, fine_tune_last=args.fine_tune_last, alpha=args.alpha,
                    weights=args.weights, val_split=args.val_split, val_dir=args.val, batch_size=args.batch_size,
                    seed=args.seed, augment=not args.no_augment, force=args.force, cache=args.cache)
    print(f"validation accuracy {trained.val_accuracy:.1%} ({len(trained.val)} images), "
          f"{trained.seconds:.0f}s of training; saved {trained.model_path}")
    print(f"plots: {trained.files['history_plot']}, {trained.files['confusion_plot']}")
    if not args.export:
        return 0
    from edgelite.train.export import export

    exported = export(trained, force=args.force)
    print("validation accuracy: " + ", ".join(f"{name} {top1:.1%}" for name, top1 in exported.top1.items()))
    return 0 if exported.ok else 1
