"""Where each epoch's row goes once trained: the run's history.csv and its TensorBoard logs.

Example:
    >>> with HistoryWriter(record, verbose=True, rows=[]) as log:
    ...     fit_two_phase(net, cfg.train, data, log)
"""
from __future__ import annotations

from imgclf.record import RunRecord
from imgclf.training.phases import HISTORY_KEYS


class HistoryWriter:
    """An EpochLog (phases.EpochLog's interface) that rewrites history.csv (atomically, through
    the record) after every epoch and adds the epoch's numbers to the TensorBoard logs.

    Args:
        record: the run (a scratch one on a non-chief worker).
        verbose: progress bars and per-epoch lines on stdout.
        rows: the history so far (a resumed run's), kept at the top of history.csv.
    """

    def __init__(self, record: RunRecord, verbose: bool, rows: list[dict]):
        self.record, self.verbose, self.rows = record, verbose, list(rows)

    def __enter__(self):
        import tensorflow as tf
        self.writer = tf.summary.create_file_writer(str(self.record.logs_dir))
        return self

    def on_epoch(self, row: dict) -> None:
        import tensorflow as tf
        self.rows.append(row)
        self.record.write_history(self.rows, HISTORY_KEYS)
        with self.writer.as_default(step=row["epoch"]):
            for key, value in row.items():
                if isinstance(value, float) and key != "epoch":
                    tf.summary.scalar(key, value)
        self.writer.flush()

    def __exit__(self, *exc):
        self.writer.close()
        return False
