"""The planner: the best recipe that fits the time budget, from what things cost on this machine.

The pure core, ``make_plan``, takes the budget, the split sizes, a cost model and the settings
the user fixed, and returns a Plan: input size, fine-tuning depth, cached views, epochs of each
phase, and the expected seconds of every stage. It starts from the recipe the project measured
best for data of this size and kind (``target_recipe``), grows it while time is left, and shrinks
it along a fixed ladder until it fits; the user's settings are never changed. Nothing here
reads the test split's images or labels: only how many there are (their prediction costs time).

Example:
    >>> plan = make_plan(600, Counts(900, 100, 10_000), costs, Fixed(), median_side=28, spec=spec)
    >>> plan.image_size, plan.fine_tune_blocks, plan.fine_tune_epochs
    (64, 3, 10)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Protocol

HEADROOM = 0.90  # plans fill at most this share of the time left: overrunning the budget is a bug
SIZES = (64, 96, 128, 160, 192, 224, 256)
MIN_HEAD_EPOCHS = 1


@dataclass(frozen=True)
class Counts:
    """Images per split (the test split's only as a count: predicting it costs time)."""

    train: int
    val: int
    test: int
    mirrored: bool = False  # val and test are also predicted mirrored (a test-time flip may be chosen)


@dataclass(frozen=True)
class Fixed:
    """What the user set; None: the planner chooses it."""

    image_size: int | None = None
    fine_tune_blocks: int | None = None
    views: int | None = None
    epochs: int | None = None
    fine_tune_epochs: int | None = None
    runtime: str | None = None

    def apply(self, recipe: "Recipe") -> "Recipe":
        """``recipe`` with every value the user set put back."""
        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}
        return dataclasses.replace(recipe, **given)


class Costs(Protocol):
    """Seconds things take here (the probe measures them; tests pass made-up ones).

    ``runtimes`` are the ways the frozen part can run ("tf", "tflite"); ``cache`` and
    ``predict`` take one of them (a TFLite conversion is part of the cache's cost)."""

    runtimes: tuple

    def fixed(self, recipe: "Recipe") -> float:
        """One-off work: building the network, conversions, saving, plots, report."""

    def load(self, size: int, count: int) -> float:
        """Decoding and resizing ``count`` images to ``size``."""

    def cache(self, size: int, blocks: int, count: int, augmented: int, runtime: str) -> float:
        """The frozen part below the cut (and the features above it) over ``count`` images, of
        which ``augmented`` are augmented first."""

    def head_epoch(self, count: int) -> float:
        """One head epoch on cached features over ``count`` training images, with validation."""

    def fine_tune_epoch(self, size: int, blocks: int, count: int) -> float:
        """One fine-tuning epoch of the top ``blocks`` over ``count`` training images (no validation)."""

    def predict(self, size: int, blocks: int, count: int, runtime: str) -> float:
        """The whole network over ``count`` images (the test split): the frozen part below the
        top ``blocks`` on ``runtime``, the trained top in TensorFlow."""


@dataclass(frozen=True)
class Recipe:
    """The settings a plan chooses."""

    image_size: int
    fine_tune_blocks: int
    views: int
    epochs: int
    fine_tune_epochs: int
    runtime: str = "tf"  # where the frozen part runs: "tf" or "tflite" (LiteRT, after a conversion)


@dataclass(frozen=True)
class Plan:
    """A recipe, the seconds each stage is expected to take, and why it was chosen."""

    recipe: Recipe
    stages: dict  # stage -> expected seconds
    budget_s: float
    reasons: tuple = field(default=())
    stretch: tuple = ()  # the phase that may run more epochs if time is left (its count was not set)

    @property
    def seconds(self) -> float:
        return sum(self.stages.values())

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self.recipe), "budget_s": round(self.budget_s, 1),
                "expected_s": round(self.seconds, 1), "stages": {k: round(v, 1) for k, v in self.stages.items()},
                "reasons": list(self.reasons)}


class BudgetTooSmall(Exception):
    """Even the smallest recipe does not fit; ``needed_s`` is the least budget that would."""

    def __init__(self, needed_s: float):
        super().__init__(needed_s)
        self.needed_s = needed_s


