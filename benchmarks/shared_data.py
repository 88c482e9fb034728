"""Where the project's shared data is (the measuring programs' models and photos, the tests'): $EDGELITE_SHARED,
else `shared/` beside the repository."""
from __future__ import annotations

import os
from pathlib import Path


def shared_dir() -> Path:
    return Path(os.environ.get("EDGELITE_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def spread(photos: list, count: int) -> list:
    """`count` photos taken evenly through a sorted list (every class folder of big-cats gets its share)."""
    return photos[:: max(1, len(photos) // count)][:count]


SHARED = shared_dir()
# what the measuring programs use when given nothing: Google's uint8 MobileNetV2, its labels, the sample photos
DEFAULT_MODEL = SHARED / "data/third-party-models/mobilenet_v2_1.0_224_quant.tflite"
DEFAULT_LABELS = SHARED / "data/third-party-models/imagenet_labels.txt"
DEFAULT_IMAGES = SHARED / "data/imagenet-sample"

# big-cats folders that are ImageNet classes -> their Keras ImageNet index
IMAGENET_CATS = {"puma": 286, "african_leopard": 288, "snow_leopard": 289, "jaguar": 290, "lions": 291,
                 "tiger": 292, "cheetah": 293}
