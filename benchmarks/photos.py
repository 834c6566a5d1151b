"""Compose a colour, photo-sized dataset offline: objects pasted onto crops of real photos.

The objects are Fashion-MNIST garments (the first NINE classes; "ankle boot" is left out so the
set has 9 classes like the one issue 14 was measured on), each scaled to a random size (20-70%
of the frame's height), rotated a little, coloured with a random tint and a brightness texture,
and pasted by its own intensity as alpha onto a random crop of one of ten bundled photos
(scikit-image's astronaut, coffee, chelsea, rocket, immunohistochemistry, hubble_deep_field,
retina, colorwheel; scikit-learn's china and flower), randomly mirrored and colour-shifted.
Saved as 320x240 JPEG (quality 90) in ``OUT/{train,val,test}/<class>/``, a layout
``imgclf train`` reads as given splits.

Usage:
    python benchmarks/photos.py OUT [--train 5000] [--val 500] [--test 1000] [--seed 0]

The same arguments always write the same files (seeded), on any machine with the same
scikit-image and scikit-learn sample images.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imgclf.data.datasets import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, _fashion_split  # noqa: E402
from imgclf.data.layouts import DATASET_MARKER  # noqa: E402

WIDTH, HEIGHT = 320, 240
CLASSES = FASHION_MNIST_CLASSES[:9]
BACKGROUNDS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
               "retina", "colorwheel")


def backgrounds() -> list[np.ndarray]:
    import skimage.data
    from sklearn.datasets import load_sample_images

    return [getattr(skimage.data, name)() for name in BACKGROUNDS] + list(load_sample_images().images)


def compose(rng: np.random.Generator, garment: np.ndarray, photos: list[np.ndarray]) -> np.ndarray:
    """One 320x240 RGB image: a tinted garment pasted on a random crop of a random photo."""
    photo = photos[rng.integers(len(photos))]
    h, w = photo.shape[:2]
    ch = int(rng.uniform(0.4, 1.0) * min(h, w * HEIGHT / WIDTH))
    cw = int(ch * WIDTH / HEIGHT)
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    back = Image.fromarray(photo[y:y + ch, x:x + cw]).resize((WIDTH, HEIGHT), Image.BILINEAR)
    back = np.asarray(back, np.float32)
    if rng.random() < 0.5:
        back = back[:, ::-1]
    back = np.clip(back * rng.uniform(0.7, 1.3, 3) + rng.uniform(-20, 20), 0, 255)

    size = int(rng.uniform(0.2, 0.7) * HEIGHT)
    obj = Image.fromarray(garment).resize((size, size), Image.BICUBIC).rotate(rng.uniform(-20, 20),
                                                                              Image.BILINEAR)
    alpha = np.asarray(obj, np.float32) / 255.0
    tint = rng.uniform(0, 255, 3)
    texture = 0.6 + 0.4 * alpha[..., None]
    colour = np.clip(tint * texture + rng.uniform(-15, 15, (size, size, 3)), 0, 255)
    a = np.clip(alpha * 1.6, 0, 1)[..., None]
    oy, ox = rng.integers(0, HEIGHT - size + 1), rng.integers(0, WIDTH - size + 1)
    patch = back[oy:oy + size, ox:ox + size]
    back[oy:oy + size, ox:ox + size] = a * colour + (1 - a) * patch
    return back.astype(np.uint8)


def write(out: Path, counts: dict[str, int], seed: int) -> dict:
    rng = np.random.default_rng(seed)
    photos = backgrounds()
    train_images, train_labels = _fashion_split(Path(FASHION_MNIST_DIR), "train")
    test_images, test_labels = _fashion_split(Path(FASHION_MNIST_DIR), "test")
    written: dict[str, dict[str, int]] = {}
    for split, n in counts.items():
        # test objects come from Fashion-MNIST's test images, train/val from its training images
        images, labels = (test_images, test_labels) if split == "test" else (train_images, train_labels)
        pool = [rng.permutation(np.flatnonzero(labels == c)) for c in range(len(CLASSES))]
        offset = {"train": 0, "val": 30000 // len(CLASSES) // 2, "test": 0}[split]
        written[split] = {}
        for c, name in enumerate(CLASSES):
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            k = n // len(CLASSES) + (c < n % len(CLASSES))
            for i in range(k):
                index = pool[c][(offset + i) % len(pool[c])]
                Image.fromarray(compose(rng, images[index], photos)).save(folder / f"{i:05d}.jpg", quality=90)
            written[split][name] = k
    summary = {"dataset": "photos (benchmarks/photos.py)", "size": [WIDTH, HEIGHT], "seed": seed,
               "counts": written}
    (out / DATASET_MARKER).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"{args.out}: folder is not empty; choose a new one")
    summary = write(args.out, {"train": args.train, "val": args.val, "test": args.test}, args.seed)
    print(json.dumps(summary["counts"]))


if __name__ == "__main__":
    main()
