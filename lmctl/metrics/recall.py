"""Recall for binary and multiclass classification."""

import evaluate
from sklearn.metrics import recall_score

from lmctl.metrics import _base  # by module: evaluate takes the first Metric class it finds here

_DESCRIPTION = """
Recall is the fraction of positive references that were predicted positive: TP / (TP + FN).
For multiclass inputs, `average` selects how per-class scores are combined.
"""

_KWARGS_DESCRIPTION = _base.LABEL_SCORE_ARGS + """Returns:
    recall (float, or list of float when average is None): in [0, 1].
Examples:
    >>> recall = evaluate.load("lmctl/metrics/recall.py")
    >>> recall.compute(predictions=[1, 1, 0, 0], references=[1, 0, 0, 0])
    {'recall': 1.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Recall(_base.LabelScore):
    _doc, _args_doc = _DESCRIPTION, _KWARGS_DESCRIPTION
    _url = "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.recall_score.html"
    _key = "recall"
    _score = staticmethod(recall_score)
