"""datasets.py: IDX parsing, Fashion-MNIST (real Debian files) and digits as PNG folders."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.data import datasets
from imgclf import data
from imgclf.errors import ImgclfError

DEBIAN = Path(datasets.FASHION_MNIST_DIR)


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fake_fashion(folder: Path, n_train=30, n_test=20) -> Path:
    """The four gz files, tiny: image i is filled with the value i, label i % 10."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        images = np.repeat(np.arange(n, dtype=np.uint8), 4 * 5).reshape(n, 4, 5)
        image_file, label_file = datasets.FASHION_MNIST_FILES[split]
        (folder / image_file).write_bytes(gzip.compress(idx_bytes(images)))
        (folder / label_file).write_bytes(gzip.compress(idx_bytes(np.arange(n) % 10)))
    return folder


def test_parse_idx_reads_shape_and_values():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    out = datasets.parse_idx(idx_bytes(images))
    np.testing.assert_array_equal(out, images)
    assert out.dtype == np.uint8
    big_endian = bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 1, 2, 0xFF, 0xFE])  # two int16 values
    assert datasets.parse_idx(big_endian).tolist() == [258, -2]


@pytest.mark.parametrize("blob, message", [
    (b"", "bad magic number empty"),
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "bad magic number"),
    (bytes([0, 0, 8, 3, 0, 0, 0, 2]), "corrupt IDX header"),
    (bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2]), "truncated or corrupt"),
])
def test_parse_idx_rejects_corrupt_data(blob, message):
    with pytest.raises(ImgclfError, match=message):
        datasets.parse_idx(blob, "x.idx")


def test_read_idx_reports_a_corrupt_gzip(tmp_path):
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(100)))[:30])
    with pytest.raises(ImgclfError, match="a.gz: corrupt gzip file"):
        datasets.read_idx(tmp_path / "a.gz")


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_from_the_debian_files(tmp_path):
    out = tmp_path / "fmnist"
    summary = datasets.write_fashion_mnist(out, train_per_class=3, test_per_class=2, seed=1)
    assert summary["source"] == str(DEBIAN)
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(datasets.FASHION_MNIST_CLASSES)
    assert "t-shirt_top" in summary["classes"] and "ankle_boot" in summary["classes"]
    for split, n in (("train", 3), ("test", 2)):
        assert all(len(list((out / split / c).glob("*.png"))) == n for c in datasets.FASHION_MNIST_CLASSES)
        assert set(summary["counts"][split].values()) == {n}
    png = sorted((out / "train" / "bag").glob("*.png"))[0]
    images = datasets.read_idx(DEBIAN / "train-images-idx3-ubyte.gz")
    labels = datasets.read_idx(DEBIAN / "train-labels-idx1-ubyte.gz")
    index = int(png.stem)
    assert labels[index] == datasets.FASHION_MNIST_CLASSES.index("bag")
    np.testing.assert_array_equal(np.asarray(Image.open(png)), images[index])
    ds = data.load_dataset(out)
    assert ds.layout == "split-folders" and len(ds.paths["test"]) == 20 and len(ds.class_names) == 10


def test_fashion_mnist_from_source_is_seeded_and_replaces_its_own_output(tmp_path):
    source = write_fake_fashion(tmp_path / "src")
    out = tmp_path / "out"
    datasets.write_fashion_mnist(out, source=source, train_per_class=2, seed=0)
    first = sorted(p.relative_to(out) for p in out.rglob("*.png"))
    assert len(first) == 20 + 20
    datasets.write_fashion_mnist(out, source=source, train_per_class=2, seed=0)  # over its own output
    assert sorted(p.relative_to(out) for p in out.rglob("*.png")) == first
    datasets.write_fashion_mnist(out, source=source, train_per_class=2, seed=1)
    assert sorted(p.relative_to(out) for p in out.rglob("*.png")) != first
    png = next((out / "test" / "coat").glob("*.png"))
    assert (np.asarray(Image.open(png)) == int(png.stem)).all()  # image i is filled with i
    assert json.loads((out / datasets.MARKER).read_text())["dataset"] == "fashion-mnist"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_refuses_a_foreign_non_empty_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(ImgclfError, match="mine: folder is not empty and was not written by"):
        datasets.write_digits(tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_missing_files_and_failed_download_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ImgclfError, match="no train-images-idx3-ubyte.gz here"):
        datasets.write_fashion_mnist(tmp_path / "out", source=tmp_path)

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", str(tmp_path / "absent"))
    monkeypatch.setattr(datasets.urllib.request, "urlopen", offline)
    with pytest.raises(ImgclfError, match="download failed: install the Debian package dataset-fashion-mnist"):
        datasets.write_fashion_mnist(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    source = write_fake_fashion(tmp_path / "src")
    real_save, calls = Image.Image.save, []

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", flaky)
    with pytest.raises(KeyboardInterrupt):
        datasets.write_fashion_mnist(tmp_path / "out", source=source)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_digits_as_class_folders(tmp_path):
    summary = datasets.write_digits(tmp_path / "digits", per_class=5, seed=3)
    assert summary["counts"] == {str(d): 5 for d in range(10)}
    folders = sorted(p.name for p in (tmp_path / "digits").iterdir() if p.is_dir())
    assert folders == [str(d) for d in range(10)]
    from sklearn.datasets import load_digits

    png = next((tmp_path / "digits" / "7").glob("*.png"))
    expected = np.round(load_digits().images[int(png.stem)] * 255 / 16).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(png)), expected)
    assert np.asarray(Image.open(png)).max() > 200  # 0-16 was scaled up to 0-255
    ds = data.load_dataset(tmp_path / "digits", val_fraction=0.2, test_fraction=0.2)
    assert ds.class_names == [str(d) for d in range(10)] and len(ds.paths["test"]) == 10


def test_written_dataset_loads_with_nothing_skipped(tmp_path):
    from imgclf.data import load_dataset
    datasets.write_digits(tmp_path / "d", per_class=3)
    dataset = load_dataset(tmp_path / "d", val_fraction=0.0, test_fraction=0.0)
    assert dataset.report.skipped == [] and sum(len(p) for p in dataset.paths.values()) == 30
