"""Planning a run to its budget: probe, plan, settle the config.

``plan_run`` measures (imgclf.training.probe), plans (imgclf.training.planner) and returns the
config with every planned value filled in, the network at the planned size and the Plan.
The deadline the training loop then keeps is imgclf.training.deadline's.

Example:
    >>> cfg, net, plan = plan_run(cfg, spec, dataset, started=time.monotonic(), verbose=True)
    >>> plan.recipe.image_size == cfg.data.image_size
    True
"""
from __future__ import annotations

import dataclasses
import time

from imgclf.config import RunConfig, flip_considered
from imgclf.errors import ImgclfError
from imgclf.training.deadline import MAX_STRETCH
from imgclf.training.planner import (BudgetTooSmall, Counts, Fixed, Plan, Recipe, default_budget, make_plan,
                                     target_recipe)

UNPLANNED = {"epochs": 10, "fine_tune_epochs": 5, "schedule": "plateau", "patience": 3}  # without a plan (plain, workers)
DECODE_SAMPLE = 16
STAGE_NAMES = {"fixed": "set-up and report", "load": "loading images", "cache": "feature cache",
               "head": "head", "fine_tune": "fine-tuning", "predict": "test prediction"}


def needs_plan(cfg: RunConfig) -> bool:
    """Whether anything is left for the planner to choose (or a budget to keep)."""
    t, d = cfg.train, cfg.data
    return bool(t.budget_s) or None in (t.epochs, t.fine_tune_epochs) or not d.image_size or (
        not t.fine_tune_blocks and not t.fine_tune_layers) or not t.views or t.schedule == "auto"


def fixed_settings(cfg: RunConfig) -> Fixed:
    """The settings the user chose, as the planner's fixed points."""
    t = cfg.train
    return Fixed(image_size=cfg.data.image_size or None, fine_tune_blocks=t.fine_tune_blocks or None,
                 views=t.views or None, epochs=t.epochs, fine_tune_epochs=t.fine_tune_epochs,
                 runtime=None if t.runtime == "auto" else t.runtime)


def unplanned(cfg: RunConfig, spec) -> RunConfig:
    """The config with the former fixed defaults where values are empty (the plain path and
    multi-worker training are not planned: every worker must take the same steps)."""
    t = cfg.train
    train = dataclasses.replace(t, epochs=t.epochs or UNPLANNED["epochs"],
                                fine_tune_epochs=UNPLANNED["fine_tune_epochs"] if t.fine_tune_epochs is None
                                else t.fine_tune_epochs,
                                schedule=UNPLANNED["schedule"] if t.schedule == "auto" else t.schedule,
                                patience=t.patience if t.patience is not None else UNPLANNED["patience"],
                                fine_tune_blocks=t.fine_tune_blocks or (0 if t.fine_tune_layers
                                                                        else spec.default_fine_tune_blocks))
    return dataclasses.replace(cfg, train=train)


def apply(cfg: RunConfig, recipe: Recipe) -> RunConfig:
    """The config with the plan's recipe in it (a cosine schedule unless the user chose one)."""
    t = cfg.train
    blocks = 0 if t.fine_tune_layers else recipe.fine_tune_blocks
    # never stopped early before its epochs are done, grown ones included (the cosine schedule's
    # last epoch is the one kept; the lowest validation loss often comes early, then rises)
    patience = t.patience if t.patience is not None else MAX_STRETCH * max(recipe.epochs, recipe.fine_tune_epochs, 1)
    train = dataclasses.replace(t, epochs=recipe.epochs, fine_tune_epochs=recipe.fine_tune_epochs,
                                fine_tune_blocks=blocks, views=recipe.views, runtime=recipe.runtime, patience=patience,
                                schedule="cosine" if t.schedule == "auto" else t.schedule)
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_size=recipe.image_size), train=train)