def target_recipe(counts: Counts, median_side: int, default_size: int, num_blocks: int) -> Recipe:
    """The recipe the project measured best for data like this, before any budget applies.

    - Input size: small images do not need the backbone's full size. With tens of thousands of
      28-px Fashion-MNIST images 64 px and deep fine-tuning did best (validation 0.943-0.947
      against 0.923 at 96 px, RESULTS.md); with 900 of them 96 px did (validation 0.88 against
      0.83 at 64 px, budget.py). 320x240 photos did better at 160 px with 6 blocks than at 224 px
      with 3, in less time.
    - Depth: more data carries more fine-tuned blocks (3 below 2,000 images, 6 below 20,000,
      10 above).
    - Views: augmented views matter where a small set would be memorised (4 below 10,000
      training images, 2 to 50,000, else 1).
    - Epochs: more fine-tuning epochs for smaller sets (each is cheap), with a cosine schedule.

    Example:
        >>> target_recipe(Counts(54_000, 6_000, 10_000), 28, 224, 18)
        Recipe(image_size=64, fine_tune_blocks=10, views=1, epochs=5, fine_tune_epochs=5)
    """
    n = counts.train
    size = 64 if median_side <= 48 and n >= 20_000 else 96 if median_side <= 128 else 160
    blocks = 3 if n < 2_000 else 6 if n < 20_000 else 10
    views = 4 if n < 10_000 else 2 if n <= 50_000 else 1
    epochs, fine_tune = (8, 10) if n < 10_000 else (6, 8) if n < 30_000 else (5, 5)
    return Recipe(min(size, default_size), min(blocks, num_blocks - 1), views, epochs, fine_tune)


def expected_stages(recipe: Recipe, counts: Counts, costs: Costs) -> dict[str, float]:
    """Seconds of each stage of ``recipe``: fixed, load, cache, head, fine_tune, predict."""
    r, n = recipe, counts.train
    cut = r.fine_tune_blocks if r.fine_tune_epochs else 0
    views = max(1, min(r.views, max(r.epochs, r.fine_tune_epochs)))
    stages = {"fixed": costs.fixed(r),
              "load": costs.load(r.image_size, counts.train + counts.val + counts.test),
              "cache": costs.cache(r.image_size, cut, views * n + counts.val, (views - 1) * n, r.runtime),
              "head": r.epochs * costs.head_epoch(n),
              "fine_tune": r.fine_tune_epochs * (costs.fine_tune_epoch(r.image_size, cut, n)
                                                 + costs.fine_tune_epoch(r.image_size, cut, counts.val) / 3),
              "predict": costs.predict(r.image_size, cut, (counts.val + counts.test) * (1 + counts.mirrored),
                                       r.runtime)}  # val: the temperature and the flip; mirrored: twice
    return stages


def _sizes_below(size: int, floor: int) -> list[int]:
    return [s for s in sorted(SIZES, reverse=True) if floor <= s < size]


