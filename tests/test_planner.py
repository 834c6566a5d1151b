"""The planner's pure core, driven with made-up costs; the deadline; the budget's parsing."""
import dataclasses

import numpy as np
import pytest

from imgclf.errors import ImgclfError
from imgclf.options import parse_duration
from imgclf.training.deadline import Deadline
from imgclf.training.planner import (HEADROOM, BudgetTooSmall, Counts, Fixed, Recipe, default_budget,
                                     expected_stages, make_plan, target_recipe)

LITE = dict(default_size=224, num_blocks=18, min_size=32)


@dataclasses.dataclass
class FakeCosts:
    """Costs that grow the way the real ones do: with the image area, depth, views and epochs."""

    runtimes = ("tf",)
    fixed_s: float = 10.0
    per_image: float = 1e-3  # a forward pass at 96 px
    per_block: float = 2e-4  # a fine-tuning step per block at 96 px

    def _area(self, size):
        return (size / 96) ** 2

    def fixed(self, recipe):
        return self.fixed_s

    def load(self, size, count):
        return 0.0

    def cache(self, size, blocks, count, augmented, runtime):
        return (count + augmented / 2) * self.per_image * self._area(size)

    def head_epoch(self, count):
        return count * 1e-5

    def fine_tune_epoch(self, size, blocks, count):
        return count * blocks * self.per_block * self._area(size)

    def predict(self, size, blocks, count, runtime):
        return count * self.per_image * self._area(size)


SMALL = Counts(900, 100, 10_000)  # fashion-mnist-1k
FULL = Counts(54_000, 6_000, 10_000)


@pytest.mark.parametrize("counts", [SMALL, FULL, Counts(4_800, 600, 600)])
@pytest.mark.parametrize("budget", [30, 60, 180, 600, 900, 3600])
def test_a_plan_always_fits_the_budget_or_says_what_would(counts, budget):
    costs = FakeCosts()
    try:
        plan = make_plan(budget, counts, costs, median_side=28, elapsed_s=5, **LITE)
    except BudgetTooSmall as exc:
        assert exc.needed_s > budget
        plan = make_plan(exc.needed_s + 1e-6, counts, costs, median_side=28, elapsed_s=5, **LITE)
        assert plan.recipe.epochs >= 1  # what it said would do does
        return
    assert plan.seconds <= (budget - 5) * HEADROOM + 1e-9
    assert plan.seconds == pytest.approx(sum(expected_stages(plan.recipe, counts, costs).values()))
    r = plan.recipe
    assert r.epochs >= 1 and r.views >= 1 and r.image_size >= 32 and r.fine_tune_blocks >= 1


def test_more_budget_never_buys_less_training():
    costs, previous = FakeCosts(), None
    for budget in (40, 60, 90, 150, 300, 900):
        r = make_plan(budget, SMALL, costs, median_side=28, **LITE).recipe
        work = r.views * r.image_size ** 2 + 100 * r.fine_tune_epochs * r.fine_tune_blocks + r.epochs
        assert previous is None or work >= previous
        previous = work


def test_the_users_settings_are_kept_whatever_the_budget():
    fixed = Fixed(image_size=96, epochs=4, fine_tune_blocks=5)
    for budget in (120, 300, 900):
        r = make_plan(budget, FULL, FakeCosts(per_block=2e-5), fixed, median_side=28, **LITE).recipe
        assert (r.image_size, r.epochs, r.fine_tune_blocks) == (96, 4, 5)
    r = make_plan(600, SMALL, FakeCosts(), Fixed(fine_tune_epochs=0), median_side=28, **LITE).recipe
    assert r.fine_tune_epochs == 0


def test_a_budget_too_small_for_the_users_settings_is_refused():
    with pytest.raises(BudgetTooSmall):
        make_plan(60, FULL, FakeCosts(), Fixed(image_size=224, fine_tune_epochs=20, fine_tune_blocks=10),
                  median_side=28, **LITE)


def test_the_target_recipe_follows_the_measured_best():
    assert target_recipe(FULL, 28, 224, 18) == Recipe(64, 10, 1, 5, 5)  # RESULTS: full Fashion-MNIST
    photo = target_recipe(Counts(4_800, 600, 600), 240, 224, 18)
    assert (photo.image_size, photo.fine_tune_blocks) == (160, 6)  # photo-sized: 160 px, 6 blocks
    assert target_recipe(SMALL, 28, 224, 18).views == 4
    assert target_recipe(SMALL, 28, 224, 18).image_size == 96  # budget.py, fashion-mnist-1k: val 0.88 vs 0.83


