"""The fast path: caches equal what the network computes, and train the same model."""
import dataclasses

import numpy as np
import pytest

from imgclf.config import RunConfig, TrainConfig
from imgclf.training.features import CachedData, allocate
from imgclf.training.views import ViewBatches, choose_views
from imgclf.training.model import build_network
from imgclf.training.phases import EpochLog, PlainData, fit_two_phase

SIZE, CLASSES, N = 32, 3, 24


def _arrays(n=N, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % CLASSES
    images = rng.integers(0, 90, (n, SIZE, SIZE, 3)).astype(np.uint8)
    images[np.arange(n), :, :, labels] += 150
    return images, labels


def _cfg(**train):
    train = {"epochs": 2, "fine_tune_epochs": 1, "views": 2, "fine_tune_blocks": 2, **train}
    return dataclasses.replace(RunConfig(), train=TrainConfig(**train))


@pytest.fixture(scope="module")
def net():
    return build_network("efficientnet_lite0", CLASSES, SIZE, seed=0)


def test_split_base_recomposes_the_base(net):
    bottom, top = net.split_base(blocks=2)
    x = _arrays()[0][:4].astype(np.float32)
    np.testing.assert_allclose(top(bottom(x)).numpy(), net.base(x).numpy(), atol=1e-5)
    # a cut by layer count that falls inside a block moves down to the block's start
    _, top_layers = net.split_base(layers=2)
    assert any(layer.name.endswith("conv") for layer in top_layers.layers)


def _assert_fp16_equal(cached, reference):
    """The float16 cache holds the float32 values to float16 precision: within one float16 step
    (plus a hair for float32 differences between runtimes that can round the other way)."""
    assert cached.dtype == np.float16
    step = np.spacing(np.abs(reference).astype(np.float16)).astype(np.float32)
    assert np.all(np.abs(cached.astype(np.float32) - reference) <= step + 1e-4)


def test_cached_features_equal_the_networks_outputs(net, tmp_path):
    images, labels = _arrays()
    for fine_tune in (0, 1):
        data = CachedData(net, _cfg(fine_tune_epochs=fine_tune), (images, labels), (images[:6], labels[:6]),
                          tmp_path)
        x = images.astype(np.float32)
        pooled = net.pool(net.base(x)).numpy()
        if fine_tune:  # pooled from the float16 activations: their rounding, carried through the top
            assert data.feats.dtype == np.float16
            np.testing.assert_allclose(data.feats[0], pooled, atol=1e-3 * np.abs(pooled).max())
        else:
            _assert_fp16_equal(data.feats[0], pooled)  # view 0: unaugmented
            _assert_fp16_equal(data.val_feats[0], pooled[:6])
        assert not np.allclose(data.feats[1], data.feats[0])  # view 1: augmented
        # what the head sees from the float16 cache is what it would see from float32 features
        head = net.head
        np.testing.assert_array_equal(head(next(ViewBatches(data.feats, labels, CLASSES, N, shuffle=False)
                                                .epoch(0))[0]).numpy().argmax(1), head(pooled).numpy().argmax(1))
    bottom, _ = net.split_base(blocks=2)
    _assert_fp16_equal(data.acts[0], bottom(x).numpy())


def test_cache_over_the_memory_budget_goes_to_disk(net, tmp_path):
    images, labels = _arrays()
    cfg = _cfg(cache_memory_mb=0)
    data = CachedData(net, cfg, (images, labels), (images[:6], labels[:6]), tmp_path)
    assert isinstance(data.feats, np.memmap) and isinstance(data.acts, np.memmap)
    assert (tmp_path / "train_activations.npy").stat().st_size >= data.acts.nbytes
    assert data.stats["cache_mb"] > 0
    assert data.stats["cache_mb_on_disk"] == pytest.approx(data.stats["cache_mb"])
    assert data.feats.dtype == data.acts.dtype == np.float16
    small = allocate((2, 3), 1024, tmp_path / "never.npy")
    assert not isinstance(small, np.memmap) and not (tmp_path / "never.npy").exists()
    assert small.dtype == np.float16 and allocate((2, 3), 1024, tmp_path / "x.npy", np.float32).dtype == np.float32
    # the budget counts float16 bytes: 256 values fit in 512 bytes, 257 do not
    assert not isinstance(allocate((256,), 512, tmp_path / "fits.npy"), np.memmap)
    big = allocate((257,), 512, tmp_path / "big.npy")
    assert isinstance(big, np.memmap) and big.dtype == np.float16


def test_view_batches_rotate_views_and_reshuffle():
    cache = np.stack([np.zeros((10, 2)), np.ones((10, 2))]).astype(np.float16)
    batches = ViewBatches(cache, np.arange(10) % 2, 2, batch_size=4, seed=1)
    first = list(batches.epoch(0))
    assert len(batches) == 3 and [len(x) for x, _ in first] == [4, 4, 2]
    assert all(x.dtype == np.float32 for x, _ in first)  # float16 cache, float32 batches
    assert all((x == 0).all() for x, _ in first) and all((x == 1).all() for x, _ in batches.epoch(1))
    labels_0 = np.concatenate([y.argmax(1) for _, y in first])
    labels_2 = np.concatenate([y.argmax(1) for _, y in batches.epoch(2)])
    assert sorted(labels_0) == sorted(labels_2) and not np.array_equal(labels_0, labels_2)



def test_mixup_mixes_training_batches_with_themselves_and_never_validation():
    """Each mixed row is w * its own row + (1 - w) * another row of the same batch, features and
    one-hot labels alike, with one w >= 0.5 a batch; the same seed mixes the same way; without
    mixup and for validation (unshuffled) the batches are the cache's rows as they are."""
    rng = np.random.default_rng(0)
    cache, labels = rng.normal(size=(1, 12, 3)).astype(np.float32), np.arange(12)  # a class a row: y names the rows

    def epoch(**kw):
        return list(ViewBatches(cache, labels, 12, batch_size=4, seed=5, **kw).epoch(0))
    plain, mixed = epoch(), epoch(mixup=0.4)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(mixed, epoch(mixup=0.4)))
    weights = set()
    for (x0, y0), (x, y) in zip(plain, mixed):
        np.testing.assert_allclose(y.sum(1), 1.0, rtol=1e-6)
        rows = y0.argmax(1)
        for i, own in enumerate(rows):
            w = y[i, own]
            other = [c for c in np.flatnonzero(y[i] > 1e-7) if c != own]  # none: mixed with itself
            partner = x0[list(rows).index(other[0])] if other else x0[i]
            np.testing.assert_allclose(x[i], w * x0[i] + (1 - w) * partner, atol=1e-5)
            if other:
                weights.add(round(float(w), 6))
    assert weights and min(weights) >= 0.5 and len(weights) > 1  # one draw a batch, the larger side kept
    val = list(ViewBatches(cache, labels, 12, batch_size=4, shuffle=False, mixup=0.4).epoch(0))
    np.testing.assert_array_equal(np.concatenate([x for x, _ in val]), cache[0])

