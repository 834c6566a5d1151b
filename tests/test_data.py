"""data.py: layouts, bad files, stratified seeded splits, split.csv round trip, arrays, pipelines."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import _corpus
from imgclf import data
from imgclf.data import arrays as data_arrays
from imgclf.data import dataset as data_dataset
from imgclf.data import pipeline
from imgclf.config import AugmentConfig
from imgclf.errors import ImgclfError
from imgclf.data.images import BadImage, read_image


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Class folders of solid-colour PNGs (20 per class), plus bad and non-image files."""
    root = _corpus.write_classes(tmp_path_factory.mktemp("fruit") / "fruit", per_class=20)
    bad = _corpus.write_bad(root / "apple" / "nested")  # nested below a class folder
    good = _corpus.write_good(root / "grape" / "formats")
    (root / "lime" / ".DS_Store").write_bytes(b"\x00\x01")
    (root / "lime" / "notes.txt").write_text("hello")
    (root / "README.md").write_text("fruit")
    return {"root": root, "bad": bad, "good": good}


@pytest.fixture(scope="module")
def fruit(tree):
    return data.load_dataset(tree["root"], seed=42, workers=2)


def total(ds: data.Dataset) -> int:
    return sum(len(p) for p in ds.paths.values())


def test_bad_files_are_listed_with_reasons_and_good_ones_kept(tree, fruit):
    skipped = dict(fruit.report.skipped)
    for path, reason in tree["bad"].values():
        assert skipped[str(path)].startswith(reason)
    root = tree["root"]
    assert skipped[str(root / "lime" / ".DS_Store")] == "hidden"
    assert skipped[str(root / "lime" / "notes.txt")] == "not an image extension"
    assert skipped[str(root / "README.md")] == "not inside a class folder"
    assert len(skipped) == 7
    assert total(fruit) == 60 + len(tree["good"])  # every good format kept
    assert fruit.class_names == ["apple", "grape", "lime"] and fruit.layout == "class-folders"
    text = fruit.report.format_text()
    for path in skipped:
        assert path in text


def test_report_counts_sizes_modes_and_json(tree, fruit):
    report = fruit.report.to_dict()
    json.dumps(report)
    counts = report["counts"]
    assert sum(counts["train"].values()) + sum(counts["val"].values()) + sum(counts["test"].values()) == total(fruit)
    assert counts["train"]["apple"] == len([y for y in fruit.labels["train"] if y == 0])
    assert report["sizes"]["width"]["min"] == 4 and report["sizes"]["width"]["max"] == 32
    assert report["sizes"]["width"]["median"] == 12
    assert report["modes"]["I;16"] == 1 and report["modes"]["CMYK"] == 1 and report["modes"]["RGB"] > 60
    assert report["imbalance"] == pytest.approx((20 + len(tree["good"])) / 20, abs=0.01)
    assert report["skipped"][0].keys() == {"path", "reason"}


def test_stratified_split_proportions_per_class(tmp_path):
    root = _corpus.write_classes(tmp_path / "c", per_class=50)
    ds = data.load_dataset(root, val_fraction=0.2, test_fraction=0.1, seed=1)
    for y in range(3):
        assert [int((ds.labels[s] == y).sum()) for s in data.SPLITS] == [35, 10, 5]
    assert sorted(sum(ds.paths.values(), [])) == sorted(str(p) for p in root.rglob("*.png"))


def test_same_seed_same_split_other_seed_other_split(tmp_path):
    root = _corpus.write_classes(tmp_path / "c", per_class=30)
    a, b = data.load_dataset(root, seed=3), data.load_dataset(root, seed=3)
    c = data.load_dataset(root, seed=4)
    assert a.paths == b.paths
    assert a.paths["test"] != c.paths["test"] and a.paths["val"] != c.paths["val"]
    assert all(p == sorted(p) for p in a.paths.values())


def test_tiny_classes_are_split_without_crashing(tmp_path):
    root = _corpus.write_classes(tmp_path / "c", per_class=3)
    shutil.rmtree(root / "lime")
    _corpus.write_classes(tmp_path / "c", per_class=1, classes={"lime": (0, 255, 0)})
    ds = data.load_dataset(root, val_fraction=0.2, test_fraction=0.2)
    assert total(ds) == 7
    assert 2 in ds.labels["train"] and 2 not in ds.labels["val"]  # one image: stays in train
    assert set(ds.labels["train"]) == {0, 1, 2}


