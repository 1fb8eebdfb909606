"""Precision for binary and multiclass classification."""

import datasets
import evaluate
from sklearn.metrics import precision_score

_DESCRIPTION = """
Precision is the fraction of positive predictions that are correct: TP / (TP + FP).
For multiclass inputs, `average` selects how per-class scores are combined.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted labels.
    references (list of int): ground-truth labels.
    labels (list of int): labels to include when `average` is not "binary". Defaults to all labels present.
    pos_label (int): the positive class when `average="binary"`. Defaults to 1.
    average (str): "binary" (default; only the `pos_label` class), "micro" (global TP/FP/FN counts),
        "macro" (unweighted mean over labels), "weighted" (mean weighted by label support), or None
        (one score per label).
    sample_weight (list of float): per-example weights. Defaults to None.
    zero_division (float): value returned when the score is undefined (e.g. no positive predictions).
        Defaults to 0.0, which also keeps scikit-learn from warning on every degenerate batch.
Returns:
    precision (float, or list of float when average is None): in [0, 1].
Examples:
    >>> precision = evaluate.load("lmctl/metrics/precision.py")
    >>> precision.compute(predictions=[1, 1, 0, 0], references=[1, 0, 0, 0])
    {'precision': 0.5}
"""

_CITATION = """
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and Varoquaux, G. and Gramfort, A. and Michel, V. and Thirion, B. and Grisel, O. and Blondel, M. and Prettenhofer, P. and Weiss, R. and Dubourg, V. and Vanderplas, J. and Passos, A. and Cournapeau, D. and Brucher, M. and Perrot, M. and Duchesnay, E.},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Precision(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("int64"),
                    "references": datasets.Value("int64"),
                }
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.precision_score.html"],
        )

    def _compute(
        self,
        predictions,
        references,
        labels=None,
        pos_label=1,
        average="binary",
        sample_weight=None,
        zero_division=0.0,
    ):
        score = precision_score(
            references,
            predictions,
            labels=labels,
            pos_label=pos_label,
            average=average,
            sample_weight=sample_weight,
            zero_division=zero_division,
        )
        if average is None:
            return {"precision": [float(s) for s in score]}
        return {"precision": float(score)}