def _weights(layers):
    return {f"{layer.name}/{i}": np.array(w) for layer in layers for i, w in enumerate(layer.get_weights())}


def test_cached_two_phases_train_the_same_kind_of_model(tmp_path):
    images, labels = _arrays(48)
    cached_net = build_network("efficientnet_lite0", CLASSES, SIZE, seed=0)
    plain_net = build_network("efficientnet_lite0", CLASSES, SIZE, seed=0)
    cached, plain = cached_net.model, plain_net.model
    before = _weights(cached_net.base.layers)
    cfg = _cfg(epochs=3, fine_tune_epochs=2, lr=1e-2, patience=5)
    data = CachedData(cached_net, cfg, (images, labels), (images[:12], labels[:12]), tmp_path)
    rows = fit_two_phase(cached_net, cfg.train, data, EpochLog(verbose=False))
    assert {r["phase"] for r in rows} == {"head", "fine_tune"}
    after = _weights(cached_net.base.layers)
    changed = {k.split("/")[0] for k in before if not np.array_equal(before[k], after[k])}
    unfrozen = set(plain_net.unfreeze_top(blocks=2))
    assert changed and changed <= unfrozen  # only unfrozen layers moved; no BatchNorm statistics
    assert [w.shape for w in cached.weights] == [w.shape for w in plain.weights]
    assert [layer.name for layer in cached.layers] == [layer.name for layer in plain.layers]
    probs = cached(images.astype(np.float32), training=False).numpy()
    assert (probs.argmax(1) == labels).mean() > 1 / CLASSES  # it learned something real
    path = tmp_path / "m.keras"
    cached.save(path)
    import keras
    import imgclf.backbones.layers  # noqa: F401
    reloaded = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(reloaded(images[:5].astype(np.float32)).numpy(), probs[:5], atol=1e-5)
    assert reloaded.get_layer("head").output_shape == (None, CLASSES)


