"""Planning a run to its budget: probe, plan, settle the config; and the deadline training keeps.

``plan_run`` measures (imgclf.training.probe), plans (imgclf.training.planner) and returns the
config with every planned value filled in, the network at the planned size and the Plan.
``Deadline`` is what the training loop asks before each epoch, so a machine slower than
measured cuts epochs instead of overrunning.

Example:
    >>> cfg, net, plan = plan_run(cfg, spec, dataset, started=time.monotonic(), verbose=True)
    >>> plan.recipe.image_size == cfg.data.image_size
    True
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

from imgclf.config import RunConfig, flip_considered
from imgclf.errors import ImgclfError
from imgclf.training.planner import (BudgetTooSmall, Counts, Fixed, Plan, Recipe, default_budget, make_plan,
                                     target_recipe)
from imgclf.training.probe import FINISH_S

UNPLANNED = {"epochs": 10, "fine_tune_epochs": 5, "schedule": "plateau", "patience": 3}  # without a plan (plain, workers)
DECODE_SAMPLE = 16
STRETCH_MARGIN = 0.04  # share of the budget a phase leaves unspent when it grows into time left over
MAX_STRETCH = 3  # a phase that grows into time left over runs at most this many times its planned epochs
MIN_PART = 0.25  # the least share of an epoch worth running at a phase's end (its validation pass is whole)
PHASE_WORDS = {"head": "head phase", "fine_tune": "fine-tuning"}  # how the budget's lines name a phase
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
    began = time.perf_counter()
    net = build(target.image_size)
    build_s = time.perf_counter() - began
    kept = all(p in dataset.decoded for p in dataset.paths["train"])
    sample = [] if kept else dataset.paths["train"][:DECODE_SAMPLE]
    blocks = target.fine_tune_blocks or spec.default_fine_tune_blocks
    costs = probe(net, sample, cfg, build_s, blocks)
    budget = cfg.train.budget_s or default_budget(counts, costs, former_recipe(counts, spec, dataset.report),
                                                  time.monotonic() - started)

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

    if plan.recipe.image_size != target.image_size:
        net = build(plan.recipe.image_size)
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


@dataclass
class Deadline:
    """When the run must end, and what must stay for after training (the test split's
    prediction, saving, the report). The training loop asks ``allows`` before every epoch.

    Example:
        >>> deadline = Deadline(end=time.monotonic() + 60, reserve_s=10)
        >>> deadline.allows(epoch_s=20)
        True
    """

    end: float  # time.monotonic() by which everything is done
    reserve_s: float
    epoch_s: dict = dataclasses.field(default_factory=dict)  # expected seconds of an epoch, by phase
    clock: Callable[[], float] = time.monotonic
    training_s: float = 0.0  # the planned seconds of both phases
    planned_s: dict = dataclasses.field(default_factory=dict)  # epoch_s as planned
    slowdown: float = 1.0  # how much slower than planned the last steady epoch ran (1: as planned)
    stretch: tuple = ()  # phases whose epochs the planner chose: they may grow into time left over
    margin_s: float = 0.0  # kept beyond the reserve before a phase grows
    told: dict = dataclasses.field(default_factory=dict)  # phase -> the ways (up, down) its count moved, as said

    def observe(self, name: str, seconds: float, steady: bool = True) -> None:
        """An epoch of phase ``name`` took ``seconds``: the next is expected to take as long,
        and a steady one (not a phase's first, which also traces) slower than planned means the
        machine is busier than the probe saw, so what is kept for evaluating and saving grows
        in proportion (at most 4x)."""
        self.epoch_s[name] = seconds
        planned = self.planned_s.get(name, 0.0)
        if steady and planned >= 1.0:  # shorter epochs measure per-epoch overhead, not the machine
            self.slowdown = min(4.0, max(1.0, seconds / planned))

    @property
    def reserve(self) -> float:
        """Seconds kept for after training: the planned test prediction and saving, times the slowdown."""
        return self.reserve_s * self.slowdown

    def left(self) -> float:
        return self.end - self.clock()

    def allows(self, epoch_s: float, keep_s: float = 0.0) -> bool:
        """Whether an epoch of ``epoch_s`` seconds still fits, keeping ``keep_s`` for what follows."""
        return self.left() - epoch_s >= self.reserve + keep_s

    def ends_phase(self, name: str, done: int, epochs: int, keep_s: float = 0.0, share: float = 1.0) -> bool:
        """True (and says so) when phase ``name``'s next epoch (``share`` of one), as long as its
        last one (or as planned), would overrun. The first head epoch always runs: a model needs
        a trained head."""
        if name == "head" and done == 0:
            return False
        last = self.epoch_s.get(name, 0.0) * share
        if self.allows(last, keep_s):
            return False
        what = PHASE_WORDS[name]
        print(f"budget: ending the {what} after {done} of {epochs} epochs: one more (about {last:.{last < 10:d}f} s) "
              f"would overrun the budget ({self.left():.0f} s left, {self.reserve:.0f} s of them "
              "for evaluating and saving)", flush=True)
        return True

    def retarget(self, name: str, done: int, epochs: int, keep_s: float = 0.0, planned: int = 0) -> int:
        """Phase ``name``'s epoch count after ``done`` epochs, from what its last epoch took:
        fewer when the rest would overrun (so a cosine schedule still reaches its floor rather
        than being cut on a high rate), more, up to MAX_STRETCH x ``planned``, when the phase is in ``stretch``
        and the plan left time over (probes err both ways; 0.70-0.81 of photo budgets were
        used before). Says so when the count first moves, and once more if it turns the other
        way (a count going 27, 28, 27... on noisy epoch times is not said each time)."""
        last = self.epoch_s.get(name, 0.0)
        if done == 0 or last <= 0:
            return epochs
        room = self.left() - self.reserve - keep_s
        # a phase's first epoch also traces: too long to shrink on, a safe side to grow on
        wanted = min(epochs, done + max(0, int(room // last))) if done > 1 else epochs
        if wanted == epochs and name in self.stretch:
            wanted = max(epochs, min(MAX_STRETCH * planned, done + max(0, int((room - self.margin_s) // last))))
        if wanted != epochs and (wanted > epochs) not in self.told.setdefault(name, set()):
            self.told[name].add(wanted > epochs)
            what = PHASE_WORDS[name]
            print(f"budget: {what} {epochs} -> {wanted} epochs: about {last:.{last < 10:d}f} s each, "
                  f"{self.left():.0f} s left, {self.reserve:.0f} s of them for evaluating and saving", flush=True)
        return wanted

    def part(self, name: str, epochs: int, keep_s: float = 0.0, planned: int = 0) -> float:
        """The share of one more epoch that phase ``name`` has time for after its ``epochs``
        (0 when less than MIN_PART fits, or the phase may not grow): a run whose epochs are long
        against its budget would otherwise end up to a whole epoch early. Only a phase in
        ``stretch`` below its MAX_STRETCH x ``planned`` cap takes one; it says so.

        Example:
            >>> deadline.part("fine_tune", 5, planned=5)  # 60 s left over, 100-s epochs
            0.6
        """
        last = self.epoch_s.get(name, 0.0)
        if name not in self.stretch or last <= 0 or epochs >= MAX_STRETCH * planned:
            return 0.0
        share = (self.left() - self.reserve - keep_s - self.margin_s) / last
        if share < MIN_PART:
            return 0.0
        share = round(min(share, 1.0), 2)
        what = PHASE_WORDS[name]
        print(f"budget: {what} gets {share:.2f} of one more epoch at the lowest rate: about {last:.{last < 10:d}f} s "
              f"an epoch, {self.left():.0f} s left, {self.reserve:.0f} s of them for evaluating and saving", flush=True)
        return share

    def ends_views(self, done: int, views: int, view_s: float) -> bool:
        """True (and says so) when one more cached view, as long as those made so far, would
        leave less than half the planned training time: the views are the one part of the cache
        that can be cut, and a busy machine makes them slower than the probe measured."""
        if self.allows(view_s, keep_s=self.training_s / 2):
            return False
        print(f"budget: caching {done} of {views} views: one more (about {view_s:.0f} s) would leave too little "
              f"time to train ({self.left():.0f} s left, {self.reserve:.0f} s of them for evaluating and saving)",
              flush=True)
        return True

    @classmethod
    def for_plan(cls, plan: Plan, started: float) -> "Deadline":
        """The deadline of a planned run that began at ``started`` (time.monotonic())."""
        r, s = plan.recipe, plan.stages
        epoch_s = {"head": s["head"] / max(1, r.epochs), "fine_tune": s["fine_tune"] / max(1, r.fine_tune_epochs)}
        return cls(started + plan.budget_s, s["predict"] + FINISH_S, epoch_s, training_s=s["head"] + s["fine_tune"],
                   planned_s=dict(epoch_s), stretch=plan.stretch, margin_s=STRETCH_MARGIN * plan.budget_s)


def actual_stages(started: float, info: dict, history: list[dict]) -> dict:
    """Seconds each planned stage took (``info``: run.json's facts; ``started``: the run's
    time.monotonic() start), for plan.json and the report's plan-against-actual table."""
    stages = {"cache": info.get("cache_seconds", 0.0), "predict": info.get("eval_seconds", 0.0)}
    for phase in ("head", "fine_tune"):
        stages[phase] = sum(row["seconds"] for row in history if row["phase"] == phase)
    total = time.monotonic() - started
    stages["other"] = total - sum(stages.values())
    return {**{k: round(v, 1) for k, v in stages.items()}, "total": round(total, 1)}
