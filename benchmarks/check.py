"""How well `imgclf check` finds planted problems, and how long it takes on full Fashion-MNIST.

Two datasets are composed as path,label,split CSVs (so the splits are exactly as planted):

* fashion-mnist-1k: 100 training and 10 test images per class (imgclf datasets), 10% of the
  training images held out as val;
* photos: 256x192 JPEG tiles cut on a grid (no two overlap) from the scikit-image and
  scikit-learn sample photos, one class per photo, 15% val and 15% test.

Into each go: exact copies of training images into val/test (leaks) and within train, and
resized, JPEG-recompressed, slightly cropped (4% a side) and brightened (+25%) copies of
training images into val/test; then 5% of the remaining training labels are flipped. Scores:

* leak: the val/test copies the check lists as leaked (``HealthReport.leaked``) against those
  planted; precision counts every listed image, natural duplicates of the data included;
* near: planted copies (every kind) found in one group with their original, against all images
  the check would drop as duplicates;
* label: the planted flips among the top-k ranked suspects, k = the number of flips (and 2k).

The thumbnail threshold (``health.nearcopy.NEAR_THUMB``) was chosen on the plants of seeds 0
and 1; RESULTS.md reports seed 2.

Usage:
    python benchmarks/check.py --seed 2   # both planted sets
    python benchmarks/check.py --only-full --look near.png  # `imgclf check` on all 70,000
                                          # Fashion-MNIST images (CPU s per stage, peak RSS)
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

VARIANTS = ("exact", "resized", "jpeg", "cropped", "brightened")


def fashion_items(root: Path, seed: int) -> list[list]:
    from imgclf.data.datasets import write_fashion_mnist
    write_fashion_mnist(root / "fm", train_per_class=100, test_per_class=10, seed=seed)
    rng = np.random.default_rng(seed)
    items = []
    for split in ("train", "test"):
        for path in sorted((root / "fm" / split).rglob("*.png")):
            s = split if split == "test" else ("val" if rng.random() < 0.1 else "train")
            items.append([str(path), path.parent.name, s])
    return items


def photo_items(root: Path, seed: int) -> list[list]:
    import skimage.data as sk
    from sklearn.datasets import load_sample_images
    photos = {name: getattr(sk, name)() for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
                                                     "immunohistochemistry", "coins", "camera")}
    for name, img in zip(("china", "flower"), load_sample_images().images):
        photos[name] = img
    rng = np.random.default_rng(seed)
    out, items = root / "photos", []
    for name, img in photos.items():
        img = np.asarray(img)
        img = Image.fromarray(np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]).convert("RGB")
        tile = 96
        (out / name).mkdir(parents=True, exist_ok=True)
        for y in range(0, img.height - tile + 1, tile):
            for x in range(0, img.width - tile + 1, tile):
                path = out / name / f"{y}_{x}.jpg"
                if np.asarray(img.crop((x, y, x + tile, y + tile)).convert("L")).std() < 24:
                    continue  # featureless (sky, background): such tiles are near copies of each other
                img.crop((x, y, x + tile, y + int(tile * 0.75))).resize((256, 192), Image.BILINEAR).save(path, quality=92)
                r = rng.random()
                items.append([str(path), name, "val" if r < 0.15 else "test" if r < 0.3 else "train"])
    return items


def variant(path: str, kind: str, out: Path) -> str:
    img = Image.open(path).convert("RGB")
    suffix = Path(path).suffix
    if kind == "resized":
        img = img.resize((int(img.width * 1.5), int(img.height * 1.5)), Image.BICUBIC)
    elif kind == "jpeg":
        suffix = ".jpg"
    elif kind == "cropped":
        dx, dy = max(1, round(img.width * 0.04)), max(1, round(img.height * 0.04))
        img = img.crop((dx, dy, img.width - dx, img.height - dy))
    elif kind == "brightened":
        img = ImageEnhance.Brightness(img).enhance(1.25)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{kind}-{Path(path).parent.name}-{Path(path).stem}{suffix}"
    if kind == "exact":
        target.write_bytes(Path(path).read_bytes())
    else:
        img.save(target, quality=60 if kind == "jpeg" else 92)
    return str(target)


def plant(items: list[list], out: Path, seed: int, per_kind: int = 8) -> tuple[list[list], dict]:
    """Add copies and flip labels; returns the new items and what was planted (by path)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    train = [i for i, it in enumerate(items) if it[2] == "train"]
    sources = rng.choice(train, size=per_kind * (len(VARIANTS) + 1), replace=False)
    truth = {"pairs": [], "leaks": [], "flips": []}
    new = [list(it) for it in items]
    for n, src in enumerate(sources):
        kind = VARIANTS[n % len(VARIANTS)] if n < per_kind * len(VARIANTS) else "exact"
        within = n >= per_kind * len(VARIANTS)  # the last block: exact copies inside train
        copy = variant(items[src][0], kind, out / ("within" if within else "leak"))
        split = "train" if within else ("val" if n % 2 else "test")
        new.append([copy, items[src][1], split])
        truth["pairs"].append((items[src][0], copy, kind))
        if not within:
            truth["leaks"].append(copy)
    classes = sorted({it[1] for it in items})
    used = set(sources.tolist())
    candidates = [i for i in train if i not in used]
    for i in rng.choice(candidates, size=round(0.05 * len(train)), replace=False):
        new[i][1] = str(rng.choice([c for c in classes if c != new[i][1]]))
        truth["flips"].append(new[i][0])
    return new, truth


