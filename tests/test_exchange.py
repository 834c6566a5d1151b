"""Shards between workers: the exchange that completes every array (spans of whole batches: test_shards.py).

The all-gather is TensorFlow's (tests/test_distribute.py runs it between two real workers);
here R simulated workers in threads meet at a barrier and concatenate their pieces, so the
reassembly (several arrays, rows on any axis, uneven and empty spans, chunked rounds) is
checked quickly and exactly.
"""
import threading

import numpy as np
import pytest

from imgclf.training import exchange
from imgclf.training.distribute import Cluster
from imgclf.data.shards import Shard
from imgclf.training.exchange import WorkerShards


class _Simulated(WorkerShards):
    """Worker ``index`` of ``count`` threads; ``_all_gather`` concatenates their pieces in order."""

    def __init__(self, index, count, board):
        super().__init__(Cluster(tuple(f"h:{i}" for i in range(count)), index))
        self.board = board

    def _all_gather(self, local):
        pieces, barrier = self.board
        pieces[self.index] = local
        barrier.wait()
        whole = np.concatenate(list(pieces))
        barrier.wait()  # nobody overwrites a piece before every worker has read the round
        return whole


def _exchange(count, make, fill):
    """Each simulated worker fills its span of ``make()``'s arrays with the true values, then
    exchanges; returns every worker's arrays."""
    board = ([None] * count, threading.Barrier(count))
    results, errors = [None] * count, []

    def worker(r):
        try:
            shards = _Simulated(r, count, board)
            results[r] = fill(shards, make())
        except Exception as exc:  # surfaced below: a thread's exception would vanish
            errors.append(exc)
            board[1].abort()
    threads = [threading.Thread(target=worker, args=(r,)) for r in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


@pytest.mark.parametrize("count", [2, 3])
def test_exchange_of_several_caches_with_rows_on_axis_1_gives_everyone_the_whole(count, monkeypatch):
    monkeypatch.setattr(exchange, "CHUNK_BYTES", 200)  # many rounds, some workers done before others
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(3, 11, 5)).astype(np.float16)
    acts = rng.normal(size=(3, 11, 2, 2, 3)).astype(np.float16)

    def fill(shards, arrays):
        start, stop = shards.span(11, 4)
        for mine, truth in zip(arrays, (feats, acts)):
            mine[:, start:stop] = truth[:, start:stop]
        received = shards.fill(arrays, 4, axis=1)
        return arrays, received
    for r, (arrays, received) in enumerate(_exchange(count, lambda: [np.full_like(feats, np.nan),
                                                                     np.full_like(acts, np.nan)], fill)):
        np.testing.assert_array_equal(arrays[0], feats)
        np.testing.assert_array_equal(arrays[1], acts)
        start, stop = Shard(r, count).span(11, 4)
        assert received == (11 - (stop - start)) * (3 * 5 + 3 * 12) * 2  # float16: the others' rows only


def test_sharded_predictions_are_one_process_s():
    images = np.arange(70 * 2, dtype=np.float32).reshape(70, 2)

    def predict(x):
        return np.stack([x.sum(1), x.max(1)], axis=1)
    for probs in _exchange(2, lambda: None, lambda shards, _: shards.predict(predict, images, 64)):
        np.testing.assert_array_equal(probs, predict(images))
    assert WorkerShards().fill(np.zeros((4, 2)), 1) == 0  # one process exchanges nothing


def test_gather_gives_every_worker_each_worker_s_value_in_order(monkeypatch):
    monkeypatch.setattr(exchange, "CHUNK_BYTES", 48)  # several rounds; worker 1's value ends first
    values = [{"files": "a", "infos": [[28, 28, "L", "PNG", "ab"] for _ in range(9)]},
              {"files": "a", "infos": ["not an image: caf\u00e9"]},
              {"files": "b", "infos": []}]
    got = _exchange(3, lambda: None, lambda shards, _: shards.gather(values[shards.index]))
    assert got == [values] * 3
    assert WorkerShards().gather({"x": 1}) == [{"x": 1}]  # one process: its own value, no collective


def _photos(root, per_class=7):
    from PIL import Image
    for c, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (20 + i, 16), (40 * c, 9 * i, 80)).save(root / name / f"{i}.png")
    (root / "dog" / "broken.png").write_bytes(b"not a png")


def test_sharded_file_check_gives_every_worker_one_process_s_dataset_for_its_shard_of_the_checks(tmp_path,
                                                                                                 monkeypatch):
    from imgclf.data import dataset as dataset_mod
    _photos(tmp_path / "d")
    one = dataset_mod.load_dataset(tmp_path / "d", seed=1)
    checked, lock = [], threading.Lock()
    real = dataset_mod.inspect_and_read

    def counting(path, *args):
        with lock:
            checked.append(path)
        return real(path, *args)
    monkeypatch.setattr(dataset_mod, "inspect_and_read", counting)
    got = _exchange(2, lambda: None, lambda shards, _: dataset_mod.load_dataset(tmp_path / "d", seed=1, share=shards))
    assert sorted(checked) == sorted(set(checked)) and len(checked) == 15  # each file once, by one worker
    assert len(one.decoded) == 14
    for ds in got:
        assert ds.paths == one.paths and ds.class_names == one.class_names
        for split in ds.labels:
            np.testing.assert_array_equal(ds.labels[split], one.labels[split])
        assert ds.infos == one.infos and ds.report.to_dict() == one.report.to_dict()
    # each worker keeps the small images it checked itself, and only those
    assert set(got[0].decoded) | set(got[1].decoded) == set(one.decoded) and not set(got[0].decoded) & set(got[1].decoded)
    assert "broken.png" in str(got[0].report.to_dict())  # the bad file, checked by one, reported by all


def test_workers_that_find_different_files_get_one_line_naming_the_data(tmp_path):
    from imgclf.data import dataset as dataset_mod
    from imgclf.errors import ImgclfError
    _photos(tmp_path / "a")
    _photos(tmp_path / "b", per_class=8)

    def load(shards, _):
        with pytest.raises(ImgclfError) as err:
            dataset_mod.load_dataset(tmp_path / "ab"[shards.index], share=shards)
        return str(err.value)
    first, second = _exchange(2, lambda: None, load)
    assert first.startswith(f"{tmp_path / 'a'}: worker 1 finds other files than worker 0")
    assert "every worker needs the same data at the same path" in second