def test_split_folders_carve_missing_val_from_train(tmp_path):
    _corpus.write_classes(tmp_path / "d" / "train", per_class=20)
    _corpus.write_classes(tmp_path / "d" / "test", per_class=4)
    ds = data.load_dataset(tmp_path / "d", val_fraction=0.25)
    assert ds.layout == "split-folders"
    assert [len(ds.paths[s]) for s in data.SPLITS] == [45, 15, 12]
    assert all("/train/" in p for p in ds.paths["train"] + ds.paths["val"])
    assert all("/test/" in p for p in ds.paths["test"])
    assert any(note.startswith("val: 15 of 60 images in train (25.0%)") for note in ds.report.notes)


def test_split_folders_accept_validation_and_no_test(tmp_path):
    _corpus.write_classes(tmp_path / "d" / "train", per_class=10)
    _corpus.write_classes(tmp_path / "d" / "validation", per_class=2)
    ds = data.load_dataset(tmp_path / "d", test_fraction=0.2)
    assert [len(ds.paths[s]) for s in data.SPLITS] == [24, 6, 6]
    assert all("/validation/" in p for p in ds.paths["val"])


def test_split_folders_reject_a_class_missing_from_train(tmp_path):
    _corpus.write_classes(tmp_path / "d" / "train", per_class=3)
    _corpus.write_classes(tmp_path / "d" / "val", per_class=1, classes={"kiwi": (0, 0, 0)})
    with pytest.raises(ImgclfError, match="class 'kiwi' is not in"):
        data.load_dataset(tmp_path / "d")


def test_csv_layout_with_header_split_and_relative_paths(tmp_path):
    root = _corpus.write_classes(tmp_path / "imgs", per_class=6)
    rows = ["label,path,split"]
    for i, png in enumerate(sorted(root.rglob("*.png"))):
        rows.append(f"{png.parent.name},imgs/{png.parent.name}/{png.name},{['train', 'test'][i % 2]}")
    rows.append("apple,imgs/apple/gone.png,train")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    ds = data.load_dataset(tmp_path / "list.csv", val_fraction=0.2)
    assert ds.layout == "csv" and ds.class_names == ["apple", "grape", "lime"]
    assert len(ds.paths["test"]) == 9 and len(ds.paths["train"]) + len(ds.paths["val"]) == 9
    assert ds.report.skipped == [(str(tmp_path / "imgs/apple/gone.png"), "file not found (line 20)")]


def test_csv_without_header_and_absolute_paths(tmp_path):
    root = _corpus.write_classes(tmp_path / "imgs", per_class=10)
    lines = [f"{png},{png.parent.name}" for png in sorted(root.rglob("*.png"))]
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n\n")
    ds = data.load_dataset(tmp_path / "list.csv")
    assert [len(ds.paths[s]) for s in data.SPLITS] == [24, 3, 3]


@pytest.mark.parametrize("text, message", [
    ("a.png,cat\nb.png\n", "line 2: expected path,label"),
    ("path,label\na.png,cat,train\n", "line 2: expected 2 fields"),
    ("a.png,cat,holdout\n", "line 1: split must be train, val or test"),
    ("a.png,\n", "line 1: empty label"),
])
def test_malformed_csv_is_an_error_naming_the_line(tmp_path, text, message):
    (tmp_path / "list.csv").write_text(text)
    with pytest.raises(ImgclfError, match=message) as info:
        data.load_dataset(tmp_path / "list.csv")
    assert "list.csv" in str(info.value)


def test_csv_classes_come_from_every_label(tmp_path):
    root = _corpus.write_classes(tmp_path / "imgs", per_class=2)
    lines = [f"{png},{png.parent.name}" for png in sorted(root.rglob("*.png"))]
    (tmp_path / "one.csv").write_text("\n".join(lines[:2]) + "\n")
    with pytest.raises(ImgclfError, match="one.csv: only one class \\('apple'\\)"):
        data.load_dataset(tmp_path / "one.csv")
    (tmp_path / "gone.csv").write_text("\n".join(lines + [f"{root}/kiwi.png,kiwi"]) + "\n")
    with pytest.raises(ImgclfError, match="class 'kiwi' has no readable image"):
        data.load_dataset(tmp_path / "gone.csv")


