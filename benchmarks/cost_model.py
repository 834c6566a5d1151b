"""A cost model on paper: wall time and memory per worker of `imgclf train` (and of a sharded
`imgclf predict`) for 10k, 100k and 1M images at 96 and 224 px with 1, 4, 16 and 64 workers,
from rates measured on the machine it runs on.

The rates come from the planner's own probe (imgclf.training.probe: the frozen forward pass,
a fine-tuning step of the top blocks, decoding a sample of photo-sized JPEGs), measured at 96 and
at 224 px; the recipe per data size is the planner's target recipe (training.planner). Every
stage's seconds come from the planner's expected_stages, then split per worker:

- today (issue 7): every worker decodes everything, caches every view and predicts the whole
  test set; only the steps (head and fine-tuning epochs) are divided by R;
- built (issue 19, as built: the cache sharded and exchanged): checking the files, decoding,
  the cache, validation and the test set are divided by R (each worker checks, decodes and holds
  only its shard of the images; the check's results, about 120 bytes a file, are gathered), each
  worker receives the others' (R-1)/R of the cache over the network, and holds all of the cache;
  the head phase is trained whole by every worker on its copy of the cache (no all-reduce a step;
  a global batch of 32R rows a step, timed here at 32 and 2,048 rows);
- sharded (not built: each worker keeping only its shard of the cache): the same, without the
  exchange, the head trained on shards with an all-reduce a step, and all of the memory divided by R.
The "check" part is imgclf.data.load_dataset's (it reads, hashes and decodes each file, a JPEG
at 1/8 scale, before the splits are made), timed by load_dataset on a folder of the sample photos.
The fine-tuning steps are divided by R and pay a gradient all-reduce per step (a ring: 2(R-1)/R
of the trainable weights over the network, plus 2(R-1) latencies).

Assumptions (change them with the flags): 10 Gbit/s between machines, 50 us latency a hop, a
per-worker batch of 32 (global batch 32R: raise --batch-size with the workers), float16 caches,
decoded images kept in memory as uint8. One worker's compute is this machine's (2 cores here).

Example:
    python benchmarks/cost_model.py --gbit 10
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

SIZES, COUNTS, WORKERS = (96, 224), (10_000, 100_000, 1_000_000), (1, 4, 16, 64)
CHECK_BYTES = 120  # one file's check result as the workers gather it (JSON: size, mode, format, sha256)


def photos(folder: Path, n: int = 48) -> list[str]:
    """n photo-sized JPEGs (320x240, crops of scikit-image's sample photos) to time decoding on."""
    from PIL import Image
    from skimage import data
    sources = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    paths = []
    for i in range(n):
        image = Image.fromarray(sources[i % len(sources)]).resize((320 + i % 7, 240))
        paths.append(str(folder / f"{i}.jpg"))
        image.save(paths[-1], quality=90)
    return paths


def check_seconds(folder: Path, sample: list[str]) -> float:
    """Seconds per file of load_dataset's check (find, read, hash, decode), on ``sample`` laid
    out as two class folders."""
    import shutil
    import time

    from imgclf.data import load_dataset
    for i, path in enumerate(sample):
        (folder / "check" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / "check" / f"c{i % 2}" / Path(path).name)
    load_dataset(folder / "check", keep_mb=0)  # the page cache warm, as a worker's second pass is not
    start = time.perf_counter()
    load_dataset(folder / "check", keep_mb=0)
    return (time.perf_counter() - start) / len(sample)


def head_step_seconds(dim: int = 1280, classes: int = 10) -> tuple[float, float]:
    """Seconds of one head training step (imgclf.training.steps, FusedAdam) on pooled features,
    at global batches of 32 and of 2,048 rows: what a multi-worker run's head phase costs each worker."""
    import time

    import keras
    import tensorflow as tf

    from imgclf.training.model import build_head
    from imgclf.training.steps import FusedAdam, Steps
    head = build_head(dim, classes)
    optimizer = FusedAdam(1e-3)
    optimizer.build(head.trainable_variables)
    steps = Steps(head, optimizer, keras.losses.CategoricalCrossentropy(reduction="none"), tf.constant([], tf.float32),
                  5, tf.distribute.get_strategy())
    out = []
    for rows in (32, 2048):
        x, y = tf.random.normal((rows, dim)), tf.one_hot(tf.range(rows) % classes, classes)
        for _ in range(5):
            steps.train(x, y)
        start = time.perf_counter()
        for _ in range(50):
            steps.train(x, y)
        out.append((time.perf_counter() - start) / 50)
    return out[0], out[1]


def measure(size: int, sample: list[str], blocks: int):
    """(MeasuredCosts at ``size``, the Network) from the planner's probe."""
    import time

    from imgclf.config import load_config
    from imgclf.training.model import build_network
    from imgclf.training.probe import probe
    cfg = load_config(None, {"data.batch_size": 32})
    start = time.perf_counter()
    net = build_network("efficientnet_lite0", 10, size, weights="none")
    return probe(net, sample, cfg, time.perf_counter() - start, blocks), net


def top_weights(net, blocks: int) -> int:
    """Trainable weights when the top ``blocks`` and the head train: what the all-reduce sums."""
    import keras
    top = [layer for group in net.spec.layer_blocks(net.base)[-blocks:] for layer in group] if blocks else []
    top = [layer for layer in top if not isinstance(layer, keras.layers.BatchNormalization)]  # BN stays frozen
    return sum(int(np.prod(w.shape)) for layer in top for w in layer.weights) + net.head.count_params()


def cut_values(net, blocks: int) -> int:
    """Values per image cached at the cut below the top ``blocks`` (pooled features when 0)."""
    if not blocks:
        return int(net.base.output_shape[-1])
    bottom, _ = net.split_base(blocks=blocks)
    return int(np.prod(bottom.output_shape[1:]))


def ring_seconds(steps: int, weights: int, r: int, args) -> float:
    """A ring all-reduce of float32 ``weights`` over ``r`` workers, ``steps`` times."""
    if r == 1:
        return 0.0
    return steps * (2 * (r - 1) / r * weights * 4 / (args.gbit * 1.25e8) + 2 * (r - 1) * args.latency_us * 1e-6)


def rows(costs, net, size: int, args, check_s: float = 0.0, head_s: tuple[float, float] = (0.002, 0.002)):
    from imgclf.training.planner import Counts, Fixed, expected_stages, target_recipe
    for n in COUNTS:
        counts = Counts(int(n * 0.8), n // 10, n // 10)
        recipe = Fixed(image_size=size).apply(target_recipe(counts, 320, 224, net.spec.num_blocks))
        recipe = min((type(recipe)(**{**recipe.__dict__, "runtime": rt}) for rt in costs.runtimes),
                     key=lambda r: sum(expected_stages(r, counts, costs).values()))
        st = expected_stages(recipe, counts, costs)
        views = max(1, min(recipe.views, max(recipe.epochs, recipe.fine_tune_epochs)))
        weights = top_weights(net, recipe.fine_tune_blocks)
        cached = (views * counts.train + counts.val) * cut_values(net, recipe.fine_tune_blocks) * 2
        decoded = n * size * size * 3
        for r in WORKERS:
            per_epoch = -(-counts.train // (32 * r))
            tune_ring = ring_seconds(recipe.fine_tune_epochs * per_epoch, weights, r, args)
            ring = ring_seconds(recipe.epochs * per_epoch, net.head.count_params(), r, args) + tune_ring
            train = (st["head"] + st["fine_tune"]) / r
            check = n * check_s  # every file, on every worker (imgclf.data.load_dataset)
            today = {"check": check, "data": st["load"] + st["cache"], "steps": train + ring, "test": st["predict"]}
            sharded = {"check": check / r, "data": (st["load"] + st["cache"]) / r, "steps": train + ring,
                       "test": st["predict"] / r}
            exchange = cached * (r - 1) / r / (args.gbit * 1.25e8)
            gathered = n * CHECK_BYTES * (r - 1) / r / (args.gbit * 1.25e8)  # the check's results
            # the head whole on every worker: as many steps as the ring's, each of 32R rows, no all-reduce
            head_step = head_s[0] + (head_s[1] - head_s[0]) * (32 * r - 32) / (2048 - 32)
            local_head = recipe.epochs * per_epoch * head_step if r > 1 else st["head"]
            built = {**sharded, "check": check / r + gathered, "data": (st["load"] + st["cache"]) / r + exchange,
                     "steps": local_head + st["fine_tune"] / r + tune_ring}
            yield dict(n=n, size=size, r=r, recipe=recipe, fixed=st["fixed"], today=today, sharded=sharded, built=built,
                       mem_today=(cached + decoded) / 1e9, mem_built=(cached + decoded / r) / 1e9,
                       mem_sharded=(cached + decoded) / r / 1e9,
                       ring=tune_ring, steps=per_epoch)


def _t(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gbit", type=float, default=10.0, help="network bandwidth between workers, Gbit/s")
    parser.add_argument("--latency-us", type=float, default=50.0, help="one hop's latency, microseconds")
    args = parser.parse_args()
    from imgclf.console import import_tensorflow_quietly
    import_tensorflow_quietly()
    with tempfile.TemporaryDirectory() as tmp:
        sample = photos(Path(tmp), 400)
        check_s = check_seconds(Path(tmp), sample)
        head_s = head_step_seconds()
        measured = {size: measure(size, sample[:48], 6) for size in SIZES}
    print(f"measured: checking a file (load_dataset: read, sha256, decode at 1/8 scale) {1 / check_s:.0f} photos/s; "
          f"a head step on pooled features {head_s[0] * 1000:.1f} ms at 32 rows, {head_s[1] * 1000:.1f} ms at 2,048")
    for size, (c, net) in measured.items():
        print(f"measured at {size} px: frozen forward {c.forward_rate / sum(c.block_flops):.0f} images/s (tf), "
              f"decode {1 / c.decode_s:.0f} photos/s (320x240 JPEG), fine-tuning step (6 blocks) "
              f"{c.fine_tune_epoch(size, 6, 32) * 1000:.0f} ms per 32 images, evaluation "
              f"{32 / c.predict(size, 0, 32, c.runtimes[-1]):.0f} images/s ({c.runtimes[-1]})")
    print(f"\nnetwork {args.gbit:g} Gbit/s, {args.latency_us:g} us a hop; per-worker batch 32; "
          f"wall = fixed + check + data (decode + cache) + steps + test; memory = decoded images + cache")
    print("| images | px | recipe (blocks, views, epochs) | workers | steps an epoch | today: wall / memory per worker "
          "| built: wall / memory per worker | sharded: wall / memory per worker | all-reduce (built) | largest part (built) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size, (c, net) in measured.items():
        for row in rows(c, net, size, args, check_s, head_s):
            rec, today, sharded, built = row["recipe"], row["today"], row["sharded"], row["built"]
            worst = max(built, key=built.get)
            print(f"| {row['n']:,} | {size} | {rec.fine_tune_blocks}, {rec.views}, {rec.epochs}+{rec.fine_tune_epochs} "
                  f"({rec.runtime}) | {row['r']} | {row['steps']:,} | {_t(row['fixed'] + sum(today.values()))} / {row['mem_today']:.1f} GB "
                  f"| {_t(row['fixed'] + sum(built.values()))} / {row['mem_built']:.1f} GB "
                  f"| {_t(row['fixed'] + sum(sharded.values()))} / {row['mem_sharded']:.2f} GB | {_t(row['ring'])} "
                  f"| {worst} ({_t(built[worst])}) |")


if __name__ == "__main__":
    main()
