"""``imgclf explain RUN IMAGE... --out DIR``: one Grad-CAM overlay per image (imgclf.deploy.explain).

Example:
    $ imgclf explain runs/fashion shoe.png --out why
    shoe.png  sneaker 93.1%  -> why/shoe.gradcam.png
"""
from __future__ import annotations

from imgclf.record import RunRecord


def cmd_explain(args) -> int:
    """Check the run before importing TensorFlow, then write and list the overlays."""
    from imgclf.cli.commands import _tensorflow
    RunRecord.finished(args.run)  # a missing or interrupted run: one line, no TensorFlow import
    _tensorflow(args)
    from imgclf.deploy.explain import explain
    for row in explain(args.run, args.images, args.out):
        print(f"{row['path']}  {row['label']} {row['confidence']:.1%}  -> {row['output']}")
    return 0