def plan_run(cfg: RunConfig, spec, dataset, started: float, verbose: bool, build) -> tuple[RunConfig, object, Plan]:
    """Probe this machine, plan the run to its budget, and build the network at the planned size.

    Args:
        cfg: the config (empty values are planned).
        spec: the backbone's spec.
        dataset: the loaded Dataset (its test split counts only by its size).
        started: time.monotonic() when the run began (the budget's clock).
        verbose: print the plan.
        build: ``build(size) -> Network``.

    Returns:
        (the config with every planned value, the Network, the Plan).

    Raises:
        ImgclfError: the budget is too small even for the smallest plan (it says what would do).
    """
    from imgclf.training.probe import probe
    counts = Counts(*(len(dataset.paths[s]) for s in ("train", "val", "test")),
                    mirrored=flip_considered(cfg.train.test_time_flip, cfg.data.augment.flip))
    median = _median_side(dataset)
    fixed = fixed_settings(cfg)
    target = fixed.apply(target_recipe(counts, median, spec.default_size, spec.num_blocks))
    kept = all(p in dataset.decoded for p in dataset.paths["train"])
    sample = [] if kept else dataset.paths["train"][:DECODE_SAMPLE]
    before_s = time.monotonic() - started  # what the former defaults also spent: imports, finding the data
    nets, build_s, probes = {}, {}, {}

    def probed(size: int, blocks: int):  # a network per size, a probe per (size, depth)
        if size not in nets:
            began = time.perf_counter()
            nets[size] = build(size)
            build_s[size] = time.perf_counter() - began
        if (size, blocks) not in probes:
            probes[size, blocks] = probe(nets[size], sample, cfg, build_s[size], blocks)
        return probes[size, blocks]
    blocks = target.fine_tune_blocks or spec.default_fine_tune_blocks
    costs = probed(target.image_size, blocks)
    budget = cfg.train.budget_s
    if not budget:  # the former recipe, with the flags given (the old defaults ran them too), probed at its own size
        former = fixed.apply(former_recipe(counts, spec, dataset.report))  # and depth: a 64-px probe priced 96 px 1.5x
        unused = not former.fine_tune_epochs and former.image_size == target.image_size  # no depth to price
        former_costs = probed(former.image_size, blocks if unused else former.fine_tune_blocks)
        budget = default_budget(counts, former_costs, former, before_s + build_s[former.image_size])

    def planned(seconds):
        return make_plan(seconds, counts, costs, fixed, median_side=median, default_size=spec.default_size,
                         num_blocks=spec.num_blocks, min_size=spec.min_size, elapsed_s=time.monotonic() - started)
    try:
        plan = planned(budget)
    except BudgetTooSmall as exc:
        if cfg.train.budget_s:  # the user's budget: say what would do
            raise ImgclfError(f"a budget of {format_seconds(budget)} is too small for this data on this machine: "
                              f"the smallest plan needs about {format_seconds(exc.needed_s)} "
                              f"(--budget {_suggest(exc.needed_s)} would do)") from None
        plan = planned(exc.needed_s * 1.02)  # the default budget stretches to the smallest plan
    if not cfg.train.budget_s:
        plan = dataclasses.replace(plan, reasons=("the default budget: what the former fixed recipe is expected "
                                                  "to take here",) + plan.reasons)

    size = plan.recipe.image_size
    net = nets[size] if size in nets else build(size)
    if verbose:
        print(describe(plan, time.monotonic() - started))
    return apply(cfg, plan.recipe), net, plan


def former_recipe(counts: Counts, spec, report) -> Recipe:
    """The fixed recipe imgclf had before the planner, whose cost here is the default budget:
    the automatic input size (training.model.choose_image_size), the backbone's default depth,
    the automatic views (training.views.choose_views), 10 head and 5 fine-tuning epochs."""
    from imgclf.training.views import choose_views
    from imgclf.training.model import choose_image_size
    epochs, fine_tune = UNPLANNED["epochs"], UNPLANNED["fine_tune_epochs"]
    return Recipe(choose_image_size(0, spec, report), spec.default_fine_tune_blocks,
                  choose_views(0, counts.train, max(epochs, fine_tune)), epochs, fine_tune)


def _median_side(dataset) -> int:
    sizes = dataset.report.sizes
    return int(max(sizes.get("width", {}).get("median", 0), sizes.get("height", {}).get("median", 0)))


def _suggest(seconds: float) -> str:
    minutes = -(-seconds // 60)
    return f"{int(minutes)}m" if seconds > 60 else f"{int(-(-seconds // 10) * 10)}s"


def format_seconds(seconds: float) -> str:
    """``48 s``, ``3 min 20 s``, ``1 h 5 min``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def describe(plan: Plan, elapsed_s: float) -> str:
    """The plan in a few lines: what, why, and the expected time of each stage."""
    r = plan.recipe
    what = (f"plan: {r.image_size} px, {r.views} cached view(s), {r.epochs} head epochs"
            + (f", then {r.fine_tune_epochs} fine-tuning epochs of the top {r.fine_tune_blocks} blocks"
               if r.fine_tune_epochs else ", no fine-tuning"))
    stages = ", ".join(f"{STAGE_NAMES.get(name, name)} {format_seconds(s)}" for name, s in plan.stages.items()
                       if s >= 0.5)
    lines = [what, f"  budget {format_seconds(plan.budget_s)}: {format_seconds(elapsed_s)} spent so far; "
                   f"expected {stages}"]
    lines += [f"  {reason}" for reason in plan.reasons]
    return "\n".join(lines)
