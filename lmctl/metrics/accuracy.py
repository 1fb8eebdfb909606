"""Accuracy: the fraction of predictions equal to their reference label."""

import evaluate
from sklearn.metrics import accuracy_score

from lmctl.metrics import _base  # by module: evaluate takes the first Metric class it finds here

_DESCRIPTION = """
Accuracy is the proportion of correct predictions among all predictions:
(TP + TN) / (TP + TN + FP + FN).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted labels.
    references (list of int): ground-truth labels.
    normalize (bool): if False, return the number of correct predictions instead of the fraction. Defaults to True.
    sample_weight (list of float): per-example weights. Defaults to None.
Returns:
    accuracy (float): in [0, 1] when normalize is True.
Examples:
    >>> accuracy = evaluate.load("lmctl/metrics/accuracy.py")
    >>> accuracy.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
    {'accuracy': 0.75}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(_base.PairMetric):
    _doc, _args_doc = _DESCRIPTION, _KWARGS_DESCRIPTION
    _url = "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.accuracy_score.html"

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        score = accuracy_score(references, predictions, normalize=normalize, sample_weight=sample_weight)
        return {"accuracy": float(score)}