def test_save_split_reproduces_the_same_split(tmp_path, fruit):
    from imgclf.record import RunRecord
    RunRecord(tmp_path).write_split(fruit.split_rows())
    again = data.load_dataset(tmp_path / "split.csv", seed=999)
    assert again.class_names == fruit.class_names
    assert again.paths == fruit.paths
    for split in data.SPLITS:
        np.testing.assert_array_equal(again.labels[split], fruit.labels[split])
    assert (tmp_path / "split.csv").read_text().startswith("split,path,label\ntrain,")


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ImgclfError, match="nowhere: no such file or folder"):
        data.load_dataset(tmp_path / "nowhere")
    (tmp_path / "none").mkdir()
    with pytest.raises(ImgclfError, match="no images found"):
        data.load_dataset(tmp_path / "none")
    _corpus.write_classes(tmp_path / "one", classes={"cat": (1, 2, 3)})
    with pytest.raises(ImgclfError, match="only one class folder \\('cat'\\)"):
        data.load_dataset(tmp_path / "one")
    root = _corpus.write_classes(tmp_path / "empty", per_class=2)
    (root / "zebra").mkdir()
    with pytest.raises(ImgclfError, match="zebra: empty class folder"):
        data.load_dataset(root)
    _corpus.write_bad(tmp_path / "allbad" / "kiwi")
    _corpus.write_classes(tmp_path / "allbad", per_class=2)
    with pytest.raises(ImgclfError, match="class 'kiwi' has no readable image"):
        data.load_dataset(tmp_path / "allbad")


def test_load_images_decodes_and_squashes(fruit):
    x = data.load_images(fruit.paths["train"][:5], 16, workers=2)
    assert x.shape == (5, 16, 16, 3) and x.dtype == np.uint8
    assert np.abs(x[0].astype(int) - _corpus.COLOURS["apple"]).max() <= 6
    assert data.load_images([], 16).shape == (0, 16, 16, 3)


def test_small_images_are_decoded_once(tree, fruit, monkeypatch):
    paths = [p for split in ("train", "val", "test") for p in fruit.paths[split]]
    assert set(fruit.decoded) == set(paths)  # every good image is small here
    reference = data.load_images(paths, 16)

    def refuse(*args, **kwargs):
        raise BadImage("decoded again", args[0])

    monkeypatch.setattr(data_arrays, "read_image", refuse)
    np.testing.assert_array_equal(data.load_images(paths, 16, decoded=fruit.decoded), reference)
    assert data.load_dataset(tree["root"], seed=42, keep_mb=0).decoded == {}
    assert len(data.load_dataset(tree["root"], seed=42, keep_mb=0.01).decoded) < len(paths)  # budget


def test_lazy_images_are_resized_when_read_with_the_same_pixels(tmp_path, monkeypatch):
    from PIL import Image
    rng = np.random.default_rng(1)
    paths = []
    for i, (w, h) in enumerate([(28, 28), (40, 20), (16, 50), (28, 28), (9, 9)]):
        paths.append(str(tmp_path / f"{i}.png"))
        mode = "L" if i % 2 else "RGB"
        pixels = rng.integers(0, 256, (h, w) + (() if mode == "L" else (3,)), dtype=np.uint8)
        Image.fromarray(pixels, mode).save(paths[-1])
    decoded = {p: read_image(p) for p in paths}  # as load_dataset keeps them
    reference = data.load_images(paths, 24)

    def refuse(*args, **kwargs):
        raise BadImage("read from disk", args[0])

    monkeypatch.setattr(data_arrays, "read_image", refuse)
    lazy = data.load_images(paths, 24, decoded=decoded, lazy=True)
    assert isinstance(lazy, data.ResizedImages)
    assert lazy.shape == reference.shape and len(lazy) == 5 and lazy.nbytes == reference.nbytes
    np.testing.assert_array_equal(np.asarray(lazy), reference)
    np.testing.assert_array_equal(lazy[1:4], reference[1:4])
    np.testing.assert_array_equal(lazy[np.array([4, 0, 4])], reference[[4, 0, 4]])
    np.testing.assert_array_equal(lazy[2], reference[2])
    assert lazy[5:].shape == (0, 24, 24, 3) and lazy[::2].shape[0] == 3
    # not every image decoded (or a disk cache asked for): an array, as before
    missing = {p: decoded[p] for p in paths[1:]}
    with pytest.raises(ImgclfError, match="read from disk"):
        data.load_images(paths, 24, decoded=missing, lazy=True)
    assert isinstance(data.load_images(paths, 24, decoded=decoded), np.ndarray)