def test_plain_data_is_the_same_phase_for_both():
    sentinel = object()

    class Dataset:
        def cardinality(self):
            return 7
    data = PlainData(sentinel, Dataset(), None)
    assert data.head_phase().trainee is sentinel and data.fine_tune_phase().steps == 7
    assert data.head_phase().val is None


def test_tflite_forward_agrees_with_keras(net):
    from imgclf.runtime.forward import compile_forward
    bottom, _ = net.split_base(blocks=2)
    x = _arrays(5)[0].astype(np.float32)
    fast = compile_forward(bottom, "tflite", batch_size=4)
    out = np.concatenate([fast(x[:4]), fast(x[4:])])  # a short last batch is padded, then cut
    reference = bottom(x, training=False).numpy()
    assert out.shape == reference.shape
    np.testing.assert_allclose(out, reference, atol=2e-3 * np.abs(reference).max())


def test_conversion_cache_key_follows_weights_not_trainable_flags():
    from imgclf.runtime.forward import model_key
    net = build_network("efficientnet_lite0", CLASSES, SIZE, seed=0)
    bottom, _ = net.split_base(blocks=2)
    before = model_key(bottom)
    net.freeze_base()
    net.unfreeze_top(blocks=2)  # the bottom is frozen now, not changed
    assert model_key(net.split_base(blocks=2)[0]) == before
    layer = next(layer for layer in bottom.layers if layer.weights)
    layer.set_weights([w + 1 for w in layer.get_weights()])
    assert model_key(bottom) != before


def test_runtime_choice():
    from imgclf.runtime.forward import choose_runtime
    assert choose_runtime("auto", 10) == "tf" and choose_runtime("auto", 50_000) == "tflite"
    assert choose_runtime("tf", 50_000) == "tf"


def test_views_are_the_augmenters_own_draws_seeded_by_view_and_batch():
    from imgclf.data.augment import build_augmenter, reseed
    from imgclf.config import AugmentConfig
    from imgclf.training.views import run_views
    images = _arrays(10)[0]
    out = np.empty((3, 10, SIZE, SIZE, 3), np.float32)
    run_views(lambda x: x, images, 3, build_augmenter(AugmentConfig(), 5), out, batch_size=4)
    eager = build_augmenter(AugmentConfig(), 5)  # the same seed, called batch by batch

    def batch(v, b):  # batch b of view v draws as the seed state (seed, key) of its own says
        reseed(eager, v * 3 + b)
        return eager(images[4 * b:4 * b + 4].astype(np.float32), training=True)
    expected = [images.astype(np.float32)] + [np.concatenate([batch(v, b) for b in range(3)]) for v in (1, 2)]
    np.testing.assert_array_equal(out, np.stack(expected))
    assert not np.array_equal(out[1], out[2])  # the views differ


