"""Multi-worker training: cluster parsing, row assignment, and two real workers on loopback."""
import json
import subprocess
import sys

import numpy as np
import pytest

from imgclf.cli import main
from imgclf.training.distribute import Cluster, configure_cluster, loopback_workers, replica_rows
from imgclf.errors import ImgclfError


@pytest.fixture
def clean_env(monkeypatch):
    """No TF_CONFIG during the test, and none left behind: configure_cluster sets it, and a
    leftover would make later tests in this process start a multi-worker strategy."""
    monkeypatch.setenv("TF_CONFIG", "")  # records the original value (or its absence) for teardown
    monkeypatch.delenv("TF_CONFIG")
    return monkeypatch


def test_workers_flags_write_tf_config(clean_env):
    import os
    cluster = configure_cluster(["10.0.0.1:2222", "10.0.0.2:2222"], 1)
    assert (cluster.size, cluster.index, cluster.is_chief) == (2, 1, False)
    assert json.loads(os.environ["TF_CONFIG"]) == {"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]},
                                                   "task": {"type": "worker", "index": 1}}
    assert "worker 1 of 2" in cluster.describe()


def test_tf_config_is_read_with_or_without_a_chief_task(clean_env):
    assert configure_cluster() == Cluster()
    clean_env.setenv("TF_CONFIG", json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"]},
                                              "task": {"type": "worker", "index": 1}}))
    assert configure_cluster() == Cluster(("a:1", "b:2", "c:3"), 2)
    clean_env.setenv("TF_CONFIG", json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:2"]},
                                              "task": {"type": "chief", "index": 0}}))
    assert configure_cluster().is_chief


@pytest.mark.parametrize("workers, index, message", [
    (["a:1", "b:2"], None, "needs --worker-index"),
    (["a:1", "b:2"], 2, "outside 0..1"),
    (["a:1", "nonsense"], 0, "'nonsense' is not host:port"),
    (["a:1", "a:1"], 0, "listed twice"),
    (None, 0, "needs --workers"),
])
def test_bad_worker_flags_say_what_is_wrong(clean_env, workers, index, message):
    with pytest.raises(ImgclfError, match=message):
        configure_cluster(workers, index)


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}), "'ps'"),
    (json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}), "not in the cluster"),
])
def test_bad_tf_config_is_one_line_error(clean_env, text, message):
    clean_env.setenv("TF_CONFIG", text)
    with pytest.raises(ImgclfError, match=message):
        configure_cluster()


def test_cli_rejects_bad_workers_before_any_work(clean_env, tmp_path, capsys):
    assert main(["train", str(tmp_path), "--workers", "localhost:1,localhost:2", "--worker-index", "5"]) != 0
    err = capsys.readouterr().err.strip()
    assert "outside 0..1" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_loopback_workers_are_distinct_free_ports(clean_env):
    workers = loopback_workers(3).split(",")
    assert len(set(workers)) == 3 and all(w.startswith("127.0.0.1:") for w in workers)
    assert configure_cluster(workers, 2).size == 3


@pytest.mark.parametrize("size", [1, 2, 7, 10, 33])
@pytest.mark.parametrize("replicas", [1, 2, 3, 4])
def test_replica_rows_cover_every_row_once(size, replicas):
    rows = [i for r in range(replicas) for i in range(*replica_rows(size, r, replicas))]
    assert rows == list(range(size))


# A worker process: train through the API with the given cluster, save the final weights.
WORKER = """
import sys, json, numpy as np
from imgclf.training.distribute import configure_cluster
from imgclf.options import resolve_config
from imgclf.workflow import run_training
workers, index, out, data, runs, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
cluster = configure_cluster(workers.split(",") if workers else None, index if workers else None)
# every setting given: one process is not planned either (several workers never are)
cfg = resolve_config(data, None, runs_dir=runs, name="mw", image_size=32, epochs=2, fine_tune_epochs=2,
                     fine_tune_blocks=3, views=2, schedule="plateau", batch_size=16, seed=3, dropout=0.0,
                     val_fraction=0.2, test_fraction=0.2, **json.loads(extra))
result = run_training(cfg, verbose=False, cluster=cluster)
np.savez(out, *result.model.get_weights())
print(json.dumps({"run_dir": str(result.run_dir), "losses": [r["loss"] for r in result.history],
                  "val": [[r["val_loss"], r["val_accuracy"]] for r in result.history]}))
"""