def test_a_tighter_budget_shrinks_views_before_depth_and_size():
    target = target_recipe(SMALL, 28, 224, 18)
    middling = make_plan(30, SMALL, FakeCosts(), median_side=28, **LITE).recipe
    assert middling.views < target.views and middling.fine_tune_blocks == target.fine_tune_blocks
    assert middling.image_size == target.image_size == 96


def test_a_shrunk_plan_takes_back_what_the_ladder_gave_up_beyond_need():
    """A budget that forces a shallower cut frees time the earlier rungs (fewer epochs) had
    given up: the plan spends it on epochs again, and still fits."""
    costs = FakeCosts(per_block=2e-3)
    target = target_recipe(Counts(4_800, 600, 600), 320, 224, 18)
    for budget in (100, 150, 250):
        plan = make_plan(budget, Counts(4_800, 600, 600), costs, median_side=320, **LITE)
        r = plan.recipe
        assert plan.seconds <= budget * HEADROOM
        if r.fine_tune_blocks < target.fine_tune_blocks:  # depth had to go: no epoch more would fit
            assert r.epochs == target.epochs
            fuller = dataclasses.replace(r, fine_tune_epochs=r.fine_tune_epochs + 1)
            assert sum(expected_stages(fuller, Counts(4_800, 600, 600), costs).values()) > budget * HEADROOM or \
                r.fine_tune_epochs == 2 * target.fine_tune_epochs


def test_time_to_spare_buys_epochs_and_views_not_size_or_depth():
    target = target_recipe(SMALL, 28, 224, 18)
    roomy = make_plan(3600, SMALL, FakeCosts(), median_side=28, **LITE).recipe
    assert (roomy.views, roomy.image_size, roomy.fine_tune_blocks) == (8, target.image_size, target.fine_tune_blocks)
    assert roomy.fine_tune_epochs == 3 * target.fine_tune_epochs


def test_the_plan_never_depends_on_the_test_split_beyond_its_size():
    """make_plan gets the split sizes and costs only: nothing of the test images or labels can
    reach it (the probe decodes training images). Same sizes: the same plan."""
    import inspect
    assert "test" not in inspect.signature(make_plan).parameters
    a = make_plan(120, Counts(900, 100, 10_000), FakeCosts(), median_side=28, **LITE)
    b = make_plan(120, Counts(900, 100, 10_000), FakeCosts(), median_side=28, **LITE)
    assert a == b


def test_default_budget_is_what_the_former_recipe_costs_here():
    """No flags: the budget is the former fixed recipe's expected time on this machine (plus what
    the former defaults also spent before training), not more: the plan fills HEADROOM of it, so
    a run that grows into the rest (a re-fit, a part epoch) still ends within the old defaults'
    time. (Divided by HEADROOM, full Fashion-MNIST's default budget was 11% over the former cost.)"""
    former = Recipe(96, 3, 4, 10, 5)
    for counts in (SMALL, FULL, Counts(4_800, 600, 600)):
        costs = FakeCosts()
        expected = sum(expected_stages(former, counts, costs).values())
        budget = default_budget(counts, costs, former, elapsed_s=20)
        assert budget == pytest.approx(20 + expected, abs=0.1)
        plan = make_plan(budget, counts, costs, median_side=28, elapsed_s=25, **LITE)
        assert plan.seconds <= (budget - 25) * HEADROOM + 1e-6
    slow = dataclasses.replace(FakeCosts(), per_image=3e-3, per_block=6e-4)  # a slower machine: a longer default
    assert default_budget(SMALL, slow, former) > default_budget(SMALL, FakeCosts(), former)
    assert default_budget(FULL, FakeCosts(), former) > default_budget(SMALL, FakeCosts(), former)  # grows with the data


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400),
                                           ("2.5m", 150), ("45", 45), (" 3M ", 180)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text, message", [("0", "more than 0"), ("0s", "more than 0"), ("abc", "a duration"),
                                           ("-5", "a duration"), ("10 minutes", "a duration"), ("", "a duration")])