def test_shards_of_whole_batches_make_the_rows_of_one_pass():
    """Each worker's span of whole batches, run alone (a fresh augmenter, as in another
    process), gives exactly its rows of the single pass: what the exchanged cache relies on."""
    from imgclf.data.augment import build_augmenter
    from imgclf.config import AugmentConfig
    from imgclf.data.shards import Shard
    from imgclf.training.views import run_views
    images = _arrays(11)[0]
    whole = np.empty((3, 11, SIZE, SIZE, 3), np.float32)
    run_views(lambda x: x, images, 3, build_augmenter(AugmentConfig(), 5), whole, batch_size=4)
    assert [Shard(r, 2).span(11, 4) for r in range(2)] == [(0, 4), (4, 11)]
    assert [Shard(r, 3).span(11, 4) for r in range(3)] == [(0, 4), (4, 8), (8, 11)]
    assert [Shard(r, 4).span(5, 4) for r in range(4)] == [(0, 0), (0, 4), (4, 4), (4, 5)]  # more workers than batches
    for count in (2, 3):
        spans = [Shard(r, count).span(11, 4) for r in range(count)]
        assert [i for s, e in spans for i in range(s, e)] == list(range(11))  # every row once, in order
        merged = np.full_like(whole, np.nan)
        for span in spans:
            run_views(lambda x: x, images, 3, build_augmenter(AugmentConfig(), 5), merged, batch_size=4, span=span)
        np.testing.assert_array_equal(merged, whole)


def test_views_are_chosen_by_training_set_size(tmp_path):
    assert [choose_views(0, n) for n in (0, 900, 9_999, 10_000, 50_000, 50_001)] == [4, 4, 4, 2, 2, 1]
    assert choose_views(3, 100_000) == 3  # an explicit count is kept ...
    assert choose_views(0, 900, epochs=2) == choose_views(8, 900, epochs=2) == 2  # ... up to the views read
    images, labels = _arrays()
    data = CachedData(build_network("efficientnet_lite0", CLASSES, SIZE, seed=0),
                      _cfg(views=0, epochs=5, fine_tune_epochs=0, runtime="tf"), (images, labels),
                      (images[:0], labels[:0]), tmp_path)
    assert data.stats["views"] == data.feats.shape[0] == 4


@pytest.mark.parametrize("fine_tune, runtime", [(0, "tflite"), (1, "tflite"), (1, "tf")])
def test_fast_predict_agrees_with_keras_predict(tmp_path, fine_tune, runtime):
    images, labels = _arrays(48)
    net = build_network("efficientnet_lite0", CLASSES, SIZE, seed=0)
    model = net.model
    # 3 head epochs: a model decisive enough that most test images are no near-tie (see `clear`)
    cfg = _cfg(epochs=3, fine_tune_epochs=fine_tune, lr=1e-2, runtime=runtime)
    data = CachedData(net, cfg, (images, labels), (images[:12], labels[:12]), tmp_path)
    fit_two_phase(net, cfg.train, data, EpochLog(verbose=False))
    test = _arrays(70, seed=1)[0]  # more than a batch, with a short last one
    fast = data.predict(test)
    reference = model.predict(test.astype(np.float32), batch_size=32, verbose=0)
    assert fast.shape == reference.shape and fast.dtype == np.float32
    np.testing.assert_allclose(fast, reference, atol=2e-3)
    margin = np.diff(np.sort(reference, axis=1)[:, -2:], axis=1)[:, 0]
    clear = margin > 4e-3  # LiteRT's rounding may only reorder near-ties
    assert clear.mean() > 0.9 and np.array_equal(fast.argmax(1)[clear], reference.argmax(1)[clear])


