"""The two phases really train what they should, and nothing else."""
import numpy as np
import pytest
import tensorflow as tf

from imgclf.config import TrainConfig
from imgclf.errors import ImgclfError
from imgclf.training.model import build_network
from imgclf.training.phases import EarlyStopping, EpochLog, Phase, PlainData, Schedule, fit_phase, fit_two_phase
from imgclf.training.steps import FusedAdam

SIZE, CLASSES = 32, 3


def _toy_data(n=48, seed=0):
    """Three separable classes: red, green and blue tinted noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % CLASSES
    images = rng.uniform(0, 80, (n, SIZE, SIZE, 3)).astype(np.float32)
    images[np.arange(n), :, :, labels] += 150
    onehot = np.eye(CLASSES, dtype=np.float32)[labels]
    return tf.data.Dataset.from_tensor_slices((images, onehot)).batch(16)


def _snapshot(layers):
    return {f"{layer.name}/{i}": np.array(w) for layer in layers for i, w in enumerate(layer.get_weights())}


@pytest.fixture(scope="module")
def net():
    return build_network("efficientnet_lite0", CLASSES, SIZE, seed=1)


def test_phase1_trains_head_only(net):
    model = net.model
    net.freeze_base()
    base_before, head_before = _snapshot(net.base.layers), _snapshot(net.head.layers)
    cfg = TrainConfig(epochs=2, fine_tune_epochs=0)
    phase = Phase(model, lambda e: _toy_data(), lambda: _toy_data(seed=1), 3)
    rows = fit_phase(phase, "head", cfg, 1e-2, 2, EarlyStopping(5, model), EpochLog(verbose=False), None)
    assert len(rows) == 2
    base_after, head_after = _snapshot(net.base.layers), _snapshot(net.head.layers)
    assert all(np.array_equal(base_before[k], base_after[k]) for k in base_before)
    assert any(not np.array_equal(head_before[k], head_after[k]) for k in head_before)


def test_phase2_trains_top_and_keeps_batchnorm_statistics(net):
    model = net.model
    names = net.unfreeze_top(blocks=2)
    assert names and all("bn" not in n for n in names)
    base = net.base
    before = _snapshot(base.layers)
    cfg = TrainConfig(epochs=1, fine_tune_epochs=1)
    phase = Phase(model, lambda e: _toy_data(), None, 3)
    fit_phase(phase, "fine_tune", cfg, 1e-3, 1, EarlyStopping(5, model), EpochLog(verbose=False), None)
    after = _snapshot(base.layers)
    changed = {k.split("/")[0] for k in before if not np.array_equal(before[k], after[k])}
    assert changed == set(names)  # exactly the unfrozen layers moved; BatchNorm stats did not


def test_unfreeze_by_layers_and_too_many(net):
    names = net.unfreeze_top(layers=5)
    assert 1 <= len(names) <= 5  # BatchNorm layers among the top 5 stay frozen
    with pytest.raises(ImgclfError, match="more than efficientnet_lite0 has"):
        net.unfreeze_top(layers=100_000)
    with pytest.raises(ImgclfError, match="blocks"):
        net.unfreeze_top(blocks=1000)


def test_two_phases_learn_and_restore_best():
    net = build_network("efficientnet_lite0", CLASSES, SIZE, seed=2)
    model = net.model
    cfg = TrainConfig(epochs=4, fine_tune_epochs=2, lr=1e-2, fine_tune_blocks=1, patience=2)
    rows = fit_two_phase(net, cfg, PlainData(model, _toy_data(), _toy_data(seed=3)), EpochLog(verbose=False))
    phases = [r["phase"] for r in rows]
    assert phases[0] == "head" and "fine_tune" in phases
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))
    best = min(r["val_loss"] for r in rows)
    # "learns": the classes differ by their mean colour, which a linear model on channel means
    # separates perfectly; chance is 1/3, and 44 of 48 right by chance has p < 1e-15. 0.9 leaves
    # room for a few hard noise images, not for a model that has not learnt the task.
    assert max(r["val_accuracy"] for r in rows) >= 0.9
    # the model ends with the weights of the best validation epoch
    x, y = next(iter(_toy_data(seed=3).unbatch().batch(48)))
    probs = model(x, training=False).numpy()
    loss = -np.mean(np.log(np.clip(probs[np.arange(len(y)), y.numpy().argmax(1)], 1e-7, 1)))
    assert loss == pytest.approx(best, rel=1e-3)


def test_keep_last_ends_with_the_last_epochs_weights():
    net = build_network("efficientnet_lite0", CLASSES, SIZE, seed=2)
    cfg = TrainConfig(epochs=3, fine_tune_epochs=2, lr=1e-2, fine_tune_blocks=1, patience=5, keep="last")
    rows = fit_two_phase(net, cfg, PlainData(net.model, _toy_data(), _toy_data(seed=3)), EpochLog(verbose=False))
    x, y = next(iter(_toy_data(seed=3).unbatch().batch(48)))
    probs = net.model(x, training=False).numpy()
    loss = -np.mean(np.log(np.clip(probs[np.arange(len(y)), y.numpy().argmax(1)], 1e-7, 1)))
    assert len(rows) == 5 and loss == pytest.approx(rows[-1]["val_loss"], rel=1e-3)

    class Fake:
        def get_weights(self):
            raise AssertionError("keep='last' copies no weights")
    stopper = EarlyStopping(1, Fake(), keep="last")
    assert not stopper.update(1.0, 1) and stopper.update(1.5, 2) and stopper.best_epoch == 1
    stopper.restore()  # nothing to restore: the last weights stay


def test_early_stopping_and_schedules():
    class Fake:
        def get_weights(self):
            return [np.zeros(1)]
    stopper = EarlyStopping(2, Fake())
    assert not stopper.update(1.0, 1)
    assert not stopper.update(1.1, 2)
    assert stopper.update(1.2, 3) and stopper.best_epoch == 1
    plateau = Schedule("plateau", 1e-3, 10, patience=2)
    plateau.after_epoch(1.0)
    plateau.after_epoch(1.0)
    assert plateau.current == pytest.approx(5e-4)
    cosine = Schedule("cosine", 1e-3, 10, patience=2)
    assert cosine.at_epoch(0) == pytest.approx(1e-3) and cosine.at_epoch(5) < 6e-4


@pytest.mark.parametrize("amsgrad", [False, True])
def test_fused_adam_takes_keras_adams_steps(amsgrad):
    """Same weights and slots as Keras' Adam after a few steps (to float rounding), and the same
    slot variables in the same order, so checkpoints written by one resume in the other."""
    import keras
    x = tf.constant(np.random.default_rng(1).normal(size=(16, 5)).astype("float32"))
    results = []
    for cls in (keras.optimizers.Adam, FusedAdam):
        keras.utils.set_random_seed(0)
        net = keras.Sequential([keras.Input((5,)), keras.layers.Dense(7), keras.layers.Dense(3)])
        opt = cls(learning_rate=1e-2, amsgrad=amsgrad)
        opt.build(net.trainable_variables)
        initial = net.get_weights()

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((net(x) - 1.0) ** 2)
            opt.apply_gradients(zip(tape.gradient(loss, net.trainable_variables), net.trainable_variables))
        for _ in range(25):
            step()
        assert not np.allclose(net.get_weights()[0], initial[0], atol=1e-3)  # it trained
        results.append((net.get_weights(), [v.numpy() for v in opt.variables]))
    (w_keras, s_keras), (w_fused, s_fused) = results
    assert [s.shape for s in s_fused] == [s.shape for s in s_keras]
    for a, b in zip(w_keras + s_keras, w_fused + s_fused):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _features(n=64, seed=0, dim=12):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % CLASSES
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x[np.arange(n), labels] += 2.0
    return tf.data.Dataset.from_tensor_slices((x, np.eye(CLASSES, dtype=np.float32)[labels])).batch(16)


def _head_phase(agree):
    from imgclf.training.model import build_head
    head = build_head(12, CLASSES, dropout=0.3, hidden_units=8, seed=4)
    phase = Phase(head, lambda e: _features(), lambda: _features(seed=1), 4, agree)
    rows = fit_phase(phase, "head", TrainConfig(epochs=3), 1e-2, 3, EarlyStopping(5, head), EpochLog(verbose=False), None)
    return head, rows


def test_a_phase_every_worker_trains_alone_is_one_process_s_and_ends_on_worker_0_s_weights_and_scores():
    one_head, one_rows = _head_phase(None)
    same_head, same_rows = _head_phase(lambda values: values)  # one worker: agreeing changes nothing
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in same_rows] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in one_rows]  # dropout included
    for a, b in zip(one_head.get_weights(), same_head.get_weights()):
        np.testing.assert_array_equal(a, b)

    sent = []

    def worker_0s(values):  # another worker's weights (+0.5 each) and its scores (10, 11, ...)
        sent.append(values.copy())
        n = sum(w.size for w in one_head.get_weights())
        return np.concatenate([values[:n] + 0.5, 10.0 + np.arange(len(values) - n)])
    head, rows = _head_phase(worker_0s)
    assert len(sent) == 3 and all(r["loss"] == 10.0 and r["val_loss"] > 10.0 for r in rows)
    flat = np.concatenate([w.ravel() for w in head.get_weights()])
    np.testing.assert_allclose(flat, sent[-1][:flat.size] + 0.5, rtol=1e-6)  # the trainee holds worker 0's
