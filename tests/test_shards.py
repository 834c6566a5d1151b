"""Shards of an input list, and sharded batch prediction that resumes and merges (#19)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from _tiny_run import tiny_run
from imgclf.cli import main
from imgclf.data.shards import Shard
from imgclf.deploy.batch import ShardOutput, merge, row_text
from imgclf.errors import ImgclfError


@given(st.integers(0, 500), st.integers(1, 40))
def test_shards_cover_the_list_once_in_order(n, count):
    items = list(range(n))
    parts = [Shard(i, count).take(items) for i in range(count)]
    assert sum(parts, []) == items
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@given(st.integers(0, 500), st.integers(1, 40), st.integers(1, 70))
def test_shards_cut_on_whole_units(n, count, unit):
    items = list(range(n))
    spans = [Shard(i, count).span(n, unit) for i in range(count)]
    assert sum((Shard(i, count).take(items, unit) for i in range(count)), []) == items
    assert all(start % unit == 0 for start, _ in spans)  # every batch of a shard is one of the whole list's
    sizes = [stop - start for start, stop in spans]
    assert max(sizes) - min(sizes) <= unit


def _jpegs(folder, n, side=40):
    import numpy as np
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = [folder / f"{i}.jpg" for i in range(n)]
    for path in paths:
        Image.fromarray(rng.integers(0, 255, (side, side + 8, 3), dtype=np.uint8)).save(path)
    return [str(p) for p in paths]


def test_shard_images_decode_their_rows_now_and_any_other_when_read(tmp_path, monkeypatch):
    """A worker decodes only its shard; every read (slices, index arrays, one row, the whole)
    gives the very pixels of decoding everything, and only the rows it needs are decoded."""
    import numpy as np

    from imgclf.data import arrays, load_images
    from imgclf.data.shards import ShardImages
    paths = _jpegs(tmp_path, 10)
    whole = load_images(paths, 24)
    read = []
    real = arrays.read_image
    monkeypatch.setattr(arrays, "read_image", lambda path, *a: read.append(path) or real(path, *a))
    x = load_images(paths, 24, rows=(3, 7))
    assert isinstance(x, ShardImages) and x.shape == whole.shape and len(x) == 10
    assert sorted(read) == sorted(paths[3:7]) and x.nbytes == 4 * 24 * 24 * 3
    read.clear()
    np.testing.assert_array_equal(x[3:7], whole[3:7])
    np.testing.assert_array_equal(x[[5, 3]], whole[[5, 3]])
    assert not read  # inside the shard: nothing decoded again
    np.testing.assert_array_equal(x[[8, 4, 0]], whole[[8, 4, 0]])
    assert sorted(read) == [paths[0], paths[8]]
    np.testing.assert_array_equal(x[-1], whole[-1])
    np.testing.assert_array_equal(x[1:9:3], whole[1:9:3])
    np.testing.assert_array_equal(np.asarray(x), whole)
    assert x[5:5].shape == (0, 24, 24, 3)
    assert load_images(paths, 24, rows=(0, 10)).__class__ is np.ndarray  # the whole list: a plain array


def test_a_row_outside_the_shard_that_no_longer_decodes_is_one_line(tmp_path):
    from imgclf.data import load_images
    paths = _jpegs(tmp_path, 4)
    x = load_images(paths, 24, rows=(0, 2))
    with open(paths[3], "wb") as f:
        f.write(b"not a jpeg")
    with pytest.raises(ImgclfError, match=r"3\.jpg: .*did it change since the dataset was loaded"):
        x[[1, 3]]


def test_a_resumed_output_keeps_whole_batches(tmp_path):
    paths = [f"{i}.png" for i in range(7)]
    out = tmp_path / "p.csv"
    first = ShardOutput(out, "csv", paths, ranks=2, batch=3)
    for p in paths[:5]:  # killed in the second batch
        first.write(_row(p))
    again = ShardOutput(out, "csv", paths, ranks=2, batch=3)
    assert again.todo() == paths[3:] and out.read_text().count("\n") == 1 + 3 * 2
    for p in paths[3:]:
        again.write(_row(p))
    assert ShardOutput(out, "csv", paths, ranks=2, batch=3).todo() == []  # a finished file is kept whole


@pytest.mark.parametrize("text", ["0/2", "3/2", "a/b", "1/0", "1/2/3", "", "-1/2", "1.5/2", "2"])
def test_bad_shard_is_one_line(text):
    with pytest.raises(ImgclfError) as err:
        Shard.parse(text)
    assert "\n" not in str(err.value) and str(err.value).startswith(f"--shard {text}")


def test_shard_parses_one_based():
    assert Shard.parse(" 2/3 ") == Shard(1, 3) and str(Shard(1, 3)) == "2/3"


@pytest.mark.parametrize("flags, message", [
    (["--workers", "127.0.0.1:1,127.0.0.1:2", "--worker-index", "0"], "needs --out FILE"),
    (["--workers", "127.0.0.1:1,127.0.0.1:2", "--worker-index", "0", "--out", "o.csv", "--shard", "1/2"], "no --shard"),
    (["--worker-index", "1", "--out", "o.csv"], "--worker-index needs --workers"),
    (["--shard", "1/2"], "--shard needs --out"),
    (["--out", "o.txt"], "give --format csv or json"),
    (["--merge", "a.csv"], "goes with --out"),
    (["--batch-size", "0"], "--batch-size 0: expected"),
])
def test_bad_predict_flags_are_one_line_before_any_model_loads(tmp_path, capsys, monkeypatch, flags, message):
    monkeypatch.setenv("TF_CONFIG", "")  # --workers writes TF_CONFIG: none may leak into later tests
    monkeypatch.delenv("TF_CONFIG")
    assert main(["predict", str(tmp_path), str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def _row(path, error=None):
    return {"path": path, "error": error, "label": "a", "top": [] if error else [("a", 0.75), ("b", 0.25)]}


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_output_resumes_after_a_torn_line_and_each_image_is_written_once(tmp_path, fmt):
    paths = [f"img{i},x.png" for i in range(5)]  # a comma in a path is quoted, and read back
    out = tmp_path / f"p.{fmt}"
    first = ShardOutput(out, fmt, paths, ranks=2)
    assert first.todo() == paths
    for p in paths[:3]:
        first.write(_row(p, "cannot decode" if p == paths[1] else None))
    whole = out.read_bytes()
    with open(out, "ab") as f:
        f.write(row_text(_row(paths[3]), fmt).encode()[:9])  # a write cut short
    again = ShardOutput(out, fmt, paths, ranks=2)
    assert again.todo() == paths[3:] and out.read_bytes() == whole
    if fmt == "csv":  # one rank of two: the image is predicted again
        with open(out, "ab") as f:
            f.write(row_text(_row(paths[3]), fmt).split("\n")[0].encode() + b"\n")
        assert ShardOutput(out, fmt, paths, ranks=2).todo() == paths[3:] and out.read_bytes() == whole


def test_output_of_another_shard_is_refused_and_kept(tmp_path):
    out = tmp_path / "p.csv"
    ShardOutput(out, "csv", ["a.png", "b.png"], ranks=2).write(_row("a.png"))
    before = out.read_bytes()
    with pytest.raises(ImgclfError, match="another shard"):
        ShardOutput(out, "csv", ["c.png", "d.png"], ranks=2)
    with pytest.raises(ImgclfError, match="another --top-k"):
        out.write_bytes(before + row_text(_row("b.png"), "csv").encode())
        ShardOutput(out, "csv", ["a.png", "b.png"], ranks=3)
    out.write_bytes(before)
    (tmp_path / "notes.csv").write_text("my,own\ndata\n")
    with pytest.raises(ImgclfError, match="not an imgclf csv output"):
        ShardOutput(tmp_path / "notes.csv", "csv", ["a.png"], ranks=2)
    assert out.read_bytes() == before and (tmp_path / "notes.csv").read_text() == "my,own\ndata\n"


def test_merge_refuses_missing_and_twice_written_images(tmp_path):
    paths = ["a.png", "b.png", "c.png"]
    for name, part in (("1.csv", paths[:1]), ("2.csv", paths[1:2])):
        out = ShardOutput(tmp_path / name, "csv", part, ranks=2)
        for p in part:
            out.write(_row(p))
    with pytest.raises(ImgclfError, match="1 of 3 images have no prediction.*c.png"):
        merge(paths, [tmp_path / "1.csv", tmp_path / "2.csv"], tmp_path / "all.csv", "csv")
    with pytest.raises(ImgclfError, match="appears in both"):
        merge(paths[:1], [tmp_path / "1.csv", tmp_path / "1.csv"], tmp_path / "all.csv", "csv")
    assert not (tmp_path / "all.csv").exists()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_merged_shards_equal_one_process(tmp_path_factory, tmp_path, capsys, fmt):
    run, digits = tiny_run(tmp_path_factory)
    capsys.readouterr()  # whatever training the run printed
    bad = digits / "0" / "zz-broken.png"
    bad.write_bytes(b"not a png")  # an unreadable file is reported in its place, in every mode
    try:
        assert main(["predict", str(run), str(digits), "--format", fmt, "--top-k", "3"]) == 0
        one = capsys.readouterr().out
        for i in (1, 2, 3):
            assert main(["predict", str(run), str(digits), "--top-k", "3", "--shard", f"{i}/3",
                         "--out", str(tmp_path / f"p{i}.{fmt}")]) == 0
        shards = [str(tmp_path / f"p{i}.{fmt}") for i in (3, 1, 2)]  # any order
        assert main(["predict", str(run), str(digits), "--merge", *shards, "--out", str(tmp_path / f"all.{fmt}")]) == 0
    finally:
        bad.unlink()
    assert (tmp_path / f"all.{fmt}").read_bytes().decode() == one
    lines = one.splitlines()[fmt == "csv":]
    rows = [json.loads(line) for line in lines] if fmt == "json" else [line.split(",") for line in lines]
    failed = [r for r in rows if (r["error"] if fmt == "json" else r[4])]
    assert len(rows) == 120 * (3 if fmt == "csv" else 1) + 1
    assert [r["path"] if fmt == "json" else r[0] for r in failed] == [str(bad)]


@pytest.mark.slow
def test_a_killed_shard_resumes_and_writes_each_image_once(tmp_path_factory, tmp_path):
    run, digits = tiny_run(tmp_path_factory)
    images = tmp_path / "many"
    images.mkdir()
    sources = sorted(digits.rglob("*.png"))
    for i in range(1000):  # hard links: many files, no copying; enough to be killed mid-way
        os.link(sources[i % len(sources)], images / f"{i:04d}.png")
    out = tmp_path / "p1.csv"
    command = [sys.executable, "-m", "imgclf", "predict", str(run), str(images), "--shard", "1/2",
               "--out", str(out), "--batch-size", "1", "--top-k", "2"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while (not out.exists() or out.read_text().count("\n") < 41) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = out.read_text().count("\n") - 1
    assert proc.returncode == -signal.SIGKILL and 40 <= written < 1000, "killed before it finished"
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"already in {out}" in rerun.stderr
    rows = out.read_text().splitlines()[1:]
    paths = [row.split(",")[0] for row in rows]
    shard = [str(p) for p in Shard(0, 2).take(sorted(images.iterdir()))]
    assert paths == [p for p in shard for _ in range(2)]  # every image once (two ranks), in order


@pytest.mark.slow
def test_predict_workers_merge_on_the_chief(tmp_path_factory, tmp_path, capsys):
    from imgclf.training.distribute import loopback_workers
    run, digits = tiny_run(tmp_path_factory)
    capsys.readouterr()  # whatever training the run printed
    assert main(["predict", str(run), str(digits), "--format", "csv"]) == 0
    one = capsys.readouterr().out
    workers, out = loopback_workers(2), tmp_path / "all.csv"
    procs = [subprocess.Popen([sys.executable, "-m", "imgclf", "predict", str(run), str(digits), "--workers", workers,
                               "--worker-index", str(i), "--out", str(out)], stderr=subprocess.PIPE, text=True)
             for i in (1, 0)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert out.read_bytes().decode() == one
    assert sorted(f.name for f in tmp_path.iterdir()) == ["all.csv"]  # the parts are merged and removed
    assert "the chief merges it" in errs[0] and "merged 2 workers' shards" in errs[1]
