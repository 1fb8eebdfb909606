"""Matthews correlation coefficient for binary and multiclass classification."""

import evaluate
from sklearn.metrics import matthews_corrcoef

from lmctl.metrics import _base  # by module: evaluate takes the first Metric class it finds here

_DESCRIPTION = """
The Matthews correlation coefficient (MCC) is the correlation between predicted and true labels,
computed from the full confusion matrix, so it stays informative on imbalanced data. For binary
labels: (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)). It ranges from -1 (total
disagreement) through 0 (no better than chance) to +1 (perfect prediction).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted labels.
    references (list of int): ground-truth labels.
    sample_weight (list of float): per-example weights. Defaults to None.
Returns:
    matthews_correlation (float): in [-1, 1]; 0.0 when undefined (e.g. a single predicted class).
Examples:
    >>> mcc = evaluate.load("lmctl/metrics/matthews_correlation.py")
    >>> mcc.compute(predictions=[1, 1, 0, 0], references=[1, 0, 0, 0])
    {'matthews_correlation': 0.5773502691896258}
"""

_CITATION = """
@article{matthews1975comparison,
  title={Comparison of the predicted and observed secondary structure of {T4} phage lysozyme},
  author={Matthews, Brian W.},
  journal={Biochimica et Biophysica Acta (BBA) - Protein Structure},
  volume={405},
  number={2},
  pages={442--451},
  year={1975}
}
""" + _base.SKLEARN_CITATION


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MatthewsCorrelation(_base.PairMetric):
    _doc, _args_doc, _citation = _DESCRIPTION, _KWARGS_DESCRIPTION, _CITATION
    _url = "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.matthews_corrcoef.html"

    def _compute(self, predictions, references, sample_weight=None):
        score = matthews_corrcoef(references, predictions, sample_weight=sample_weight)
        return {"matthews_correlation": float(score)}