def _shrink_ladder(recipe: Recipe, fixed: Fixed, min_size: int):
    """Ever smaller recipes, in the order the project would give things up: views first, then
    fine-tuning epochs down to half, head epochs down to 3, depth, input size, the rest of the
    fine-tuning epochs, and last the head epochs down to one."""
    r = recipe

    def step(**change):
        nonlocal r
        allowed = {k: v for k, v in change.items() if getattr(fixed, k) is None}
        if allowed and any(getattr(r, k) != v for k, v in allowed.items()):
            r = dataclasses.replace(r, **allowed)
            return r
        return None

    moves = [lambda: step(views=max(1, r.views // 2)) for _ in range(3)]
    moves += [lambda: step(fine_tune_epochs=max(r.fine_tune_epochs // 2, r.fine_tune_epochs - 2,
                                                 math.ceil(recipe.fine_tune_epochs / 2)))] * 3
    moves += [lambda: step(epochs=max(3, r.epochs - 2))] * 4
    moves += [lambda b=b: step(fine_tune_blocks=b) for b in (6, 3, 2, 1) if b < recipe.fine_tune_blocks]
    moves += [lambda s=s: step(image_size=s) for s in _sizes_below(recipe.image_size, min_size)]
    moves += [lambda: step(fine_tune_epochs=max(0, r.fine_tune_epochs - 1))] * max(1, recipe.fine_tune_epochs)
    moves += [lambda: step(epochs=max(MIN_HEAD_EPOCHS, r.epochs - 1))] * recipe.epochs
    for move in moves:
        smaller = move()
        if smaller is not None:
            yield smaller


def _grow(recipe: Recipe, fixed: Fixed, fits, target: Recipe | None = None) -> Recipe:
    """Spend the time that is left, in this order, each as far as it fits: fine-tuning epochs up
    to twice the target's, head epochs back up to the target's (after a shrink), views up to 8
    (augmentation variety, which small sets lack most; not for a set large enough that its
    target is one view: time short of a whole epoch there goes to the last phase's part epoch
    at run time, imgclf.training.deadline.Deadline.part), and fine-tuning epochs up to three
    times the target's. A larger input or deeper fine-tuning than the target's measured worse on
    validation (fashion-mnist-1k: 128 px 0.82 and 6 blocks 0.81, against 0.88 at 96 px and 3
    blocks; RESULTS.md), so spare time beyond that stays unspent."""
    target = target or recipe

    def push(field: str, values):
        nonlocal recipe
        if getattr(fixed, field) is not None:
            return
        for value in values:
            candidate = dataclasses.replace(recipe, **{field: value})
            if not fits(candidate):
                return
            recipe = candidate

    if recipe.fine_tune_epochs:
        push("fine_tune_epochs", range(recipe.fine_tune_epochs + 1, 2 * target.fine_tune_epochs + 1))
    push("epochs", range(recipe.epochs + 1, target.epochs + 1))
    if target.views > 1:  # full Fashion-MNIST grown to 4 views, 3 fine-tuning epochs: val 0.940 (1 view: 0.941-0.946)
        push("views", [v for v in (2, 4, 8) if v > recipe.views])
    if recipe.fine_tune_epochs:
        push("fine_tune_epochs", range(recipe.fine_tune_epochs + 1, 3 * target.fine_tune_epochs + 1))
    return recipe


def make_plan(budget_s: float, counts: Counts, costs: Costs, fixed: Fixed = Fixed(), *, median_side: int,
              default_size: int, num_blocks: int, min_size: int = 32, elapsed_s: float = 0.0) -> Plan:
    """The best recipe that fits ``budget_s`` (less what has already been spent, with headroom).

    Args:
        budget_s: the whole run's budget, in seconds.
        counts: images per split.
        costs: what things cost here (see Costs).
        fixed: the settings the user chose; kept as they are.
        median_side: the training images' median side in pixels (picks the input size).
        default_size, num_blocks, min_size: the backbone's.
        elapsed_s: seconds already spent (imports, finding and checking the data, the probe).

    Returns:
        The Plan.

    Raises:
        BudgetTooSmall: even the smallest recipe overruns; its ``needed_s`` says what would do.

    Example:
        >>> make_plan(60, Counts(900, 100, 1000), costs, median_side=28, default_size=224,
        ...           num_blocks=18).recipe.fine_tune_epochs
        6
    """
    available = (budget_s - elapsed_s) * HEADROOM
    target = fixed.apply(target_recipe(counts, median_side, default_size, num_blocks))

    def settled(recipe):  # the cheaper runtime for this recipe, unless the user chose one
        if fixed.runtime is not None:
            return dataclasses.replace(recipe, runtime=fixed.runtime)
        options = [dataclasses.replace(recipe, runtime=rt) for rt in costs.runtimes]
        return min(options, key=lambda r: sum(expected_stages(r, counts, costs).values()))

    def seconds(recipe):
        return sum(expected_stages(settled(recipe), counts, costs).values())

    def fits(recipe):
        return seconds(recipe) <= available

    recipe, reasons = target, []
    if fits(recipe):
        recipe = _grow(recipe, fixed, fits)
        if recipe != target:
            reasons.append(f"time left: {_difference(target, recipe)}")
    else:
        smallest = recipe
        for smaller in _shrink_ladder(target, fixed, max(min_size, 32)):
            smallest = smaller
            if fits(smaller):
                break
        if not fits(smallest):
            raise BudgetTooSmall(elapsed_s + seconds(smallest) / HEADROOM)
        recipe = _grow(smallest, fixed, fits, target)  # what the ladder gave up beyond need, back
        reasons.append(f"to fit the budget: {_difference(target, recipe)}")
    recipe = settled(recipe)
    last = ("fine_tune", fixed.fine_tune_epochs) if recipe.fine_tune_epochs else ("head", fixed.epochs)
    return Plan(recipe, expected_stages(recipe, counts, costs), budget_s, tuple(reasons),
                stretch=(last[0],) if last[1] is None else ())


def _difference(before: Recipe, after: Recipe) -> str:
    names = {"image_size": "input size", "fine_tune_blocks": "fine-tuned blocks", "views": "views",
             "epochs": "head epochs", "fine_tune_epochs": "fine-tuning epochs"}
    changed = [f"{names[key]} {getattr(before, key)} -> {getattr(after, key)}"
               for key in names if getattr(before, key) != getattr(after, key)]
    return ", ".join(changed) or "as targeted"


def default_budget(counts: Counts, costs: Costs, former: Recipe, elapsed_s: float = 0.0) -> float:
    """The budget of ``imgclf train`` without ``--budget``: what the former fixed recipe
    (``former``: median side rounded up to 32 px, 96-224; the default 3 blocks; 4 views below
    10,000 training images; 10 + 5 epochs) is expected to take here by ``costs`` (probed at its
    own size and depth), plus what the former defaults also spent before training (``elapsed_s``).
    A plan fills HEADROOM of it and a run grows into the rest (a re-fit, a part epoch): no flags
    take no longer than the old defaults, and spend that time on the recipe expected best.

    Example:
        >>> default_budget(Counts(900, 100, 10_000), costs, Recipe(96, 3, 4, 10, 5), elapsed_s=20)
        81.6
    """
    seconds = min(sum(expected_stages(dataclasses.replace(former, runtime=rt), counts, costs).values())
                  for rt in costs.runtimes)
    return round(elapsed_s + seconds, 1)