def _worker(workers, index, out, data, runs, extra):
    return subprocess.Popen([sys.executable, "-c", WORKER, workers, str(index), str(out), str(data), str(runs),
                             json.dumps(extra)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc):
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1]), err


@pytest.mark.slow
@pytest.mark.parametrize("extra", [{}, {"feature_cache": False}], ids=["cached", "plain"])
def test_two_workers_on_loopback_equal_one_process(clean_env, tmp_path, extra):
    from imgclf.data.datasets import write_digits
    write_digits(tmp_path / "digits", per_class=12)
    workers = loopback_workers(2)
    procs = [_worker(workers, i, tmp_path / f"w{i}.npz", tmp_path / "digits", tmp_path / "runs", extra)
             for i in range(2)]
    (chief, chief_err), (other, other_err) = [_finish(p) for p in procs]
    for err in (chief_err, other_err):  # no TensorFlow warning per all-gather, no peer "crash" at the end
        assert "eagerly has significant overhead" not in err and "have crashed" not in err, err[-2000:]
    info = json.loads((tmp_path / "runs" / "mw" / "run.json").read_text())
    assert (info["strategy"], info["replicas"]) == ("MultiWorkerMirroredStrategy", 2)
    assert other["run_dir"] == "None" and chief["run_dir"] == str(tmp_path / "runs" / "mw")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["mw"]  # the chief's run only
    assert (tmp_path / "runs" / "mw" / "COMPLETE").is_file()
    # every figure in the chief's run (on the cached path the other worker drew the mistakes grid)
    drawn = {p.name: p.read_bytes()[:8] for p in (tmp_path / "runs" / "mw" / "plots").iterdir()}
    assert set(drawn) == {"training_curves.png", "confusion_matrix.png", "per_class.png", "mistakes.png",
                          "reliability.png"} and set(drawn.values()) == {b"\x89PNG\r\n\x1a\n"}, drawn
    w0, w1 = (np.load(tmp_path / f"w{i}.npz") for i in range(2))
    for key in w0.files:  # data-parallel replicas end bit-identical
        np.testing.assert_array_equal(w0[key], w1[key])
    assert chief["losses"] == other["losses"]
    assert chief["val"] == other["val"]  # all-reduced: early stopping sees the same numbers on both

    single, _ = _finish(_worker("", 0, tmp_path / "single.npz", tmp_path / "digits", tmp_path / "runs1", extra))
    np.testing.assert_allclose(chief["losses"], single["losses"], rtol=1e-4)  # same global batch
    ws = np.load(tmp_path / "single.npz")
    # Summing two replicas' gradients rounds differently from one batch's; Adam's step is about
    # the rate wherever a gradient is near 0, so a few such weights drift further. On an Intel
    # Xeon with AVX512-FP16 (2026-12-07, also at eeaa90e) 9 of 221,184 weights of one output
    # channel differed by up to 2.6e-4: nearly all stay within 2e-4, none beyond 1e-3.
    for key in w0.files:
        diff = np.abs(w0[key] - ws[key])
        assert np.mean(diff > 2e-4) < 1e-4 and diff.max() < 1e-3, (key, np.sum(diff > 2e-4), diff.max())


