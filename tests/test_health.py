"""imgclf.health and `imgclf check`: planted duplicates, leaks, conflicts, flipped labels, bad files."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.cli import main
from imgclf.data import load_dataset
from imgclf.health import cheap_checks, check_dataset, clean_rows, write_clean_csv
from imgclf.health.hashing import phash_pairs

COLOURS = {"red": (200, 40, 40), "green": (40, 170, 60), "blue": (40, 60, 200)}


def _image(rng, colour, size=(48, 48)) -> Image.Image:
    """A class colour under random blocks: every image differs, each class looks alike."""
    base = np.array(colour, np.float32)
    blocks = rng.integers(-60, 60, (6, 6, 3)).astype(np.float32)
    big = np.kron(blocks, np.ones((size[1] // 6 + 1, size[0] // 6 + 1, 1)))[:size[1], :size[0]]
    return Image.fromarray(np.clip(base + big, 0, 255).astype(np.uint8))


def _write_split(root: Path, per_class=(12, 4), seed=0) -> Path:
    """root/train/<class>/ and root/test/<class>/ of distinct PNGs."""
    rng = np.random.default_rng(seed)
    for split, count in zip(("train", "test"), per_class):
        for name, colour in COLOURS.items():
            if not count:
                continue
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                _image(rng, colour).save(root / split / name / f"{i:02d}.png")
    return root


def _load(root, **kw):
    return load_dataset(root, val_fraction=0, **kw)  # no carved val: the tests place every image


def _groups(report):
    return [[Path(report.paths[i]).relative_to(report.root).as_posix() for i in g.members] for g in report.groups]


def test_clean_data_has_no_duplicate_and_the_cheap_check_agrees(tmp_path):
    ds = _load(_write_split(tmp_path / "d"))
    report = check_dataset(ds, backbone=None)
    assert report.groups == [] and report.facts == [] and report.skipped == []
    assert {"scan", "cpu_scan", "total", "cpu_total"} <= set(report.seconds)  # wall and CPU per stage
    assert cheap_checks(ds).counts() == {**report.counts(), "fact": 0}
    assert cheap_checks(ds).warnings("imgclf check d") == []


def test_exact_copies_within_and_across_splits_and_conflicting_labels(tmp_path):
    root = _write_split(tmp_path / "d")
    shutil.copy(root / "train/red/00.png", root / "train/red/copy.png")  # within train
    shutil.copy(root / "train/red/01.png", root / "test/red/leak.png")  # a leak
    shutil.copy(root / "train/blue/00.png", root / "train/green/conflict.png")  # another label
    ds = _load(root)
    for report in (cheap_checks(ds), check_dataset(ds, backbone=None)):
        assert sorted(_groups(report)) == [["train/blue/00.png", "train/green/conflict.png"],
                                           ["train/red/00.png", "train/red/copy.png"],
                                           ["train/red/01.png", "test/red/leak.png"]]
        assert {g.kind for g in report.groups} == {"exact"}
        counts = report.counts()
        assert (counts["exact"], counts["leak"], counts["conflict"]) == (3, 1, 1)
        assert [report.paths[i] for i in report.leaked()] == [str(root / "test/red/leak.png")]
    lines = cheap_checks(ds).warnings("imgclf check d")
    assert len(lines) == 3 and "1 val/test image(s)" in lines[0] and "`imgclf check d`" in lines[0]


def test_same_pixels_in_another_format_and_a_resized_copy_are_found(tmp_path):
    root = _write_split(tmp_path / "d")
    Image.open(root / "train/red/02.png").save(root / "train/red/same.bmp")
    big = Image.open(root / "train/green/03.png").resize((96, 96), Image.BICUBIC)
    big.save(root / "test/green/resized.png")
    report = check_dataset(_load(root), backbone=None)
    kinds = {tuple(m): g.kind for m, g in zip(_groups(report), report.groups)}
    assert kinds == {("train/red/02.png", "train/red/same.bmp"): "pixels",
                     ("train/green/03.png", "test/green/resized.png"): "near"}
    assert [g.leak for g in report.groups if g.kind == "near"] == [True]


def test_phash_pairs_matches_brute_force():
    rng = np.random.default_rng(1)
    hashes = rng.integers(0, 2**63, 300, dtype=np.int64).astype(np.uint64)
    hashes[50:60] = hashes[0] ^ (np.uint64(1) << rng.integers(0, 64, 10).astype(np.uint64))  # 1 bit off
    hashes[60] = hashes[1] ^ np.uint64(0b111)  # 3 bits off
    brute = {(i, j) for i in range(300) for j in range(i + 1, 300)
             if bin(int(hashes[i]) ^ int(hashes[j])).count("1") <= 3}
    assert {tuple(p) for p in phash_pairs(hashes, 3).tolist()} == brute and len(brute) >= 56


def test_corrupt_files_are_listed_as_skipped_never_a_crash(tmp_path):
    root = _write_split(tmp_path / "d")
    (root / "train/red/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "train/red/empty.jpg").write_bytes(b"")
    (root / "train/red/notes.txt").write_text("hello")
    report = check_dataset(_load(root), backbone=None)
    skipped = {Path(p).name: reason for p, reason in report.skipped}
    assert set(skipped) == {"broken.png", "empty.jpg", "notes.txt"} and report.groups == []
    assert "broken.png" in report.format_text()


def test_cheap_facts_tiny_aspect_grayscale_imbalance(tmp_path):
    root = _write_split(tmp_path / "d", per_class=(12, 0))
    rng = np.random.default_rng(5)
    _image(rng, COLOURS["red"], (8, 8)).save(root / "train/red/tiny.png")
    _image(rng, COLOURS["red"], (240, 40)).save(root / "train/red/wide.png")
    _image(rng, COLOURS["red"]).convert("L").save(root / "train/red/gray.png")
    for i in range(60):
        _image(rng, COLOURS["blue"]).save(root / f"train/blue/more{i}.png")
    report = check_dataset(load_dataset(root, test_fraction=0), backbone=None)
    facts = {(f.what, Path(report.paths[f.index]).name if f.index >= 0 else "") for f in report.facts}
    assert facts == {("tiny", "tiny.png"), ("aspect", "wide.png"), ("grayscale", "gray.png"), ("imbalance", "")}


def test_write_clean_collapses_copies_and_moves_leaks_out_keeping_splits(tmp_path):
    root = _write_split(tmp_path / "d")
    shutil.copy(root / "train/red/00.png", root / "train/red/copy.png")
    shutil.copy(root / "train/red/01.png", root / "test/red/leak.png")
    shutil.copy(root / "train/blue/00.png", root / "train/green/c1.png")
    shutil.copy(root / "train/blue/00.png", root / "train/green/c2.png")
    ds = _load(root)
    report = check_dataset(ds, backbone=None)
    kept, left = write_clean_csv(report, tmp_path / "clean.csv")
    assert (kept, left) == (len(report.paths) - 4, 4)
    clean = _load(tmp_path / "clean.csv")
    names = {Path(p).name for split in clean.paths.values() for p in split}
    assert "leak.png" not in names and {"00.png", "01.png"} <= names
    # the conflict keeps one copy, under the majority label (green: two copies of three)
    assert sum(Path(p).parent.name == "green" and Path(p).name.startswith("c") for p in clean.paths["train"]) == 1
    assert not check_dataset(clean, backbone=None).groups
    for split in ("train", "test"):  # everything else keeps its split
        before = {p for p in ds.paths[split]} - {str(root / "test/red/leak.png"), str(root / "train/red/copy.png")}
        assert before - set(clean.paths[split]) <= {str(root / "train/green/c1.png"), str(root / "train/green/c2.png"),
                                                    str(root / "train/blue/00.png")}
    assert len(clean_rows(report)) == kept


def test_cli_check_json_html_and_bad_flags(tmp_path, capsys):
    root = _write_split(tmp_path / "d")
    shutil.copy(root / "train/red/01.png", root / "test/red/leak.png")
    out = tmp_path / "page.html"
    assert main(["check", str(root), "--backbone", "none", "--json", "--html", str(out),
                 "--write-clean", str(tmp_path / "c.csv")]) == 0
    captured = capsys.readouterr()
    found = json.loads(captured.out)
    assert found["counts"]["leak"] == 1 and found["groups"][0]["images"][1]["split"] == "test"
    page = out.read_text()
    assert "data:image/png;base64," in page and "leak" in page and "<script" not in page
    assert "clean:" in captured.err and (tmp_path / "c.csv").is_file()
    assert main(["check", str(root), "--drop-suspects"]) == 2
    assert main(["check", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("imgclf: error: ") and "missing" in err[-1]


# -- with the backbone: near copies by features, label errors, outliers, training ----------------------


def _write_photo_tiles(root: Path) -> Path:
    """Class folders of 96x72 tiles cut from three scikit-image photos (one class each), no two
    overlapping and none featureless; every fourth tile goes to test/."""
    import skimage.data
    for name in ("astronaut", "chelsea", "coffee"):
        img = Image.fromarray(getattr(skimage.data, name)())
        spots = [(y, x) for y in range(0, img.height - 72, 72) for x in range(0, img.width - 96, 96)]
        for n, (y, x) in enumerate(spots):
            tile = img.crop((x, y, x + 96, y + 72))
            if np.asarray(tile.convert("L")).std() < 24:
                continue
            split = "test" if n % 4 == 3 else "train"
            (root / split / name).mkdir(parents=True, exist_ok=True)
            tile.save(root / split / name / f"{y}_{x}.png")
    return root


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Photo tiles with a resized JPEG copy leaked into test and two flipped labels."""
    root = _write_photo_tiles(tmp_path_factory.mktemp("health") / "d")
    first = sorted((root / "train/coffee").iterdir())[3]
    src = Image.open(first)
    src.resize((144, 108), Image.BICUBIC).save(root / "test/coffee/copy.jpg", quality=90)
    shutil.move(sorted((root / "train/chelsea").iterdir())[2], root / "train/astronaut/flipped-chelsea.png")
    shutil.move(sorted((root / "train/coffee").iterdir())[5], root / "train/chelsea/flipped-coffee.png")
    return root, first.relative_to(root).as_posix(), check_dataset(_load(root), image_size=96)


