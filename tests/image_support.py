"""What the image head tests share: a small extractor and the generated normal / test images."""

from __future__ import annotations

from functools import lru_cache

from oddeye.core.synth import make_image_set

EXT = {"image_size": 96}


@lru_cache(maxsize=1)
def image_data() -> tuple[list, list]:
    """(20 normal training images (H, W, 3) uint8, 8 normal + 8 defective test samples), generated once."""
    train = [s.image for s in make_image_set(seed=1, n_normal=20, n_defect=0)]
    test = make_image_set(seed=2, n_normal=8, n_defect=8)
    return train, test