def score(report, truth: dict) -> dict:
    index = {p: i for i, p in enumerate(report.paths)}
    group_of = {i: n for n, g in enumerate(report.groups) for i in g.members}
    leaked = {report.paths[i] for i in report.leaked()}
    found_pairs = [p for p in truth["pairs"] if group_of.get(index[p[0]], -1) == group_of.get(index[p[1]], -2)]
    planted_copies = {c for _, c, _ in found_pairs}
    dropped = [report.paths[i] for g in report.groups for i in g.members[1:]]
    planted_all = {c for _, c, _ in truth["pairs"]} | {s for s, _, _ in truth["pairs"]}
    ranked = [report.paths[s.index] for s in report.label_issues]
    flips, k = set(truth["flips"]), len(truth["flips"])
    per_kind = {kind: f"{sum(p[2] == kind for p in found_pairs)}/{sum(p[2] == kind for p in truth['pairs'])}"
                for kind in VARIANTS}
    return {
        "leak": {"recall": round(len(leaked & set(truth["leaks"])) / len(truth["leaks"]), 3),
                 "precision": round(len(leaked & set(truth["leaks"])) / max(1, len(leaked)), 3),
                 "listed": len(leaked)},
        "near": {"recall": round(len(planted_copies) / len(truth["pairs"]), 3),
                 "precision": round(sum(p in planted_all for p in dropped) / max(1, len(dropped)), 3),
                 "listed": len(dropped), "found_by_kind": per_kind},
        "label": {"flipped": k, "suspects": len(ranked),
                  "recall_at_k": round(len(flips & set(ranked[:k])) / k, 3),
                  "precision_at_k": round(len(flips & set(ranked[:k])) / k, 3),
                  "recall_at_2k": round(len(flips & set(ranked[:2 * k])) / k, 3),
                  "precision_at_2k": round(len(flips & set(ranked[:2 * k])) / (2 * k), 3),
                  "recall_all": round(len(flips & set(ranked)) / k, 3),
                  "precision_all": round(len(flips & set(ranked)) / max(1, len(ranked)), 3)},
        "seconds": report.seconds}


def run_planted(name: str, items: list[list], root: Path, seed: int) -> dict:
    from imgclf.data import load_dataset
    from imgclf.health import check_dataset
    planted, truth = plant(items, root / f"{name}-planted", seed)
    csv_path = root / f"{name}.csv"
    with open(csv_path, "w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "split"]] + planted)
    start = time.perf_counter()
    report = check_dataset(load_dataset(csv_path, seed=seed), seed=seed)
    result = {"dataset": name, "images": len(planted), **score(report, truth),
              "wall_s": round(time.perf_counter() - start, 1)}
    return result


def montage(report: dict, out: str, rows: int = 12) -> None:
    """The first ``rows`` near groups of a --json report side by side (at most 6 images a row,
    3x size) to judge by eye whether they are copies or look-alikes."""
    groups = [g for g in report["groups"] if g["kind"] == "near"][:rows]
    cell = 84
    sheet = Image.new("L", (6 * (cell + 4), max(1, len(groups)) * (cell + 4)), 128)
    for r, g in enumerate(groups):
        for c, image in enumerate(g["images"][:6]):
            sheet.paste(Image.open(image["path"]).convert("L").resize((cell, cell)), (c * (cell + 4), r * (cell + 4)))
    sheet.save(out)


def run_full(root: Path, look: str | None = None) -> dict:
    """`imgclf check` on all 70,000 Fashion-MNIST images, in a child process (peak RSS); with
    ``look``, a montage of its first near groups is saved there."""
    from imgclf.data.datasets import write_fashion_mnist
    write_fashion_mnist(root / "fashion-full")
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "imgclf", "check", str(root / "fashion-full"),
                           "--json"], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    def field(name: str) -> float:
        return float(next(line.split()[-1] for line in proc.stderr.splitlines() if name in line))
    report = json.loads(proc.stdout)
    if look:
        montage(report, look)
    return {"dataset": "fashion-mnist (70,000)", "wall_s": round(wall, 1),
            "cpu_s": round(field("User time") + field("System time"), 1),
            "peak_rss_gb": round(field("Maximum resident") / 2**20, 2), "counts": report["counts"],
            "seconds": report["seconds"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--full", action="store_true", help="also time the full Fashion-MNIST")
    p.add_argument("--only-full", action="store_true")
    p.add_argument("--look", metavar="PNG", help="with --full: save the first near groups found there as a montage")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="imgclf-check-bench-") as tmp:
        root = Path(tmp)
        results = []
        if not args.only_full:
            for name, build in (("fashion-mnist-1k", fashion_items), ("photos", photo_items)):
                results.append(run_planted(name, build(root, args.seed), root, args.seed))
                print(json.dumps(results[-1]), flush=True)
        if args.full or args.only_full:
            results.append(run_full(root, args.look))
            print(json.dumps(results[-1]), flush=True)
    print(f"# {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
