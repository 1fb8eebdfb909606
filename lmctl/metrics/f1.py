"""F1 for binary and multiclass classification."""

import evaluate
from sklearn.metrics import f1_score

from lmctl.metrics import _base  # by module: evaluate takes the first Metric class it finds here

_DESCRIPTION = """
F1 is the harmonic mean of precision and recall: 2 * (precision * recall) / (precision + recall).
For multiclass inputs, `average` selects how per-class scores are combined.
"""

_KWARGS_DESCRIPTION = _base.LABEL_SCORE_ARGS + """Returns:
    f1 (float, or list of float when average is None): in [0, 1].
Examples:
    >>> f1 = evaluate.load("lmctl/metrics/f1.py")
    >>> f1.compute(predictions=[1, 1, 0, 0], references=[1, 0, 0, 0])
    {'f1': 0.6666666666666666}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(_base.LabelScore):
    _doc, _args_doc = _DESCRIPTION, _KWARGS_DESCRIPTION
    _url = "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"
    _key = "f1"
    _score = staticmethod(f1_score)