def test_bad_durations_are_one_line_errors(text, message):
    with pytest.raises(ImgclfError, match=message):
        parse_duration(text)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_deadline_allows_what_fits_and_keeps_the_reserve():
    clock = FakeClock()
    deadline = Deadline(end=100.0, reserve_s=20.0, clock=clock)
    assert deadline.allows(70) and not deadline.allows(81)
    assert not deadline.allows(70, keep_s=15)
    clock.now = 60
    assert deadline.left() == 40 and deadline.allows(20) and not deadline.allows(21)


def test_the_cache_makes_fewer_views_when_one_more_would_leave_too_little_to_train(capsys):
    """100 s left, 20 s reserved, 40 s of training planned (half of it must stay): a 30-s view
    fits at 0 s (70 s left after it) and not at 40 s (30 s left < 20 + 20), and says so."""
    clock = FakeClock()
    deadline = Deadline(end=100.0, reserve_s=20.0, clock=clock, training_s=40.0)
    assert not deadline.ends_views(1, 4, view_s=30)
    clock.now = 40
    assert deadline.ends_views(2, 4, view_s=30)
    assert "budget: caching 2 of 4 views: one more (about 30 s) would leave too little time" in capsys.readouterr().out


def test_a_machine_slower_than_planned_keeps_more_for_evaluating_and_saving():
    """Epochs planned at 5 s: a phase's first epoch (it also traces) changes nothing; a steady
    one at 10 s means the machine runs at half speed, so the 20-s reserve (the test prediction
    and saving, planned) becomes 40 s, never more than 4x."""
    clock = FakeClock()
    deadline = Deadline(end=100.0, reserve_s=20.0, epoch_s={"fine_tune": 5.0}, planned_s={"fine_tune": 5.0}, clock=clock)
    deadline.observe("fine_tune", 12.0, steady=False)
    assert deadline.reserve == 20.0 and deadline.epoch_s["fine_tune"] == 12.0
    deadline.observe("fine_tune", 10.0)
    assert deadline.reserve == 40.0 and deadline.allows(50) and not deadline.allows(61)
    deadline.observe("fine_tune", 100.0)
    assert deadline.reserve == 80.0
    deadline.observe("fine_tune", 4.0)  # faster than planned: the planned reserve, not less
    assert deadline.reserve == 20.0
    tiny = Deadline(end=100.0, reserve_s=20.0, epoch_s={"head": 0.05}, planned_s={"head": 0.05}, clock=clock)
    tiny.observe("head", 0.5)  # a 50-ms epoch taking 0.5 s is overhead, not a busy machine
    assert tiny.reserve == 20.0 and tiny.epoch_s["head"] == 0.5


def _timed_phase(clock, epoch_s, epochs, deadline, schedule="constant", name="head", killed_at=0, **resuming):
    """fit_phase on a tiny model, each epoch costing ``epoch_s`` seconds of ``clock``; with
    ``killed_at`` epoch k raises KeyboardInterrupt as it starts."""
    import keras
    import tensorflow as tf

    from imgclf.config import TrainConfig
    from imgclf.training.phases import EarlyStopping, EpochLog, Phase, fit_phase
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[np.arange(16) % 2]
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)

    def batches(epoch):
        if epoch + 1 == killed_at:
            raise KeyboardInterrupt
        clock.now += epoch_s
        return data
    return fit_phase(Phase(model, batches, None, 2), name, TrainConfig(patience=50, schedule=schedule), 1e-2, epochs,
                     EarlyStopping(50, model), EpochLog(verbose=False), None, deadline=deadline, **resuming)


def test_a_slow_machine_cuts_epochs_instead_of_overrunning(capsys):
    """Planned at 5 s an epoch, each epoch takes 30 s on the fake clock: with 100 s and a 20 s
    reserve the head phase stops after two epochs (a third would end at 90 s) and says so."""
    clock = FakeClock()
    deadline = Deadline(end=100.0, reserve_s=20.0, epoch_s={"head": 5.0}, clock=clock)
    rows = _timed_phase(clock, 30, 10, deadline)
    assert len(rows) == 2  # 0 -> 30 -> 60 s; a third epoch (to 90 s) would eat the 20 s reserve
    assert "budget: head phase 10 -> 2 epochs: about 30 s each, 40 s left" in capsys.readouterr().out
    clock.now = 0  # the first epoch alone (it also traces) is not trusted to shrink the phase:
    deadline = Deadline(end=100.0, reserve_s=20.0, epoch_s={"head": 5.0}, clock=clock)
    assert len(_timed_phase(clock, 50, 10, deadline)) == 1  # the guard before each epoch stops it
    assert "budget: ending the head phase after 1 of 10 epochs" in capsys.readouterr().out


