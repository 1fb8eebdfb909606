"""Pearson correlation coefficient for regression."""

import evaluate
from scipy.stats import pearsonr

from lmctl.metrics import _base  # by module: evaluate takes the first Metric class it finds here

_DESCRIPTION = """
The Pearson correlation coefficient measures the linear relationship between predictions and
references. It ranges from -1 (perfect negative linear relationship) through 0 (none) to +1
(perfect positive linear relationship).
"""

_KWARGS_DESCRIPTION = _base.CORRELATION_ARGS + """Returns:
    pearsonr (float): in [-1, 1], or nan when undefined (fewer than two points, or a constant input).
    p-value (float): only when return_pvalue is True.
Examples:
    >>> pearsonr = evaluate.load("lmctl/metrics/pearsonr.py")
    >>> pearsonr.compute(predictions=[1.0, 2.0, 3.0], references=[2.0, 4.0, 6.0])
    {'pearsonr': 1.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Pearsonr(_base.Correlation):
    _doc, _args_doc = _DESCRIPTION, _KWARGS_DESCRIPTION
    _url = "https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.pearsonr.html"
    _key = "pearsonr"
    _correlate = staticmethod(pearsonr)
