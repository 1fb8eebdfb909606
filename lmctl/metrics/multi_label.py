"""Multi-label classification: micro/macro precision, recall and F1, per-label scores, subset accuracy."""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import precision_recall_fscore_support

from lmctl.metrics import _base  # by module: evaluate takes the first Metric class it finds here

_DESCRIPTION = """
Scores of predicted label sets against true ones, each row a set of labels written as a 0/1
indicator vector (one entry per label, the same length in every row).

- micro_precision, micro_recall, micro_f1: from the true positives, false positives and false
  negatives counted over every (row, label) pair: frequent labels weigh the most.
- macro_precision, macro_recall, macro_f1: each label's score, averaged over labels with equal
  weight: rare labels count as much as frequent ones.
- precision, recall, f1, support: each label's own (lists in label order; support = true rows).
- subset_accuracy: the share of rows whose predicted set is exactly the true set.

A score whose denominator is zero (a label never predicted, or never true) is `zero_division`
(default 0.0), as scikit-learn reports it, without a warning.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of list of int): per row, 1 for each predicted label, 0 otherwise.
    references (list of list of int): per row, 1 for each true label, 0 otherwise.
    zero_division (float): the value of an undefined score. Defaults to 0.0.
Returns:
    micro_precision, micro_recall, micro_f1, macro_precision, macro_recall, macro_f1, subset_accuracy
    (float): in [0, 1]. precision, recall, f1 (list of float) and support (list of int): per label.
Examples:
    >>> multi_label = evaluate.load("lmctl/metrics/multi_label.py")
    >>> multi_label.compute(predictions=[[1, 0], [1, 1]], references=[[1, 0], [0, 1]])["micro_f1"]
    0.8
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultiLabel(_base.PairMetric):
    _doc, _args_doc = _DESCRIPTION, _KWARGS_DESCRIPTION
    _url = "https://scikit-learn.org/stable/modules/model_evaluation.html#multilabel-ranking-metrics"

    def _features(self):
        return datasets.Features({"predictions": datasets.Sequence(datasets.Value("int8")),
                                  "references": datasets.Sequence(datasets.Value("int8"))})

    def _compute(self, predictions, references, zero_division=0.0):
        pred, true = np.asarray(predictions, dtype=bool), np.asarray(references, dtype=bool)
        if pred.ndim != 2 or pred.shape != true.shape:
            raise ValueError(f"predictions {pred.shape} and references {true.shape} must be rows of one length")
        result = {}
        for average in ("micro", "macro"):
            p, r, f, _ = precision_recall_fscore_support(true, pred, average=average, zero_division=zero_division)
            result.update({f"{average}_precision": float(p), f"{average}_recall": float(r), f"{average}_f1": float(f)})
        p, r, f, support = precision_recall_fscore_support(true, pred, average=None, zero_division=zero_division)
        result.update(precision=[float(x) for x in p], recall=[float(x) for x in r], f1=[float(x) for x in f],
                      support=[int(x) for x in support])
        result["subset_accuracy"] = float((pred == true).all(1).mean()) if len(pred) else 0.0
        return result
