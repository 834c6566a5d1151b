"""Data-parallel training on TensorFlow's own engine: which strategy, which worker, which rows.

One process per worker runs the same ``imgclf train`` command. The cluster is described the
standard way, by the ``TF_CONFIG`` environment variable, or by ``--workers host:port,...
--worker-index i``, which write it. Several workers: ``MultiWorkerMirroredStrategy``; one
machine with several GPUs: ``MirroredStrategy``; otherwise the default strategy (no change).

Every worker builds the same global batches in the same seeded order; replica r of R trains on
rows ``[r*B//R, (r+1)*B//R)`` of each global batch of B rows, so no example is seen twice and
the result equals a single process with the same global batch. The loss is summed per replica
and divided by the global B; the optimizer all-reduces (sums) the gradients. Nothing is scaled:
``data.batch_size`` is the global batch and ``train.lr`` the rate for it, whatever the number of
replicas. Only the chief (worker 0) writes the run directory.

The one-off work is sharded too (imgclf.training.exchange): worker r runs the frozen part of the
network on its shard of whole batches of the training images (each cached view), of validation
and of test only, and the shards are all-gathered through this strategy's collectives. Every
worker then holds the feature cache, and the validation and test probabilities, that one
process computes, bit for bit (design (b) of issue 19: time 1/R, memory not). That keeps the
promise above: the same global batches, the same trajectory as one process, for any R, so a
resumed run and the tests stay exact. Validation metrics are sums all-reduced over the replicas,
so early stopping and the schedule see the same numbers on every worker; a multi-worker run is
not planned (no worker's own clock decides the recipe or the views), and the chief scores the
gathered test probabilities for the report.

Example:
    >>> cluster = configure_cluster(["10.0.0.1:2222", "10.0.0.2:2222"], 0)
    >>> strategy = make_strategy(cluster)
    >>> strategy.num_replicas_in_sync
    2
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass

from imgclf.errors import ImgclfError


@dataclass(frozen=True)
class Cluster:
    """Where this process stands: its worker index among ``workers`` (a single process is
    worker 0 of 1)."""

    workers: tuple[str, ...] = ()
    index: int = 0

    @property
    def size(self) -> int:
        return max(1, len(self.workers))

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    def describe(self) -> str:
        if self.size == 1:
            return "single process"
        return f"worker {self.index} of {self.size} ({self.workers[self.index]}){' (chief)' if self.is_chief else ''}"


def configure_cluster(workers: list[str] | None = None, index: int | None = None) -> Cluster:
    """The cluster from ``--workers``/``--worker-index`` (written to ``TF_CONFIG``), else from
    an existing ``TF_CONFIG``, else a single process.

    Args:
        workers: "host:port" of every worker, the same list in the same order on each.
        index: this worker's position in ``workers``.

    Returns:
        The Cluster; for several workers ``TF_CONFIG`` is set in this process's environment.

    Raises:
        ImgclfError: a malformed address list, index or TF_CONFIG.

    Example:
        >>> configure_cluster(["localhost:12345", "localhost:12346"], 1).is_chief
        False
    """
    if workers:
        if index is None:
            raise ImgclfError("--workers needs --worker-index (this machine's position in the list, from 0)")
        for address in workers:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise ImgclfError(f"--workers: '{address}' is not host:port")
        if not 0 <= index < len(workers):
            raise ImgclfError(f"--worker-index {index} is outside 0..{len(workers) - 1}")
        if len(set(workers)) != len(workers):
            raise ImgclfError("--workers: the same address is listed twice")
        os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": list(workers)},
                                              "task": {"type": "worker", "index": index}})
        return Cluster(tuple(workers), index)
    if index is not None:
        raise ImgclfError("--worker-index needs --workers")
    return _from_tf_config(os.environ.get("TF_CONFIG", ""))


def _from_tf_config(text: str) -> Cluster:
    if not text.strip():
        return Cluster()
    try:
        spec = json.loads(text)
        cluster, task = spec.get("cluster", {}), spec.get("task", {})
        kinds = set(cluster) - {"worker", "chief"}
        if kinds:
            raise ImgclfError(f"TF_CONFIG: task type '{sorted(kinds)[0]}' is not supported (use chief/worker)")
        workers = list(cluster.get("chief", [])) + list(cluster.get("worker", []))
        kind, index = task.get("type", "worker"), int(task.get("index", 0))
    except (ValueError, AttributeError, TypeError) as exc:
        raise ImgclfError(f"TF_CONFIG is not valid JSON of the form {{cluster: {{worker: [...]}}, task: "
                          f"{{type, index}}}}: {exc}") from None
    if kind not in ("worker", "chief"):
        raise ImgclfError(f"TF_CONFIG: task type '{kind}' is not supported (use chief/worker)")
    position = index + (len(cluster.get("chief", [])) if kind == "worker" else 0)
    if not workers or position >= len(workers):
        raise ImgclfError(f"TF_CONFIG: task {kind} {index} is not in the cluster")
    return Cluster(tuple(workers), position)


def make_strategy(cluster: Cluster):
    """MultiWorkerMirroredStrategy for several workers, MirroredStrategy for several local GPUs,
    else the default strategy. Call before building any model: variables must be made under
    its scope.

    Example:
        >>> make_strategy(Cluster()).num_replicas_in_sync
        1
    """
    import tensorflow as tf
    if cluster.size > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def replica_rows(batch_size, replica, replicas):
    """(start, stop) of this replica's rows in a global batch: contiguous, sizes differ by at
    most one, every row in exactly one replica: the split of ``data.shards``.

    Example:
        >>> [replica_rows(10, r, 3) for r in range(3)]
        [(0, 3), (3, 6), (6, 10)]
    """
    from imgclf.data.shards import bounds
    return bounds(replica, replicas, batch_size)


def strategy_info(strategy) -> dict:
    """How the run was distributed, for run.json: the strategy's class and replica count."""
    import tensorflow as tf
    strategy = strategy or tf.distribute.get_strategy()
    public = ("MultiWorkerMirroredStrategy", "MirroredStrategy")  # TF's classes have other names
    name = next((n for n in public if isinstance(strategy, getattr(tf.distribute, n))), "default")
    return {"strategy": name, "replicas": int(strategy.num_replicas_in_sync)}


