"""Exact match and token F1 for extractive question answering (SQuAD v1.1 scoring)."""

import re
import string
from collections import Counter

import datasets
import evaluate

from lmctl.metrics import _base  # by module: evaluate takes the first Metric class it finds here

_DESCRIPTION = """
Scores extractive QA answers the way the official SQuAD v1.1 evaluation script does. Both the
prediction and each gold answer are normalised (lowercased, punctuation removed, the articles
"a", "an" and "the" removed, whitespace collapsed). Exact match is 1 when the normalised strings
are equal; F1 is the harmonic mean of token precision and recall over the bag of normalised
tokens. Each prediction takes its best score over its gold answers, and both scores are averaged
over examples and reported in [0, 100].

An example with no gold answer (unanswerable) counts as correct only for an empty prediction.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): one predicted answer string per question.
    references (list of list of str): the gold answer strings for each question; an empty list
        marks an unanswerable question.
Returns:
    exact_match (float): percentage of predictions that exactly match a gold answer, in [0, 100].
    f1 (float): average best token F1, in [0, 100].
Examples:
    >>> squad = evaluate.load("lmctl/metrics/squad.py")
    >>> squad.compute(predictions=["The Cat!"], references=[["cat", "a dog"]])
    {'exact_match': 100.0, 'f1': 100.0}
"""

_CITATION = """
@inproceedings{rajpurkar-etal-2016-squad,
    title = "{SQ}u{AD}: 100,000+ Questions for Machine Comprehension of Text",
    author = "Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy",
    booktitle = "Proceedings of the 2016 Conference on Empirical Methods in Natural Language Processing",
    year = "2016",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/D16-1264",
    pages = "2383--2392",
}
"""

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and articles, and collapse whitespace (official SQuAD order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def f1_score(prediction: str, ground_truth: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(ground_truth).split()
    # v1.1 would score two empty answers 0; following SQuAD v2, matching emptiness counts as a
    # full match so that answers made only of articles/punctuation are not penalised.
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _best(metric_fn, prediction: str, ground_truths: list) -> float:
    if not ground_truths:
        # Unanswerable: only abstaining (an empty prediction) is right.
        return float(normalize_answer(prediction) == "")
    return max(metric_fn(prediction, gt) for gt in ground_truths)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Squad(_base.PairMetric):
    _doc, _args_doc, _citation = _DESCRIPTION, _KWARGS_DESCRIPTION, _CITATION
    _url = "https://rajpurkar.github.io/SQuAD-explorer/"

    def _features(self):
        return datasets.Features(
            {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
        )

    def _compute(self, predictions, references):
        if not predictions:
            return {"exact_match": 0.0, "f1": 0.0}
        exact_match = sum(_best(exact_match_score, p, r) for p, r in zip(predictions, references))
        f1 = sum(_best(f1_score, p, r) for p, r in zip(predictions, references))
        n = len(predictions)
        return {"exact_match": 100.0 * exact_match / n, "f1": 100.0 * f1 / n}