def _cli(*args):
    return subprocess.Popen([sys.executable, "-m", "imgclf", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_worker_killed_then_every_worker_resumes_from_the_chief_checkpoint(clean_env, tmp_path):
    import signal
    import time
    from imgclf.data.datasets import write_digits
    write_digits(tmp_path / "digits", per_class=12)
    runs = tmp_path / "runs"
    args = [str(tmp_path / "digits"), "--image-size", "32", "--epochs", "6", "--fine-tune-epochs", "3",
            "--batch-size", "16", "--seed", "3", "--plain", "--patience", "20", "--quiet",
            "--runs-dir", str(runs), "--name", "k"]
    workers = loopback_workers(2)
    chief, other = (_cli("train", *args, "--workers", workers, "--worker-index", str(i)) for i in range(2))
    history = runs / "k" / "history.csv"
    deadline = time.time() + 600
    while not (history.is_file() and len(history.read_text().splitlines()) >= 3):  # header + 2 epochs
        assert chief.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.05)
    other.send_signal(signal.SIGKILL)
    other.communicate()
    _, err = chief.communicate(timeout=300)
    last = err.strip().splitlines()[-1]
    assert chief.returncode != 0 and last.startswith("imgclf: error: worker 0 of 2")
    assert "lost contact with another worker" in last and f"--resume {runs / 'k'}" in last
    assert (runs / "k" / "checkpoint.npz").is_file() and not (runs / "k" / "COMPLETE").exists()

    workers = loopback_workers(2)  # the old ports may linger
    procs = [_cli("train", "--resume", str(runs / "k"), "--quiet", "--workers", workers, "--worker-index", str(i))
             for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    assert "the chief (worker 0) wrote the run" in outs[1][0]
    epochs = [int(line.split(",")[1]) for line in history.read_text().splitlines()[1:]]
    assert epochs == list(range(1, 10)) and (runs / "k" / "COMPLETE").is_file()


# A worker process: build the feature cache alone (synthetic images: 150 train, 70 val, 32 px),
# its own shard under the cluster, then exchanged; save every cache array and the stats.
CACHE_WORKER = """
import sys, json, dataclasses, numpy as np
from pathlib import Path
from imgclf.training.distribute import configure_cluster, make_strategy
workers, index, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cluster = configure_cluster(workers.split(",") if workers else None, index if workers else None)
strategy = make_strategy(cluster)  # before any TensorFlow op
from imgclf.config import RunConfig, TrainConfig
from imgclf.training.exchange import WorkerShards
from imgclf.training.features import CachedData
from imgclf.training.model import build_network
rng = np.random.default_rng(0)
images, labels = rng.integers(0, 255, (220, 32, 32, 3)).astype(np.uint8), np.arange(220) % 3
cfg = dataclasses.replace(RunConfig(), train=TrainConfig(epochs=3, fine_tune_epochs=1, views=3, fine_tune_blocks=2))
with strategy.scope():
    net = build_network("efficientnet_lite0", 3, 32, seed=0)
data = CachedData(net, cfg, (images[:150], labels[:150]), (images[150:], labels[150:]), Path(out + ".d"),
                  shards=WorkerShards(cluster, strategy))
probs = data.predict(images[150:])
np.savez(out, feats=data.feats, val_feats=data.val_feats, acts=data.acts, val_acts=data.val_acts, probs=probs)
print(json.dumps(data.stats))
"""


@pytest.mark.slow
def test_two_workers_each_cache_their_shard_and_the_exchanged_cache_is_one_process_s(clean_env, tmp_path):
    workers = loopback_workers(2)
    procs = [subprocess.Popen([sys.executable, "-c", CACHE_WORKER, workers, str(i), str(tmp_path / f"w{i}.npz")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    stats = [_finish(p)[0] for p in procs]
    single, _ = _finish(subprocess.Popen([sys.executable, "-c", CACHE_WORKER, "", "0", str(tmp_path / "one.npz")],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    # 150 train rows are batches [0, 64) | [64, 150), 70 val rows [0, 64) | [64, 70); 3 views
    assert [s["cache_rows_built"] for s in stats] == [3 * 64 + 64, 3 * 86 + 6]
    assert single["cache_rows_built"] == 3 * 150 + 70 and "cache_mb_received" not in single
    assert all(s["cache_mb_received"] > 0 for s in stats)
    one, w0, w1 = (np.load(tmp_path / f"{name}.npz") for name in ("one", "w0", "w1"))
    for key in one.files:  # every worker holds the cache (and the predictions) one process makes
        assert w0[key].shape == one[key].shape
        np.testing.assert_array_equal(w0[key], one[key], err_msg=key)
        np.testing.assert_array_equal(w1[key], one[key], err_msg=key)
    assert not np.array_equal(one["feats"][1], one["feats"][2])  # augmented views differ


def test_the_chiefs_last_barrier_does_not_fail_a_written_run_when_a_worker_is_gone(monkeypatch):
    import tensorflow as tf

    from imgclf.training.distribute import Cluster
    from imgclf.training.exchange import WorkerShards
    shards = WorkerShards(Cluster(("127.0.0.1:1", "127.0.0.1:2"), 0), strategy=None)

    def gone(local):
        raise tf.errors.UnavailableError(None, None, "task 1 is gone")
    monkeypatch.setattr(shards, "_all_gather", gone)
    shards.barrier(gone_ok=True)  # the chief: its run is written, nothing is missing
    with pytest.raises(tf.errors.UnavailableError):
        shards.barrier()  # another worker: the chief is gone before writing the run