@pytest.mark.slow
def test_features_find_the_edited_copy_and_cleanlab_the_flipped_labels(planted):
    root, original, report = planted
    near = [m for m, g in zip(_groups(report), report.groups) if g.kind == "near"]
    assert near == [[original, "test/coffee/copy.jpg"]] and report.counts()["leak"] == 1
    flagged = {Path(report.paths[s.index]).name: s.suggested for s in report.label_issues}
    flips = {"flipped-chelsea.png": "chelsea", "flipped-coffee.png": "coffee"}
    found = {name: label for name, label in flagged.items() if name in flips}
    # on 64 small tiles cleanlab finds at least one of the two flips, with its true class, and
    # flags little else (benchmarks/check.py measures recall and precision on real data)
    assert found and all(flips[name] == label for name, label in found.items()) and len(flagged) <= 3


@pytest.mark.slow
def test_clean_data_with_features_has_no_finding(tmp_path):
    report = check_dataset(_load(_write_photo_tiles(tmp_path / "d")), image_size=96)
    assert {k: v for k, v in report.counts().items() if v} == {}


@pytest.mark.slow
def test_train_warns_of_the_leak_writes_it_into_the_run_and_strict_refuses(tmp_path, capsys):
    root = _write_split(tmp_path / "d", per_class=(8, 3))
    shutil.copy(root / "train/red/01.png", root / "test/red/leak.png")
    args = ["train", str(root), "--runs-dir", str(tmp_path / "runs"), "--image-size", "32", "--epochs", "1",
            "--fine-tune-epochs", "0", "--batch-size", "8", "-q"]
    assert main(args + ["--strict-data"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "identical copies" in err[0] and not (tmp_path / "runs").exists()
    assert main(args + ["--name", "leaky"]) == 0
    err = capsys.readouterr().err
    assert "imgclf: data health: 1 val/test image(s) have an identical copy" in err
    run = tmp_path / "runs" / "leaky"
    assert json.loads((run / "data_report.json").read_text())["health"]["counts"]["leak"] == 1
    assert "Data health" in (run / "report.html").read_text()


@pytest.mark.slow
def test_write_clean_output_trains(planted, tmp_path):
    root, _, report = planted
    write_clean_csv(report, tmp_path / "clean.csv", drop_suspects=True)
    with open(tmp_path / "clean.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(not r["path"].endswith(("copy.jpg", "flipped-coffee.png")) for r in rows) and len(rows) > 40
    assert main(["train", str(tmp_path / "clean.csv"), "--runs-dir", str(tmp_path / "runs"), "--image-size", "32",
                 "--epochs", "1", "--fine-tune-epochs", "0", "--batch-size", "8", "-q", "--strict-data"]) == 0
    assert (tmp_path / "runs" / "clean" / "COMPLETE").is_file()


# -- near copies: candidates from hashes and neighbours, confirmed by thumbnails ----------------------

FASHION_TRAIN = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
LOOK_ALIKES = (20812, 31507)  # two different trousers: feature cosine 0.97, thumbnails 0.994


def _fashion(*indices) -> list[Image.Image]:
    if not FASHION_TRAIN.is_file():
        pytest.skip(f"{FASHION_TRAIN} missing")
    from imgclf.data.datasets import read_idx
    images = read_idx(FASHION_TRAIN)
    return [Image.fromarray(images[i]).convert("RGB") for i in indices]


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    import io
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def test_thumbnails_tell_edited_copies_from_look_alikes():
    from PIL import ImageEnhance

    from imgclf.health.nearcopy import NEAR_THUMB, confirm, pair_scores, thumb_views
    original, look_alike = _fashion(*LOOK_ALIKES)
    copies = [_jpeg(original.resize((42, 42), Image.BICUBIC), 60), original.crop((1, 1, 27, 27)),
              ImageEnhance.Brightness(original).enhance(1.25), _jpeg(original.crop((1, 1, 27, 27)), 70)]
    views = np.stack([thumb_views(img) for img in [original, look_alike, *copies]])
    pairs = np.array([[0, 1]] + [[0, 2 + i] for i in range(len(copies))])
    scores = pair_scores(views, pairs)
    assert scores[0] < NEAR_THUMB and (scores[1:] >= NEAR_THUMB).all(), scores
    assert confirm(views, pairs).tolist() == pairs[1:].tolist()
    assert thumb_views(Image.new("RGB", (640, 480))).shape == views.shape[1:]  # large images: one shape


def test_neighbours_prune_to_the_exact_top_k():
    from imgclf.health.features import neighbours
    from imgclf.health.nearcopy import neighbour_pairs
    rng = np.random.default_rng(3)
    x = rng.normal(size=(700, 16)).astype(np.float32)
    x[5] = x[600] + 0.01  # a near pair, far apart in the order
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index, sim = neighbours(x, k=7)
    full = x @ x.T
    np.fill_diagonal(full, -np.inf)
    assert np.allclose(sim, -np.sort(-full, 1)[:, :7], atol=1e-6)
    assert np.allclose(np.take_along_axis(full, index, 1), sim) and index[5, 0] == 600
    assert [5, 600] in neighbour_pairs(index).tolist()


@pytest.mark.slow
def test_a_cropped_recompressed_copy_across_splits_is_a_leak_and_look_alikes_are_not(tmp_path):
    """Its perceptual hash is far from the original's: only the feature neighbours find it."""
    from imgclf.health.hashing import phash_of
    from imgclf.data.datasets import write_fashion_mnist
    write_fashion_mnist(tmp_path / "d", train_per_class=6, test_per_class=2, seed=0)
    original, look_alike = _fashion(*LOOK_ALIKES)
    original.save(tmp_path / "d/train/trouser/original.png")
    look_alike.save(tmp_path / "d/train/trouser/look-alike.png")
    copy = _jpeg(original.crop((1, 1, 27, 27)).resize((28, 28), Image.BICUBIC), 70)
    copy.save(tmp_path / "d/test/trouser/copy.jpg", quality=95)
    assert bin(phash_of(original) ^ phash_of(copy)).count("1") > 3
    report = check_dataset(_load(tmp_path / "d"))
    near = [(m, g.evidence) for m, g in zip(_groups(report), report.groups) if g.kind == "near"]
    assert near == [(["train/trouser/original.png", "test/trouser/copy.jpg"], ["features"])]
    assert [Path(report.paths[i]).name for i in report.leaked()] == ["copy.jpg"]
