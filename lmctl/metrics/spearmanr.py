"""Spearman rank correlation coefficient for regression."""

import datasets
import evaluate
import numpy as np
from scipy.stats import spearmanr

_DESCRIPTION = """
The Spearman rank correlation coefficient is the Pearson correlation of the ranks of predictions
and references, so it measures how well a monotonic function describes their relationship. It
ranges from -1 (perfectly decreasing) through 0 (no monotonic relationship) to +1 (perfectly
increasing). Ties receive their average rank.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of float): predicted values.
    references (list of float): ground-truth values.
    return_pvalue (bool): also return the two-sided p-value. Defaults to False.
Returns:
    spearmanr (float): in [-1, 1], or nan when undefined (fewer than two points, or a constant input).
    p-value (float): only when return_pvalue is True.
Examples:
    >>> spearmanr = evaluate.load("lmctl/metrics/spearmanr.py")
    >>> spearmanr.compute(predictions=[1.0, 2.0, 3.0], references=[1.0, 4.0, 9.0])
    {'spearmanr': 1.0}
"""

_CITATION = r"""
@article{2020SciPy-NMeth,
  author  = {Virtanen, Pauli and Gommers, Ralf and Oliphant, Travis E. and Haberland, Matt and Reddy, Tyler and Cournapeau, David and Burovski, Evgeni and Peterson, Pearu and Weckesser, Warren and Bright, Jonathan and {van der Walt}, St{\'e}fan J. and Brett, Matthew and Wilson, Joshua and Millman, K. Jarrod and Mayorov, Nikolay and Nelson, Andrew R. J. and Jones, Eric and Kern, Robert and Larson, Eric and Carey, C J and Polat, {\.I}lhan and Feng, Yu and Moore, Eric W. and {VanderPlas}, Jake and Laxalde, Denis and Perktold, Josef and Cimrman, Robert and Henriksen, Ian and Quintero, E. A. and Harris, Charles R. and Archibald, Anne M. and Ribeiro, Ant{\^o}nio H. and Pedregosa, Fabian and {van Mulbregt}, Paul and {SciPy 1.0 Contributors}},
  title   = {{{SciPy} 1.0: Fundamental Algorithms for Scientific Computing in Python}},
  journal = {Nature Methods},
  year    = {2020},
  volume  = {17},
  pages   = {261--272}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Spearmanr(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("float64"),
                    "references": datasets.Value("float64"),
                }
            ),
            reference_urls=["https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.spearmanr.html"],
        )

    def _compute(self, predictions, references, return_pvalue=False):
        x = np.asarray(references, dtype=np.float64)
        y = np.asarray(predictions, dtype=np.float64)
        # The correlation is undefined here; scipy would raise (n < 2) or warn on every call
        # (constant input), so report nan quietly and let the caller decide what to do with it.
        if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
            score, pvalue = float("nan"), float("nan")
        else:
            result = spearmanr(x, y)
            score, pvalue = float(result.statistic), float(result.pvalue)
        if return_pvalue:
            return {"spearmanr": score, "p-value": pvalue}
        return {"spearmanr": score}
