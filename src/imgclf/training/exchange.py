"""Shards between workers: each worker computes its own shard of an array, an all-gather gives
every worker the whole array.

The sharded file check (data.load_dataset's ``share``: ``gather``), the head phase every worker
trains whole (``first``: worker 0's weights once an epoch), the sharded feature cache and the
sharded evaluation use it (issue 19, design (b): shards are
exchanged). With R workers, worker r runs the frozen part of the network only on its shard of
whole batches of each split (and of each augmented view), then the shards are all-gathered
through the strategy's collectives (``ReplicaContext.all_gather``, over the same gRPC links as
the gradients), so every worker ends with the cache one process would have built, row for row.
Time scales with 1/R, memory does not; the training that follows is then exactly today's: every
worker builds the same global batches and each replica trains on its rows of them, the same
trajectory as one process. The other design, each worker keeping only its shard and drawing its
part of every global batch from it, would also divide memory by R but change which images meet
in a batch (and so the trajectory) with R. One trajectory for every R keeps resumption and the
tests exact and changes nothing downstream; the price is memory: each worker holds one process's
cache (16 MB for fashion-mnist-1k at 96 px, 3.3 GB for 100k images; at 1M images and 224 px the
cost model's 179 GB go to disk through allocate's memmap), where keeping shards would need 1/R.

Shards are whole batches (``data.shards.Shard.span`` with ``unit=batch_size``): the batches each worker runs are the very batches one
process runs, so a batch-dependent kernel or a per-batch augmentation draw gives the same rows.

Example:
    >>> shards = WorkerShards(cluster, strategy)
    >>> start, stop = shards.span(900, batch_size=64)      # worker 1 of 2: (448, 900)
    >>> out[start:stop] = compute(images[start:stop]); shards.fill(out, batch_size=64)
"""
from __future__ import annotations

import json
import math

import numpy as np

from imgclf.data.shards import Shard

CHUNK_BYTES = 64 * 2**20  # rows per all-gather round: well under gRPC's message limits


