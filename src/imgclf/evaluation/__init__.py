"""The evaluation stage: predictions -> metrics, figures and the run's report.

Owns: the one evaluator that training, ``imgclf evaluate`` and the export check share
(``evaluator``: ``evaluate_on``, ``save_evaluation``, ``compare``; the figures shared out among
the workers of a multi-worker run), the metrics and their
terminal table (``metrics``, pure NumPy and scikit-learn), the figures (``plots``, Matplotlib,
drawing only; ``image_plots``: the mistakes grid and the explain overlays), Grad-CAM heat maps
(``saliency``, TensorFlow on the trained Keras model), the bootstrap intervals and paired comparisons (``intervals``), calibration
(``calibration``: ECE, temperature, coverage, the test-time flip and the held-out probabilities), the self-contained report.html (``report``, built
from ``html``'s pieces), and the runs of a folder side by side (``runs``: the ``imgclf runs``
table; ``runs_page``: two runs compared).
May import: ``imgclf.record``, ``imgclf.files``, ``imgclf.errors``, ``imgclf.ranking``; it runs models only through
the ``predict_arrays`` of whatever classifier it is given, and (``saliency``) differentiates the
Keras model it is handed.

Example:
    >>> from imgclf.evaluation import evaluate_on, save_evaluation
    >>> result = evaluate_on(clf, images, labels)
    >>> save_evaluation(result, images, record)
"""
from imgclf.evaluation.evaluator import Evaluation, compare, evaluate_on, held_out_split, save_evaluation
from imgclf.evaluation.metrics import compute_metrics, format_metrics, mistakes

__all__ = ["Evaluation", "evaluate_on", "save_evaluation", "compare", "held_out_split", "compute_metrics",
           "format_metrics", "mistakes"]
