"""The deadline a planned run keeps: what the training loop asks before each epoch and view.

A machine slower than the probe measured cuts epochs instead of overrunning; time left over
grows the phase whose epochs the planner chose (a re-fit, then a part of one more epoch); and
what must stay for after training (the test split's prediction, saving, the report) grows with
the slowdown.

Example:
    >>> deadline = Deadline.for_plan(plan, started=time.monotonic())
    >>> deadline.allows(epoch_s=20)
    True
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

from imgclf.training.planner import Plan
from imgclf.training.probe import FINISH_S

STRETCH_MARGIN = 0.04  # share of the budget a phase leaves unspent when it grows into time left over
MAX_STRETCH = 3  # a phase that grows into time left over runs at most this many times its planned epochs
MIN_PART = 0.25  # the least share of an epoch worth running at a phase's end (its validation pass is whole)
PHASE_WORDS = {"head": "head phase", "fine_tune": "fine-tuning"}  # how the budget's lines name a phase


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