@pytest.mark.parametrize("fine_tune", [0, 1])
def test_a_deadline_stops_the_views_early_and_the_phases_read_only_those_made(net, tmp_path, fine_tune):
    """When the deadline says one more view would overrun (here: before the third), the caches
    hold the two views made, and epoch 3 reads view 3 mod 2 = 1 of them."""
    class StopsAtTwo:  # the Deadline's part the cache asks (its timing rule: test_planner.py)
        asked = []

        def ends_views(self, done, views, view_s):
            self.asked.append((done, views))
            return done >= 2
    images, labels = _arrays()
    cfg = _cfg(views=4, epochs=4, fine_tune_epochs=fine_tune, runtime="tf")
    deadline = StopsAtTwo()
    data = CachedData(net, cfg, (images, labels), (images[:6], labels[:6]), tmp_path, deadline=deadline)
    assert deadline.asked == [(1, 4), (2, 4)]
    assert data.stats["views"] == data.views == data.feats.shape[0] == 2 and data.stats["views_planned"] == 4
    cache = data.acts if fine_tune else data.feats
    assert cache.shape[0] == 2
    phase = data.fine_tune_phase() if fine_tune else data.head_phase()
    x3 = next(iter(phase.train(3)))[0]
    order = np.random.default_rng([cfg.seed, 3]).permutation(N)[:len(x3)]
    np.testing.assert_array_equal(x3, cache[1][order].astype(np.float32))
    full = CachedData(net, cfg, (images, labels), (images[:6], labels[:6]), tmp_path)
    assert full.stats["views"] == 4 and "views_planned" not in full.stats
    np.testing.assert_array_equal(full.feats[:2], data.feats)  # the views made are the same draws


def _photo_job(tmp_path, net, **train):
    """A Job over 12 JPEGs large enough that load_dataset does not keep them decoded."""
    from PIL import Image

    from imgclf.data import load_dataset
    from imgclf.training.prepare import Job
    images, labels = _arrays(12)
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = tmp_path / "photos" / f"c{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).resize((160, 160)).save(folder / f"{i}.jpg")
    dataset = load_dataset(tmp_path / "photos", val_fraction=0.25, test_fraction=0.25, seed=0)
    assert not dataset.decoded  # photos: decoded again at the run's size
    cfg = _cfg(**train)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_size=SIZE))
    return Job(cfg, dataset, net)


def test_the_cache_estimate_is_the_cache_built(net, tmp_path):
    from imgclf.training.prepare import cache_bytes
    job = _photo_job(tmp_path, net)
    images, labels = _arrays()
    data = CachedData(net, job.cfg, (images[:6], labels[:6]), (images[:3], labels[:3]), tmp_path / "cache")
    assert cache_bytes(job) == pytest.approx(data.stats["cache_mb"] * 2**20)
    assert cache_bytes(dataclasses.replace(job, cfg=dataclasses.replace(
        job.cfg, train=dataclasses.replace(job.cfg.train, feature_cache=False)))) == 0


def test_images_over_the_memory_budget_are_read_from_the_runs_disk(net, tmp_path):
    """Images that with the expected cache overrun train.cache_memory_mb are decoded into the
    run's cache folder and read from it; below the budget they stay in memory."""
    from imgclf.data import DiskImages
    from imgclf.record import RunRecord
    from imgclf.training.prepare import load_split_images
    record = RunRecord(tmp_path / "run")
    held = load_split_images(_photo_job(tmp_path / "a", net), record)
    assert all(type(a) is np.ndarray for a in held.values()) and not record.cache_dir.exists()
    streamed = load_split_images(_photo_job(tmp_path / "b", net, cache_memory_mb=0), record)
    assert all(isinstance(a, DiskImages) for a in streamed.values())
    assert len(list(record.cache_dir.glob("images-*.npy"))) == 3
    for split in held:
        np.testing.assert_array_equal(np.asarray(streamed[split]), held[split])