def test_cosine_epochs_are_refitted_to_the_time_left(capsys):
    """10 cosine epochs planned, 10 s each, 100 s with 20 s reserved: after two epochs (20 s)
    six more fit, so the phase becomes 8 epochs and its rate still decays to the floor."""
    clock = FakeClock()
    deadline = Deadline(end=100.0, reserve_s=20.0, epoch_s={"fine_tune": 10.0}, clock=clock)
    rows = _timed_phase(clock, 10, 10, deadline, "cosine", "fine_tune")
    assert len(rows) == 8 and "budget: fine-tuning 10 -> 8 epochs" in capsys.readouterr().out
    lrs = [r["lr"] for r in rows]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 1e-2 * 0.05
    assert clock.now <= 100 - 20


@pytest.mark.parametrize("stretch, expected", [(("fine_tune",), 12), ((), 4)])
def test_time_left_over_grows_only_a_phase_whose_epochs_were_planned(stretch, expected, capsys):
    """4 epochs planned at 5 s with 100 s, 20 s reserved and a 10 s margin: a planned phase
    grows to its cap of three times the plan (12 epochs, 60 s); a count the user set stays."""
    clock = FakeClock()
    deadline = Deadline(end=100.0, reserve_s=20.0, epoch_s={"fine_tune": 5.0}, clock=clock, stretch=stretch,
                        margin_s=10.0)
    rows = _timed_phase(clock, 5, 4, deadline, "cosine", "fine_tune")
    assert len(rows) == expected and ("4 -> 12 epochs" in capsys.readouterr().out) == bool(stretch)
    lrs = [r["lr"] for r in rows]  # the schedule, spread over the new count, still falls to its end
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] == pytest.approx(
        1e-4 + 0.5 * (1e-2 - 1e-4) * (1 + np.cos(np.pi * (expected - 1) / expected)))
    clock.now = 0  # 12-s epochs: after one, 88 s left, 20 + 10 kept: 1 + (88 - 30) // 12 = 5 epochs,
    # then 0.83 of a sixth in the 10 s left beyond what is kept (a part epoch: see the test below)
    deadline = Deadline(end=100.0, reserve_s=20.0, epoch_s={"fine_tune": 12.0}, clock=clock, stretch=stretch,
                        margin_s=10.0)
    assert len(_timed_phase(clock, 12, 4, deadline, "cosine", "fine_tune")) == (6 if stretch else 4)


def test_a_stretched_phase_interrupted_resumes_to_its_stretched_count(tmp_path):
    """Grown from 4 to 12 epochs and killed in the 7th, the run resumes (with no deadline, as
    --resume does) to the 12 and the same falling rates, not to the config's 4."""
    from imgclf.record import RunRecord
    from imgclf.training.checkpoint import load_checkpoint

    def deadline(clock):
        return Deadline(end=100.0, reserve_s=20.0, epoch_s={"fine_tune": 5.0}, clock=clock, stretch=("fine_tune",),
                        margin_s=10.0)
    clock, record = FakeClock(), RunRecord(tmp_path)
    whole = _timed_phase(clock, 5, 4, deadline(clock), "cosine", "fine_tune")
    clock.now = 0
    with pytest.raises(KeyboardInterrupt):
        _timed_phase(clock, 5, 4, deadline(clock), "cosine", "fine_tune", killed_at=7, checkpoint=record)
    state = load_checkpoint(record)
    assert (state.phase_epochs, state.phase_total, state.phase_done) == (6, 12, False)
    rows = _timed_phase(clock, 5, 4, None, "cosine", "fine_tune", checkpoint=record, resume=state, rows=list(state.rows))
    assert [r["lr"] for r in rows] == pytest.approx([r["lr"] for r in whole]) and len(rows) == 12