class WorkerShards:
    """This worker's shard of every split and the exchange of shards; one process is shard 0 of 1
    and exchanges nothing.

    Args:
        cluster: imgclf.training.distribute.Cluster (its index and size).
        strategy: the tf.distribute strategy the cluster runs (None for one process).

    Every worker must make the same calls in the same order: each exchange is a collective.
    """

    def __init__(self, cluster=None, strategy=None):
        self.index = cluster.index if cluster is not None else 0
        self.count = cluster.size if cluster is not None else 1
        self.strategy = strategy

    def span(self, n: int, batch_size: int = 1) -> tuple[int, int]:
        """This worker's rows of a split of ``n``."""
        return Shard(self.index, self.count).span(n, batch_size)

    def fill(self, arrays, batch_size: int = 1, axis: int = 0) -> int:
        """Complete ``arrays`` (one array, or several of one dtype with as many rows), whose rows
        along ``axis`` in this worker's span this worker has filled, with every other worker's
        span; returns the bytes received. Several arrays travel together: one all-gather a round
        (each costs 0.1-0.2 s on loopback, whatever its size). A no-op for one process.

        Example:
            >>> shards.fill([feats, acts], batch_size=64, axis=1)   # (K, N, ...) caches
        """
        arrays = [arrays] if isinstance(arrays, np.ndarray) else list(arrays)
        n = arrays[0].shape[axis] if arrays else 0
        if self.count == 1 or not n:
            return 0
        spans = [Shard(r, self.count).span(n, batch_size) for r in range(self.count)]
        widths = [a.size // n for a in arrays]  # values per row of each array
        row_bytes = max(1, sum(widths) * arrays[0].itemsize)
        step = max(1, CHUNK_BYTES // (row_bytes * self.count))
        rounds = math.ceil(max(stop - start for start, stop in spans) / step)
        received = 0
        for c in range(rounds):
            parts = [(min(e, s + c * step), min(e, s + (c + 1) * step)) for s, e in spans]
            lo, hi = parts[self.index]
            whole = self._all_gather(np.concatenate(
                [np.moveaxis(a, axis, 0)[lo:hi].reshape(hi - lo, w) for a, w in zip(arrays, widths)], axis=1))
            at = 0
            for r, (lo, hi) in enumerate(parts):
                rows = whole[at:at + hi - lo]
                at += hi - lo
                if r == self.index or hi == lo:
                    continue
                column = 0
                for a, w in zip(arrays, widths):
                    view = np.moveaxis(a, axis, 0)
                    view[lo:hi] = rows[:, column:column + w].reshape((hi - lo,) + view.shape[1:])
                    column += w
                received += rows.nbytes
        return received

    def gather(self, value) -> list:
        """Every worker's ``value`` (anything JSON can carry), in worker order; ``[value]`` for
        one process. Sent as JSON text: one all-gather for the sizes, one a CHUNK_BYTES round.

        Example:
            >>> shards.gather({"files": digest, "infos": infos})   # data.load_dataset's check
            [{"files": ..., "infos": [...]}, {"files": ..., "infos": [...]}]
        """
        if self.count == 1:
            return [value]
        text = json.dumps(value, separators=(",", ":")).encode("utf-8", "surrogateescape")
        mine = np.frombuffer(text + b" " * (-len(text) % 4), np.int32)  # collectives take no uint8
        sizes = self._all_gather(np.array([mine.size], np.int64))
        step = max(1, CHUNK_BYTES // (4 * self.count))
        pieces = [[] for _ in sizes]
        for c in range(max(1, math.ceil(int(sizes.max()) / step))):
            whole, at = self._all_gather(mine[c * step:(c + 1) * step]), 0
            for r, size in enumerate(sizes):
                n = max(0, min(int(size), (c + 1) * step) - c * step)
                pieces[r].append(whole[at:at + n])
                at += n
        return [json.loads(np.concatenate(p).tobytes().decode("utf-8", "surrogateescape")) for p in pieces]

    def first(self, values: np.ndarray) -> np.ndarray:
        """Worker 0's ``values`` (the same shape on every worker), on every worker: one
        all-gather. A multi-worker run's head phase agrees on its weights with it
        (training.phases.Phase.agree).

        Example:
            >>> shards.first(np.array([0.25, 3.0]))   # worker 0 sent [0.25, 3.0]
            array([0.25, 3.  ])
        """
        return values if self.count == 1 else self._all_gather(np.ascontiguousarray(values))[:len(values)]

    def predict(self, predict, images, batch_size: int = 64) -> np.ndarray:
        """``predict(images)`` with each worker computing its span only, then exchanged: every
        worker gets all rows, in order.

        Example:
            >>> probs = shards.predict(cached.predict, test_images)
        """
        start, stop = self.span(len(images), batch_size)
        mine = predict(images[start:stop])
        if self.count == 1:
            return mine
        out = np.empty((len(images),) + mine.shape[1:], mine.dtype)
        out[start:stop] = mine
        self.fill(out, batch_size)
        return out

    def barrier(self, gone_ok: bool = False) -> None:
        """Return once every worker has called it (one tiny all-gather): the other workers wait
        for the chief to write the run, so none leaves while the chief still works (the chief's
        coordination service then logged the departed worker as a crashed task on stderr).
        ``gone_ok``: a worker that is gone already is no error (the chief, its run written)."""
        if self.count == 1:
            return
        import tensorflow as tf
        try:
            self._all_gather(np.zeros(1, np.float32))
        except tf.errors.OpError:
            if not gone_ok:
                raise

    def _all_gather(self, local: np.ndarray) -> np.ndarray:
        """The concatenation, in worker order, of every worker's ``local`` (sizes may differ,
        empty included). With several replicas on one worker only its first contributes. Run
        eagerly (a few calls a run, each of other data): TensorFlow's warning that eager
        collectives are slow, printed at every call, is held back."""
        import tensorflow as tf
        strategy = self.strategy
        per_worker = max(1, strategy.num_replicas_in_sync // self.count)
        empty = local[:0]

        def value(ctx):
            return tf.constant(local if ctx.replica_id_in_sync_group % per_worker == 0 else empty)

        def gather(x):
            return tf.distribute.get_replica_context().all_gather(x, axis=0)

        logger = tf.get_logger()
        level = logger.level
        logger.setLevel("ERROR")
        try:
            values = strategy.experimental_distribute_values_from_function(value)
            return strategy.experimental_local_results(strategy.run(gather, args=(values,)))[0].numpy()
        finally:
            logger.setLevel(level)