@contextmanager
def lost_peers(cluster: Cluster, run_dir):
    """Turn TensorFlow's error when another worker dies or cannot be reached into one line that
    says how to go on: every worker restarts with ``--resume`` from the chief's last checkpoint.

    Example:
        >>> with lost_peers(cluster, "runs/fashion"):
        ...     fit_two_phase(...)
    """
    import tensorflow as tf
    lost = (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.DeadlineExceededError,
            tf.errors.AbortedError)
    try:
        yield
    except lost as exc:
        if cluster.size == 1:
            raise
        text = " ".join(str(exc).split())
        reason = text.partition("aborted by:")[2].strip() or type(exc).__name__
        reason = reason if len(reason) <= 160 else reason[:157] + "..."
        raise ImgclfError(f"{cluster.describe()}: lost contact with another worker ({reason}); the last "
                          f"epoch's checkpoint is kept: restart every worker with `imgclf train --resume "
                          f"{run_dir} --workers ... --worker-index I`") from None


def loopback_workers(n: int) -> str:
    """A ``--workers`` value for n workers on this machine: 127.0.0.1 with n free ports, for
    trying multi-worker training (and for its tests and benchmark). The ports are free when
    chosen; another process could take one before the workers bind it.

    Example:
        >>> loopback_workers(2)
        '127.0.0.1:41823,127.0.0.1:41824'
    """
    import socket
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))  # all bound at once, so the n ports differ
        return ",".join(f"127.0.0.1:{s.getsockname()[1]}" for s in socks)
    finally:
        for s in socks:
            s.close()
