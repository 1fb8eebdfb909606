"""Mean squared error for regression."""

import math

import evaluate
from sklearn.metrics import mean_squared_error

from lmctl.metrics import _base  # by module: evaluate takes the first Metric class it finds here

_DESCRIPTION = """
Mean squared error: the average of the squared differences between predictions and references,
mean((prediction - reference) ** 2). Lower is better; 0 is a perfect fit.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of float): predicted values.
    references (list of float): ground-truth values.
    sample_weight (list of float): per-example weights. Defaults to None.
    squared (bool): if False, return the root mean squared error instead. Defaults to True.
Returns:
    mse (float): non-negative.
Examples:
    >>> mse = evaluate.load("lmctl/metrics/mse.py")
    >>> mse.compute(predictions=[2.5, 0.0, 2.0, 8.0], references=[3.0, -0.5, 2.0, 7.0])
    {'mse': 0.375}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Mse(_base.PairMetric):
    _doc, _args_doc = _DESCRIPTION, _KWARGS_DESCRIPTION
    _url = "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.mean_squared_error.html"
    _dtype = "float64"

    def _compute(self, predictions, references, sample_weight=None, squared=True):
        # scikit-learn >= 1.6 dropped the `squared` argument, so the root is taken here.
        score = float(mean_squared_error(references, predictions, sample_weight=sample_weight))
        return {"mse": score if squared else math.sqrt(score)}
