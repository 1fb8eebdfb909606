"""Spearman rank correlation coefficient for regression."""

import evaluate
from scipy.stats import spearmanr

from lmctl.metrics import _base  # by module: evaluate takes the first Metric class it finds here

_DESCRIPTION = """
The Spearman rank correlation coefficient is the Pearson correlation of the ranks of predictions
and references, so it measures how well a monotonic function describes their relationship. It
ranges from -1 (perfectly decreasing) through 0 (no monotonic relationship) to +1 (perfectly
increasing). Ties receive their average rank.
"""

_KWARGS_DESCRIPTION = _base.CORRELATION_ARGS + """Returns:
    spearmanr (float): in [-1, 1], or nan when undefined (fewer than two points, or a constant input).
    p-value (float): only when return_pvalue is True.
Examples:
    >>> spearmanr = evaluate.load("lmctl/metrics/spearmanr.py")
    >>> spearmanr.compute(predictions=[1.0, 2.0, 3.0], references=[1.0, 4.0, 9.0])
    {'spearmanr': 1.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Spearmanr(_base.Correlation):
    _doc, _args_doc = _DESCRIPTION, _KWARGS_DESCRIPTION
    _url = "https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.spearmanr.html"
    _key = "spearmanr"
    _correlate = staticmethod(spearmanr)
