"""Every plot writes a real PNG of a sensible size, without touching global matplotlib state."""
import copy

import matplotlib
import numpy as np
import pytest
from PIL import Image

from imgclf.evaluation.metrics import compute_metrics
from imgclf.evaluation.image_plots import plot_mistakes
from imgclf.evaluation.plots import plot_confusion, plot_history, plot_per_class

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_png(path, min_bytes=10_000):
    """Assert a valid, non-trivial PNG; return its (width, height)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > min_bytes
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def history(head=4, fine_tune=3, val=True):
    rows = []
    for epoch in range(1, head + fine_tune + 1):
        row = {"phase": "head" if epoch <= head else "fine_tune", "epoch": epoch,
               "loss": 1 / epoch, "accuracy": 1 - 0.5 / epoch, "lr": 1e-3}
        if val:
            row.update(val_loss=1.2 / epoch + 0.01 * epoch, val_accuracy=0.9 - 0.5 / epoch)
        rows.append(row)
    return rows


def fake_metrics(num_classes, n=None, seed=0):
    rng = np.random.default_rng(seed)
    n = n or 10 * num_classes
    y = rng.integers(0, num_classes, n)
    logits = rng.normal(size=(n, num_classes))
    logits[np.arange(n), y] += 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    names = [f"class_{i}" for i in range(num_classes)]
    return compute_metrics(y, probs, names), names


@pytest.mark.parametrize("rows", [history(), history(fine_tune=0), history(val=False),
                                  history(head=0, fine_tune=3)],
                         ids=["both-phases", "head-only", "no-validation", "fine-tune-only"])
def test_plot_history(tmp_path, rows):
    path = plot_history(rows, tmp_path / "history.png")
    width, height = check_png(path)
    assert width > height > 300


def test_plot_history_tolerates_nan_and_empty(tmp_path):
    rows = history()
    rows[0]["val_loss"] = float("nan")
    check_png(plot_history(rows, tmp_path / "nan.png"))
    check_png(plot_history([], tmp_path / "empty.png"), min_bytes=3_000)


@pytest.mark.parametrize("num_classes", [2, 30])
def test_plot_confusion_and_per_class(tmp_path, num_classes):
    metrics, names = fake_metrics(num_classes)
    cm_size = check_png(plot_confusion(metrics["confusion_matrix"], names, tmp_path / "cm.png"))
    bars_size = check_png(plot_per_class(metrics, tmp_path / "per_class.png"))
    assert cm_size[0] > cm_size[1]  # two panels side by side
    if num_classes == 30:  # figures grow with the number of classes
        assert cm_size[1] > 1000 and bars_size[1] > 1500


def test_plot_confusion_handles_an_absent_class_and_rejects_bad_shapes(tmp_path):
    cm = np.array([[5, 1, 0], [2, 7, 0], [0, 0, 0]])  # class 2 never in the test set
    check_png(plot_confusion(cm, ["a", "b", "c"], tmp_path / "cm.png"))
    with pytest.raises(ValueError, match="shape"):
        plot_confusion(cm, ["a", "b"], tmp_path / "bad.png")


def test_plot_mistakes_grid(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (30, 32, 32, 3), dtype=np.uint8)
    y_true = np.zeros(30, int)
    y_pred = np.ones(30, int)
    y_pred[:3] = 0  # three right answers are skipped
    path = plot_mistakes(images, y_true, y_pred, np.full(30, 0.87), ["cat", "dog"],
                         tmp_path / "mistakes.png", max_images=10)
    width, height = check_png(path)
    assert width > 800 and height > 400  # 5 columns x 2 rows


def test_plot_mistakes_grey_images(tmp_path):
    images = np.zeros((2, 16, 16), np.uint8)
    check_png(plot_mistakes(images, [0, 1], [1, 0], [0.6, 0.9], ["a", "b"], tmp_path / "m.png"),
              min_bytes=3_000)


def test_plot_mistakes_none(tmp_path):
    path = plot_mistakes(np.zeros((0, 8, 8, 3), np.uint8), [], [], [], ["a", "b"],
                         tmp_path / "none.png")
    width, height = check_png(path, min_bytes=2_000)
    assert width > height


def test_plots_leave_global_state_and_no_temp_files(tmp_path):
    backend, rc = matplotlib.get_backend(), copy.deepcopy(dict(matplotlib.rcParams))
    metrics, names = fake_metrics(3)
    plot_per_class(metrics, tmp_path / "a.png")
    plot_confusion(metrics["confusion_matrix"], names, tmp_path / "b.png")
    assert matplotlib.get_backend() == backend
    assert dict(matplotlib.rcParams) == rc
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


def test_plot_history_from_csv_strings(tmp_path):
    # history.csv read back gives strings, with "" where a run had no validation split
    rows = [{k: str(v) for k, v in row.items()} for row in history(val=False)]
    for row in rows:
        row.update(val_loss="", val_accuracy="")
    check_png(plot_history(rows, tmp_path / "csv.png"))


def test_mistakes_and_explanation_overlays_draw_the_heat(tmp_path):
    from imgclf.evaluation.image_plots import plot_explanation
    images = np.full((2, 32, 32, 3), 128, np.uint8)
    heat = np.zeros((2, 32, 32), np.float32)
    heat[:, 4:12, 20:28] = 1.0
    plain = plot_mistakes(images, [0, 1], [1, 0], [0.6, 0.9], ["a", "b"], tmp_path / "plain.png")
    hot = plot_mistakes(images, [0, 1], [1, 0], [0.6, 0.9], ["a", "b"], tmp_path / "hot.png", heatmaps=heat)
    with Image.open(plain) as a, Image.open(hot) as b:
        assert a.size == b.size
        diff = np.abs(np.asarray(a.convert("RGB"), int) - np.asarray(b.convert("RGB"), int)).sum(-1)
    # the heat is drawn on the hot squares only (8 x 8 of 32 x 32 px: about 1/16 of each panel)
    changed = (diff > 60).sum()
    assert 0 < changed < 0.1 * diff.size
    one = plot_explanation(images[0], heat[0], "sneaker", 0.931, tmp_path / "x.gradcam.png", source="x.png")
    width, height = check_png(one, min_bytes=3_000)
    assert width > height


def test_workers_share_the_figures_and_the_chief_gets_every_one(tmp_path):
    import threading

    from imgclf.evaluation.evaluator import FIGURES, evaluate_on, figure_share, save_evaluation, send_figures
    from imgclf.record import PLOTS, RunRecord
    for count in range(1, 7):  # every figure drawn by exactly one worker, whatever the count
        shares = [figure_share(r, count) for r in range(count)]
        assert sorted(f for share in shares for f in share) == sorted(FIGURES), (count, shares)
    assert figure_share(1, 2) == ("mistakes",)  # the dearest (Grad-CAM) off the chief first

    class Clf:
        class_names = ["a", "b", "c"]
    rng = np.random.default_rng(0)
    labels, probs = np.arange(30) % 3, rng.dirichlet(np.ones(3), 30).astype(np.float32)
    images = rng.integers(0, 255, (30, 16, 16, 3), dtype=np.uint8)
    evaluation = evaluate_on(Clf(), images, labels, predict=lambda _: probs, runtime="test")
    records = [RunRecord(tmp_path / f"w{r}") for r in range(2)]
    for r, record in enumerate(records):
        save_evaluation(evaluation, images, record, figures=figure_share(r, 2))
    assert set(records[0].plots()) == {"confusion", "reliability", "per_class"} and set(records[1].plots()) == {"mistakes"}

    board, barrier, sent = [None, None], threading.Barrier(2), [None, None]

    def gather(r):
        def collective(value):
            board[r] = value
            barrier.wait()
            return list(board)
        return collective
    mistakes = records[1].plot_path("mistakes").read_bytes()
    threads = [threading.Thread(target=lambda r=r: sent.__setitem__(
        r, send_figures(records[r], figure_share(r, 2), gather(r), chief=r == 0))) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sent == [1, 1]  # the chief wrote one figure, the other worker sent one
    assert set(records[0].plots()) == set(PLOTS) - {"history"}
    assert records[0].plot_path("mistakes").read_bytes() == mistakes
