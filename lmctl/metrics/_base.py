"""What the metric modules share: the `evaluate` boilerplate and the citations.

`evaluate.load` imports each metric file on its own from a copy in its module cache, so a
relative import would not resolve; the metric files import this module by its absolute name
(`lmctl` is installed), as a module: evaluate takes the first `evaluate.Metric` subclass it
finds in a metric file's namespace, which must be the file's own class. Each metric file keeps
its own documentation and its own `_compute`, or names the one function it wraps.
"""

import datasets
import evaluate
import numpy as np

SKLEARN_CITATION = """
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and Varoquaux, G. and Gramfort, A. and Michel, V. and Thirion, B. and Grisel, O. and Blondel, M. and Prettenhofer, P. and Weiss, R. and Dubourg, V. and Vanderplas, J. and Passos, A. and Cournapeau, D. and Brucher, M. and Perrot, M. and Duchesnay, E.},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""

SCIPY_CITATION = r"""
@article{2020SciPy-NMeth,
  author  = {Virtanen, Pauli and Gommers, Ralf and Oliphant, Travis E. and Haberland, Matt and Reddy, Tyler and Cournapeau, David and Burovski, Evgeni and Peterson, Pearu and Weckesser, Warren and Bright, Jonathan and {van der Walt}, St{\'e}fan J. and Brett, Matthew and Wilson, Joshua and Millman, K. Jarrod and Mayorov, Nikolay and Nelson, Andrew R. J. and Jones, Eric and Kern, Robert and Larson, Eric and Carey, C J and Polat, {\.I}lhan and Feng, Yu and Moore, Eric W. and {VanderPlas}, Jake and Laxalde, Denis and Perktold, Josef and Cimrman, Robert and Henriksen, Ian and Quintero, E. A. and Harris, Charles R. and Archibald, Anne M. and Ribeiro, Ant{\^o}nio H. and Pedregosa, Fabian and {van Mulbregt}, Paul and {SciPy 1.0 Contributors}},
  title   = {{{SciPy} 1.0: Fundamental Algorithms for Scientific Computing in Python}},
  journal = {Nature Methods},
  year    = {2020},
  volume  = {17},
  pages   = {261--272}
}
"""

# The argument lists of the metric families below, for the metric files' docstrings.
LABEL_SCORE_ARGS = """
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
"""

CORRELATION_ARGS = """
Args:
    predictions (list of float): predicted values.
    references (list of float): ground-truth values.
    return_pvalue (bool): also return the two-sided p-value. Defaults to False.
"""


class PairMetric(evaluate.Metric):
    """A metric over (prediction, reference) pairs, of one dtype unless `_features` says otherwise.
    Subclasses set the class attributes below and write `_compute`."""

    _doc = ""
    _args_doc = ""
    _citation = SKLEARN_CITATION
    _url = ""
    _dtype = "int64"  # class labels; "float64" for regression

    def _features(self):
        """The input columns: one `datasets.Features`, or a list evaluate tries in order."""
        return datasets.Features(
            {"predictions": datasets.Value(self._dtype), "references": datasets.Value(self._dtype)}
        )

    def _info(self):
        return evaluate.MetricInfo(
            description=self._doc,
            citation=self._citation,
            inputs_description=self._args_doc,
            features=self._features(),
            reference_urls=[self._url],
        )


def text_references():
    """Generated text against one reference, or several (tried first, as evaluate picks the first
    feature set that fits)."""
    one = datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")})
    several = datasets.Features(
        {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
    )
    return [several, one]


class LabelScore(PairMetric):
    """f1 / precision / recall: a scikit-learn `*_score(y_true, y_pred, labels, pos_label, average,
    sample_weight, zero_division)` reported under `_key` (a list per label when average is None)."""

    _key = ""

    @staticmethod
    def _score(y_true, y_pred, **kwargs):
        raise NotImplementedError

    def _compute(self, predictions, references, labels=None, pos_label=1, average="binary", sample_weight=None,
                 zero_division=0.0):
        score = type(self)._score(references, predictions, labels=labels, pos_label=pos_label, average=average,
                                  sample_weight=sample_weight, zero_division=zero_division)
        if average is None:
            return {self._key: [float(s) for s in score]}
        return {self._key: float(score)}


class Correlation(PairMetric):
    """pearsonr / spearmanr: a scipy correlation reported under `_key`, nan where undefined."""

    _key = ""
    _citation = SCIPY_CITATION
    _dtype = "float64"

    @staticmethod
    def _correlate(x, y):
        raise NotImplementedError

    def _compute(self, predictions, references, return_pvalue=False):
        x = np.asarray(references, dtype=np.float64)
        y = np.asarray(predictions, dtype=np.float64)
        # The correlation is undefined here; scipy would raise (n < 2) or warn on every call
        # (constant input), so report nan quietly and let the caller decide what to do with it.
        if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
            score, pvalue = float("nan"), float("nan")
        else:
            result = type(self)._correlate(x, y)
            score, pvalue = float(result.statistic), float(result.pvalue)
        if return_pvalue:
            return {self._key: score, "p-value": pvalue}
        return {self._key: score}