@pytest.mark.parametrize("cache_memory_mb", [1024, 0], ids=["in-memory", "on-disk"])
def test_a_worker_of_several_decodes_only_its_shards(net, tmp_path, cache_memory_mb):
    """On the cached path worker r of R holds only its shard of each split decoded (whole
    64-image batches, those the cache and the predictions read); reading any row still gives
    the pixels one process decodes. The plain path (every worker reads every batch) decodes all."""
    from imgclf.data.shards import ShardImages
    from imgclf.record import RunRecord
    from imgclf.training.distribute import Cluster
    from imgclf.training.exchange import WorkerShards
    from imgclf.training.features import BATCH
    from imgclf.training.prepare import load_split_images
    job = _photo_job(tmp_path / "a", net, cache_memory_mb=cache_memory_mb)
    job.dataset.paths["train"] = job.dataset.paths["train"] * 20  # 120 rows: two batches of 64
    job.dataset.labels["train"] = np.tile(job.dataset.labels["train"], 20)
    one = load_split_images(job, RunRecord(tmp_path / "one"))
    shards = WorkerShards(Cluster(("a:1", "b:2"), 1))
    mine = load_split_images(job, RunRecord(tmp_path / "w1"), shards)
    assert isinstance(mine["train"], ShardImages) and (mine["train"].start, mine["train"].stop) == (BATCH, 120)
    for split in mine:
        np.testing.assert_array_equal(np.asarray(mine[split]), np.asarray(one[split]))
    plain = dataclasses.replace(job, cfg=dataclasses.replace(
        job.cfg, train=dataclasses.replace(job.cfg.train, feature_cache=False)))
    assert not any(isinstance(a, ShardImages) for a in load_split_images(plain, RunRecord(tmp_path / "p"),
                                                                         shards).values())


def test_a_cache_that_fits_nowhere_falls_back_alone_but_stops_a_cluster(net, tmp_path, monkeypatch, capsys):
    """One process trains on the plain path instead; a worker of several must not (its peers
    would wait on the cached path's steps), so it stops with one line."""
    from imgclf.errors import ImgclfError
    from imgclf.training import features
    from imgclf.training.distribute import Cluster
    from imgclf.training.phases import PlainData
    from imgclf.training.prepare import phase_data_for
    job = _photo_job(tmp_path, net)
    images, _ = _arrays(12)
    arrays = {"train": images[:6], "val": images[6:9], "test": images[9:]}

    def no_room(*args, **kwargs):
        raise MemoryError("cache of 9 MB fits neither the memory budget nor the disk")
    monkeypatch.setattr(features, "CachedData", no_room)
    data, stats = phase_data_for(job, arrays, tmp_path / "cache", verbose=False)
    assert isinstance(data, PlainData) and stats is None and "plain path instead" in capsys.readouterr().out
    pair = Cluster(("127.0.0.1:1", "127.0.0.1:2"), 1)
    with pytest.raises(ImgclfError, match=r"worker 1 of 2 .*fits neither.*every worker must take the same path"):
        phase_data_for(job, arrays, tmp_path / "cache", verbose=False, cluster=pair)


def test_frozen_conversion_computes_what_the_keras_conversion_does(net, tmp_path, monkeypatch, capfd):
    """The feature cache converts through a frozen graph (faster than from_keras_model); both
    conversions must compute the same, and the cache must write what it converted, quietly."""
    from imgclf.runtime.forward import tflite_bytes
    from imgclf.runtime.litert import LiteRTRuntime, convert_tflite
    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(tmp_path))
    _, top = net.split_base(blocks=2)
    x = np.random.default_rng(0).normal(size=(3,) + tuple(top.inputs[0].shape[1:])).astype(np.float32)
    capfd.readouterr()
    converted = tflite_bytes(top)
    assert capfd.readouterr() == ("", "")  # absl warned of the frozen function's missing trackable object
    fast = LiteRTRuntime(converted, pad_to=3, classifier=False)(x)
    keras_way = LiteRTRuntime(convert_tflite(top, "float"), pad_to=3, classifier=False)(x)
    assert np.isfinite(fast).all()  # converted with its variables unfrozen, it gives NaN
    np.testing.assert_allclose(fast, keras_way, atol=1e-5 * np.abs(keras_way).max())
    np.testing.assert_allclose(fast, top(x, training=False).numpy(), atol=2e-3 * np.abs(keras_way).max())
    assert [p.read_bytes() for p in (tmp_path / "tflite").glob("*.tflite")] == [tflite_bytes(top)]  # cached, read back
