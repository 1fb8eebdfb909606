"""Precision for binary and multiclass classification."""

import evaluate
from sklearn.metrics import precision_score

from lmctl.metrics import _base  # by module: evaluate takes the first Metric class it finds here

_DESCRIPTION = """
Precision is the fraction of positive predictions that are correct: TP / (TP + FP).
For multiclass inputs, `average` selects how per-class scores are combined.
"""

_KWARGS_DESCRIPTION = _base.LABEL_SCORE_ARGS + """Returns:
    precision (float, or list of float when average is None): in [0, 1].
Examples:
    >>> precision = evaluate.load("lmctl/metrics/precision.py")
    >>> precision.compute(predictions=[1, 1, 0, 0], references=[1, 0, 0, 0])
    {'precision': 0.5}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Precision(_base.LabelScore):
    _doc, _args_doc = _DESCRIPTION, _KWARGS_DESCRIPTION
    _url = "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.precision_score.html"
    _key = "precision"
    _score = staticmethod(precision_score)