@pytest.mark.parametrize("limit", [1 << 30, 0])  # in-graph copy, and read a batch at a time
def test_pipeline_from_lazy_images_matches_the_array(limit, monkeypatch):
    from PIL import Image
    rng = np.random.default_rng(2)
    images = [Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)) for _ in range(10)]
    lazy, labels = data.ResizedImages(images, 16), np.arange(10) % 3
    monkeypatch.setattr(pipeline, "_IN_GRAPH_LIMIT", limit)
    a = stack(data.make_pipeline(lazy, labels, 3, 4, shuffle=True, seed=3))
    b = stack(data.make_pipeline(np.asarray(lazy), labels, 3, 4, shuffle=True, seed=3))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_map_threads_keeps_order_and_stops_at_the_first_error():
    items = list(range(5000))
    assert data_arrays.map_threads(lambda x: x * x, items, workers=3) == [x * x for x in items]
    assert data_arrays.map_threads(len, [], workers=2) == []
    calls = []

    def fail_early(x):
        calls.append(x)
        if x == 10:
            raise ValueError("bad item")
        return x
    with pytest.raises(ValueError, match="bad item"):
        data_arrays.map_threads(fail_early, items, workers=2)
    assert len(calls) < len(items) // 2  # the rest was never started


def test_tiny_files_are_checked_in_one_thread(tmp_path):
    tiny = [_corpus.save(_corpus.quadrant_image(), tmp_path / f"{i}.png") for i in range(4)]
    assert data_dataset._check_threads([str(p) for p in tiny]) == 1
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(data_dataset.SMALL_FILE_BYTES * 2))
    assert data_dataset._check_threads([str(big), str(tmp_path / "missing.png")]) is None


def test_load_images_names_a_file_that_went_bad(tmp_path):
    path = _corpus.save(_corpus.quadrant_image(), tmp_path / "x.png")
    path.write_bytes(b"")
    with pytest.raises(ImgclfError, match="x.png: empty file"):
        data.load_images([path], 16)


