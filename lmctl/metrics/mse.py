"""Mean squared error for regression."""

import math

import datasets
import evaluate
from sklearn.metrics import mean_squared_error

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

_CITATION = """
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and Varoquaux, G. and Gramfort, A. and Michel, V. and Thirion, B. and Grisel, O. and Blondel, M. and Prettenhofer, P. and Weiss, R. and Dubourg, V. and Vanderplas, J. and Passos, A. and Cournapeau, D. and Brucher, M. and Perrot, M. and Duchesnay, E.},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Mse(evaluate.Metric):
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
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.mean_squared_error.html"],
        )

    def _compute(self, predictions, references, sample_weight=None, squared=True):
        # scikit-learn >= 1.6 dropped the `squared` argument, so the root is taken here.
        score = float(mean_squared_error(references, predictions, sample_weight=sample_weight))
        return {"mse": score if squared else math.sqrt(score)}