def test_a_count_that_keeps_moving_the_same_way_is_said_once(capsys):
    """Each epoch slower than the last shrinks the phase again: one line says it; a later turn
    the other way (time left over) is said again, with sub-10-s epochs to a tenth."""
    clock = FakeClock()
    deadline = Deadline(end=100.0, reserve_s=10.0, epoch_s={}, clock=clock, stretch=("fine_tune",))
    moves = [(20, 2, 10.0, 20, 9), (40, 3, 20.0, 9, 5), (45, 4, 1.0, 5, 49)]  # now, done, last epoch, count, re-fitted
    for now, done, last, epochs, expected in moves:
        clock.now = now
        deadline.observe("fine_tune", last)
        assert deadline.retarget("fine_tune", done, epochs, planned=20) == expected
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("budget:")]
    assert [line.split(":")[1].split(" epochs")[0] for line in lines] == [" fine-tuning 20 -> 9", " fine-tuning 5 -> 49"]
    assert "about 1.0 s each" in lines[1]
    for now, last in [(50, 1.0), (60, 30.0), (61, 1.0)]:  # 49 -> 45 -> 6 -> 34: both ways said already
        clock.now = now
        deadline.observe("fine_tune", last)
        epochs = deadline.retarget("fine_tune", 5, epochs, planned=20)
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith("budget:")]


def test_a_planned_run_is_not_stopped_early_before_its_grown_epochs_are_done():
    """A re-fit may grow a phase to MAX_STRETCH x its planned epochs; early stopping with the
    planned count as patience stopped a grown photo run at 11 of 14 epochs (0.76 of its budget)."""
    from imgclf.config import load_config
    from imgclf.training.budget import apply
    from imgclf.training.deadline import MAX_STRETCH
    recipe = Recipe(160, 6, 1, 8, 9)
    planned = apply(load_config(None, {}), recipe).train
    assert planned.patience >= MAX_STRETCH * 9 and planned.schedule == "cosine" and planned.keep == "auto"
    assert apply(load_config(None, {"train.patience": 2}), recipe).train.patience == 2  # the user's stays


def test_a_possible_test_time_flip_is_priced_as_a_second_prediction_of_val_and_test():
    recipe = Recipe(96, 3, 2, 5, 5)
    once = expected_stages(recipe, SMALL, FakeCosts())
    twice = expected_stages(recipe, dataclasses.replace(SMALL, mirrored=True), FakeCosts())
    assert twice["predict"] == pytest.approx(2 * once["predict"])
    assert {k: v for k, v in twice.items() if k != "predict"} == {k: v for k, v in once.items() if k != "predict"}


def test_time_left_over_less_than_an_epoch_buys_a_part_of_one_at_the_lowest_rate(capsys):
    """4 cosine epochs of 8 batches, 3.75 s each (30 s an epoch), 165 s with 20 s reserved and a
    10-s margin: after the 4 epochs (120 s) the 45 s left hold 15 s beyond what is kept, half an
    epoch, so 4 more batches run, at the floor rate, and the run still ends inside its budget.
    With less left over, or when the phase may not grow, nothing is added."""
    import keras
    import tensorflow as tf

    from imgclf.config import TrainConfig
    from imgclf.training.phases import EarlyStopping, EpochLog, Phase, fit_phase

    def run(end, stretch):
        clock = FakeClock()
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
        data = tf.data.Dataset.from_tensor_slices((x, np.eye(2, dtype=np.float32)[np.arange(16) % 2])).batch(2)
        seen = []

        def batches(epoch):
            for xb, yb in data:
                clock.now += 3.75
                seen.append(epoch)
                yield xb, yb
        deadline = Deadline(end=end, reserve_s=20.0, epoch_s={"fine_tune": 30.0}, clock=clock, stretch=stretch,
                            margin_s=10.0)
        rows = fit_phase(Phase(model, batches, None, 8), "fine_tune", TrainConfig(patience=50, schedule="cosine"),
                         1e-2, 4, EarlyStopping(50, model), EpochLog(verbose=False), None, deadline=deadline)
        return rows, seen, clock.now
    rows, seen, ended = run(165.0, ("fine_tune",))
    assert [seen.count(e) for e in range(5)] == [8, 8, 8, 8, 4] and len(rows) == 5
    assert rows[-1]["lr"] == pytest.approx(1e-4) and rows[-2]["lr"] > 1e-4 and ended <= 165 - 20
    assert "budget: fine-tuning gets 0.50 of one more epoch at the lowest rate" in capsys.readouterr().out
    for end, stretch in ((155.0, ("fine_tune",)), (165.0, ())):  # 5 s over the margin: under 0.25 of an epoch
        rows, seen, _ = run(end, stretch)
        assert len(rows) == 4 and len(seen) == 32
    assert "one more epoch" not in capsys.readouterr().out