def test_disk_cache_is_reused_without_decoding(tmp_path, fruit, monkeypatch):
    paths = fruit.paths["train"][:8]
    first = data.load_images(paths, 16, cache_dir=tmp_path)
    assert isinstance(first, np.memmap) and not first.flags.writeable
    assert len(list(tmp_path.glob("*.npy"))) == 1

    def refuse(*args, **kwargs):
        raise BadImage("decoded again", args[0])

    monkeypatch.setattr(data_arrays, "read_image", refuse)
    second = data.load_images(paths, 16, cache_dir=tmp_path)
    np.testing.assert_array_equal(first, second)
    with pytest.raises(ImgclfError, match="decoded again"):  # other size: a new key, must decode
        data.load_images(paths, 24, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*"))) == 1  # the failed attempt left no temp file


def test_streamed_disk_images_read_the_same_pixels_without_mapping_them(tmp_path, fruit, monkeypatch):
    paths = [p for split in ("train", "val") for p in fruit.paths[split]][:11]
    reference = data.load_images(paths, 16)
    monkeypatch.setattr(data_arrays, "_CHUNK", 2)
    streamed = data.load_images(paths, 16, cache_dir=tmp_path, streamed=True)
    assert isinstance(streamed, data.DiskImages) and streamed.shape == reference.shape
    assert len(streamed) == 11 and streamed.nbytes == reference.nbytes
    np.testing.assert_array_equal(np.asarray(streamed), reference)
    np.testing.assert_array_equal(streamed[3:9], reference[3:9])
    np.testing.assert_array_equal(streamed[np.array([10, 0, 10])], reference[[10, 0, 10]])
    np.testing.assert_array_equal(streamed[-1], reference[-1])
    np.testing.assert_array_equal(streamed[::3], reference[::3])
    assert streamed[20:].shape == (0, 16, 16, 3)
    np.testing.assert_array_equal(data.load_images(paths, 16, cache_dir=tmp_path), reference)  # same file, mapped
    cache = next(tmp_path.glob("*.npy"))
    cache.write_bytes(cache.read_bytes()[:-100])  # cut short: refused, decoded again, replaced
    np.testing.assert_array_equal(np.asarray(data.load_images(paths, 16, cache_dir=tmp_path, streamed=True)),
                                  reference)


def test_a_large_disk_cache_is_written_a_chunk_at_a_time(tmp_path, fruit, monkeypatch):
    paths = fruit.paths["train"][:7]
    reference = data.load_images(paths, 16)
    seen = []
    decode = data_arrays._decode_into
    monkeypatch.setattr(data_arrays, "_decode_into", lambda out, part, *a: (seen.append(len(part)), decode(out, part, *a)))
    monkeypatch.setattr(data_arrays, "_WRITE_CHUNK_BYTES", 3 * 16 * 16 * 3)
    np.testing.assert_array_equal(np.asarray(data.load_images(paths, 16, cache_dir=tmp_path, streamed=True)), reference)
    assert seen == [3, 3, 1]


def stack(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8), np.arange(20) % 3


def test_pipeline_shapes_dtypes_and_unchanged_images(arrays):
    images, labels = arrays
    ds = data.make_pipeline(images, labels, 3, 8)
    batches = list(ds)
    assert [b[0].shape[0] for b in batches] == [8, 8, 4]
    assert batches[0][0].dtype.name == "float32" and batches[0][1].dtype.name == "float32"
    x, y = stack(ds)
    np.testing.assert_array_equal(x, images.astype(np.float32))
    np.testing.assert_array_equal(y, np.eye(3, dtype=np.float32)[labels])


def test_pipeline_shuffle_is_seeded_and_changes_each_epoch(arrays):
    images, labels = arrays
    ds = data.make_pipeline(images, labels, 3, 32, shuffle=True, seed=5)
    (x1, y1), (x2, _) = stack(ds), stack(ds)
    same = data.make_pipeline(images, labels, 3, 32, shuffle=True, seed=5)
    np.testing.assert_array_equal(stack(same)[0], x1)
    assert not np.array_equal(x1, x2)
    assert not np.array_equal(x1, images)
    order = [int(np.flatnonzero((images == row).all(axis=(1, 2, 3)))[0]) for row in x1.astype(np.uint8)]
    assert sorted(order) == list(range(20)) and (y1.argmax(1) == labels[order]).all()


def test_pipeline_augmentation_changes_images_deterministically(arrays):
    images, labels = arrays
    cfg = AugmentConfig(rotation=0.1, flip="horizontal", zoom=0.2, brightness=0.2, contrast=0.2)
    a = stack(data.make_pipeline(images, labels, 3, 8, augment=cfg, seed=1))[0]
    b = stack(data.make_pipeline(images, labels, 3, 8, augment=cfg, seed=1))[0]
    c = stack(data.make_pipeline(images, labels, 3, 8, augment=cfg, seed=2))[0]
    assert not np.allclose(a, images)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.min() >= 0 and a.max() <= 255 and a.shape == images.shape


def test_pipeline_from_memmap_matches_in_memory(tmp_path, arrays):
    images, labels = arrays
    np.save(tmp_path / "x.npy", images)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    a = stack(data.make_pipeline(mapped, labels, 3, 6, shuffle=True, seed=3))
    b = stack(data.make_pipeline(images, labels, 3, 6, shuffle=True, seed=3))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_class_weights_are_balanced():
    w = data.class_weights(np.array([0, 0, 0, 1, 2, 2]), 4)
    np.testing.assert_allclose(w, [6 / 12, 6 / 4, 6 / 8, 0.0])
    assert w.dtype == np.float32


def test_epoch_batches_depend_on_the_epoch_alone(arrays):
    """What a resumed run relies on: epoch e's order and augmentation are the same whatever
    epochs ran before it in this process."""
    from imgclf.config import AugmentConfig
    images, labels = arrays
    batches = data.epoch_batches(images, labels, 3, 8, seed=4, augment=AugmentConfig())
    third = stack(batches.epoch(3))
    stack(batches.epoch(0))
    np.testing.assert_array_equal(stack(batches.epoch(3))[0], third[0])
    fresh = data.epoch_batches(images, labels, 3, 8, seed=4, augment=AugmentConfig())
    np.testing.assert_array_equal(stack(fresh.epoch(3))[0], third[0])  # another process, same epoch
    assert not np.array_equal(stack(fresh.epoch(4))[1], third[1])  # another epoch, another order


def test_reseed_makes_dropout_masks_a_function_of_the_epoch():
    import keras
    from imgclf.data.augment import reseed
    layer = keras.Sequential([keras.Input((64,)), keras.layers.Dropout(0.5, seed=1)])
    x = np.ones((4, 64), np.float32)
    reseed(layer, 7)
    first = layer(x, training=True).numpy()
    layer(x, training=True)  # the generator moves on ...
    reseed(layer, 7)  # ... and is put back to epoch 7's draws
    np.testing.assert_array_equal(layer(x, training=True).numpy(), first)
    reseed(layer, 8)
    assert not np.array_equal(layer(x, training=True).numpy(), first)
