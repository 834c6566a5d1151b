"""How well the probe prices a fine-tuning epoch at another input size or depth than it ran at.

For each (size, blocks) it probes at (a network built at that size, steps timed at that depth),
it prints the fine-tuning epoch that probe expects for every candidate (size, blocks), over
``--count`` training images. Compare the rows: a probe prices its own (size, blocks) from a
measurement and every other from multiply-adds (imgclf.training.probe.MeasuredCosts). Real epoch
times come from a run's history.csv (``seconds`` of the fine_tune rows).

Example:
    $ python benchmarks/probe_scaling.py --count 54000 --at 64x10,64x3,96x3,96x10
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=54_000, help="training images (full Fashion-MNIST: 54,000)")
    parser.add_argument("--at", default="64x10,64x3,96x3,96x10", help="SIZExBLOCKS to probe at, comma-separated")
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args(argv)
    from imgclf.console import import_tensorflow_quietly
    import_tensorflow_quietly()
    from imgclf.config import RunConfig
    from imgclf.training.model import build_network
    from imgclf.training.probe import probe
    points = [tuple(int(v) for v in item.split("x")) for item in args.at.split(",")]
    cfg = RunConfig()
    print("| probed at | " + " | ".join(f"{s} px, {k} blocks" for s, k in points) + " |")
    print("|---" * (len(points) + 1) + "|")
    for size, blocks in points:
        began = time.perf_counter()
        net = build_network(cfg.model.backbone, args.classes, size)
        costs = probe(net, [], cfg, time.perf_counter() - began, blocks)
        cells = [f"{costs.fine_tune_epoch(s, k, args.count):.1f} s" for s, k in points]
        cells = [f"**{c}**" if (s, k) == (size, blocks) else c for c, (s, k) in zip(cells, points)]
        print(f"| {size} px, {blocks} blocks | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
