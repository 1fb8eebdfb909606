"""ROUGE F-measures for summarisation and generation, via Google's `rouge-score` package."""

import evaluate
from rouge_score import rouge_scorer

from lmctl.metrics import _base  # by module: evaluate takes the first Metric class it finds here

_DESCRIPTION = """
ROUGE (Recall-Oriented Understudy for Gisting Evaluation) compares a generated text with one or
more references by n-gram overlap:
    rouge1, rouge2: unigram / bigram overlap;
    rougeL: longest common subsequence over the whole text;
    rougeLsum: summary-level LCS, treating newline-separated lines as sentences.
Texts are tokenised by `rouge-score` (lowercased, non-alphanumeric characters dropped). This
module reports the F-measure of each type, averaged over examples, in [0, 1]. With several
references per prediction, the best-scoring reference counts.

rougeLsum only differs from rougeL when sentences are separated by newlines; split texts into
one sentence per line before calling to get summary-level scores.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated texts.
    references (list of str, or list of list of str): one reference, or several, per prediction.
    rouge_types (list of str): which of "rouge1", "rouge2", ..., "rouge9", "rougeL", "rougeLsum"
        to compute. Defaults to ["rouge1", "rouge2", "rougeL", "rougeLsum"].
    use_stemmer (bool): apply the Porter stemmer to tokens before matching. Defaults to False.
    use_aggregator (bool): if False, return one score per example instead of the mean. Defaults to True.
Returns:
    one entry per rouge type: float in [0, 1], or a list of floats when use_aggregator is False.
Examples:
    >>> rouge = evaluate.load("lmctl/metrics/rouge.py")
    >>> rouge.compute(predictions=["the cat sat"], references=["the cat ran"], rouge_types=["rouge1"])
    {'rouge1': 0.6666666666666666}
"""

_CITATION = """
@inproceedings{lin-2004-rouge,
    title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
    author = "Lin, Chin-Yew",
    booktitle = "Text Summarization Branches Out",
    year = "2004",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/W04-1013",
    pages = "74--81",
}
"""

_DEFAULT_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Rouge(_base.PairMetric):
    _doc, _args_doc, _citation = _DESCRIPTION, _KWARGS_DESCRIPTION, _CITATION
    _url = "https://github.com/google-research/google-research/tree/master/rouge"

    def _features(self):
        return _base.text_references()

    def _compute(self, predictions, references, rouge_types=None, use_stemmer=False, use_aggregator=True):
        rouge_types = list(rouge_types or _DEFAULT_TYPES)
        scorer = rouge_scorer.RougeScorer(rouge_types=rouge_types, use_stemmer=use_stemmer)
        per_example = {key: [] for key in rouge_types}
        for prediction, reference in zip(predictions, references):
            if isinstance(reference, str):
                scores = scorer.score(reference, prediction)
            else:
                scores = scorer.score_multi(reference, prediction)
            for key in rouge_types:
                per_example[key].append(float(scores[key].fmeasure))
        if not use_aggregator:
            return per_example
        # A plain mean rather than rouge-score's bootstrap aggregator: the bootstrap's "mid" is
        # random, and evaluation numbers should not move between identical runs.
        return {key: (sum(vals) / len(vals) if vals else 0.0) for key, vals in per_example.items()}
