"""The health stage: what is wrong with a dataset before a model learns it.

Owns: exact and near duplicates and the leakage and label conflicts they reveal (``hashing``;
``nearcopy``: candidates from hashes and neighbours, confirmed by thumbnails), the frozen
backbone's pooled features and cosine neighbours of every image (``features``), likely label errors from out-of-fold probabilities ranked by cleanlab
(``labels``), outliers and the cheap facts (tiny images, extreme aspect ratios, grayscale among
colour, class imbalance: ``outliers``), the findings and their text and JSON (``findings``),
the whole check and the cheap one ``imgclf train`` runs (``check``), the cleaned CSV (``clean``)
and the HTML page (``page``). May import: ``imgclf.data``, ``imgclf.backbones``,
``imgclf.runtime``, ``imgclf.training`` and the shared modules. Importing it does not import
TensorFlow; ``features`` does when it runs.

Example:
    >>> from imgclf import data, health
    >>> report = health.check_dataset(data.load_dataset("photos"))
    >>> report.counts()["leak"]
    0
"""
from imgclf.health.check import cheap_checks, check_dataset, train_checks
from imgclf.health.clean import clean_rows, write_clean_csv
from imgclf.health.findings import Fact, Group, HealthReport, Suspect

__all__ = ["check_dataset", "cheap_checks", "train_checks", "HealthReport", "Group", "Suspect", "Fact", "clean_rows",
           "write_clean_csv"]