@pytest.mark.parametrize("budget", [300, 600, 900, 3600])
def test_a_set_large_enough_for_one_view_never_grows_views(budget):
    """Full Fashion-MNIST's target is one view; short of time it gives up fine-tuning epochs, and
    what is left short of an epoch must not buy views (it went to 4 views and 3 epochs: test
    validation 0.940, against 0.941-0.946 with one): the run's re-fit and part epoch spend it on training."""
    plan = make_plan(budget, FULL, FakeCosts(per_block=1e-3), median_side=28, **LITE)
    assert plan.recipe.views == 1
    small = make_plan(budget, SMALL, FakeCosts(), median_side=28, **LITE)
    assert small.recipe.views >= target_recipe(SMALL, 28, 224, 18).views  # small sets still grow them


@pytest.mark.parametrize("counts, flags, probes", [(FULL, {}, [(64, 10), (96, 3)]), (SMALL, {}, [(96, 3)]),
                                                   (SMALL, {"train.fine_tune_epochs": 12}, [(96, 3)]),
                                                   (FULL, {"data.image_size": 96}, [(96, 10), (96, 3)]),
                                                   (FULL, {"data.image_size": 96, "train.fine_tune_epochs": 0},
                                                    [(96, 10)])])
def test_no_budget_prices_the_former_recipe_by_a_probe_at_its_own_size_and_depth(monkeypatch, counts, flags, probes):
    """Full Fashion-MNIST's target (64 px, 10 blocks) differs from the former recipe (96 px, 3
    blocks); a fine-tuning step's time does not scale with the input's area (64 -> 96 px: 1.2x
    for 2.25x), so the former recipe is probed at its own size and depth rather than scaled from
    the target's probe (which priced it 1.5x what it took). Where they agree, one probe does.
    Flags the user gives are part of the former recipe too (the old defaults ran them)."""
    from types import SimpleNamespace

    from imgclf.backbones import get_spec
    from imgclf.config import load_config
    from imgclf.training import budget, probe
    seen, by_size = [], {64: FakeCosts(per_block=5e-4), 96: FakeCosts(per_block=2e-4)}

    def fake_probe(net, sample, cfg, build_s, blocks):
        seen.append((net.size, blocks))
        return by_size[net.size]
    monkeypatch.setattr(probe, "probe", fake_probe)
    priced = []

    def spy(counts, costs, former, elapsed_s):  # what the default budget is priced from, and what it comes to
        priced.append((former, costs, default_budget(counts, costs, former, elapsed_s)))
        return priced[-1][2]
    monkeypatch.setattr(budget, "default_budget", spy)
    paths = {split: [f"{split}/{i}.png" for i in range(n)]
             for split, n in zip(("train", "val", "test"), (counts.train, counts.val, counts.test))}
    sizes = {"width": {"median": 28}, "height": {"median": 28}}
    report = SimpleNamespace(sizes=sizes, to_dict=lambda: {"sizes": sizes})
    dataset = SimpleNamespace(paths=paths, decoded=set(paths["train"]), report=report)
    cfg = load_config(None, flags)
    started = __import__("time").monotonic()
    built = []

    def build(size):
        built.append(size)
        return SimpleNamespace(size=size)
    _, net, plan = budget.plan_run(cfg, get_spec("efficientnet_lite0"), dataset, started, False, build)
    assert seen == probes and built == list(dict.fromkeys(s for s, _ in probes))  # a network per size, once
    former = Recipe(96, 3, 4 if counts is SMALL else 1, 10, flags.get("train.fine_tune_epochs", 5))
    expected = sum(expected_stages(former, counts, by_size[96]).values())
    [(priced_former, costs, default)] = priced
    assert priced_former == former and costs is by_size[96]  # the 96-px probe, never the 64-px one scaled
    assert expected - 0.1 <= default < expected + 5  # and the seconds spent before the probe
    assert plan.budget_s >= default  # (stretched where even the smallest plan needs more)
    assert net.size == plan.recipe.image_size
