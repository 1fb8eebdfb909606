"""MRR@k, nDCG@k and accuracy@1 of scored candidates, grouped by query (reranking)."""

from collections import defaultdict

import datasets
import evaluate
import numpy as np

from lmctl.metrics import _base  # by module: evaluate takes the first Metric class it finds here

_DESCRIPTION = """
Ranking metrics for a reranker that gives each (query, candidate) pair a score. Rows with the
same query id are one query's candidates; each query's candidates are sorted by score, highest
first, and every metric is averaged over queries.

- mrr_at_{k}: reciprocal rank of the first relevant candidate (label > 0) if it is among the
  top k, else 0.
- ndcg_at_{k}: DCG@k / ideal DCG@k, with graded gains 2^label - 1 and the log2(rank + 1)
  discount (Järvelin & Kekäläinen; trec_eval's ndcg_cut). Labels may be binary (0/1) or grades.
- accuracy_at_1: 1 if the top-scored candidate is relevant (label > 0), else 0.
- queries: the number of queries averaged over.

Ties in score are broken pessimistically: among candidates with the same score the less relevant
one ranks first, so a model that scores everything alike cannot gain from the order of the file
(and the result never depends on that order). A query without any relevant candidate scores 0 on
every metric and still counts in the average, as in trec_eval and sentence-transformers'
CrossEncoderRerankingEvaluator; `queries_without_relevant` reports how many there were.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of float): one score per (query, candidate) row; higher means more relevant.
    references (list of float): the row's relevance label, 0 for not relevant, >0 relevant (graded).
    query_ids (list of str): the row's query; rows with the same id are ranked against each other.
    k (int): the cut-off of MRR and nDCG. Defaults to 10.
Returns:
    mrr_at_{k} (float), ndcg_at_{k} (float), accuracy_at_1 (float): in [0, 1], averaged over queries.
    queries (float), queries_without_relevant (float): counts.
Examples:
    >>> ranking = evaluate.load("lmctl/metrics/ranking.py")
    >>> ranking.compute(predictions=[0.9, 0.1, 0.2, 0.8], references=[0, 1, 1, 0],
    ...                 query_ids=["a", "a", "b", "b"], k=10)
    {'mrr_at_10': 0.5, 'ndcg_at_10': 0.6309..., 'accuracy_at_1': 0.0, 'queries': 2.0, 'queries_without_relevant': 0.0}
"""

_CITATION = """
@article{jarvelin2002cumulated,
  title={Cumulated gain-based evaluation of IR techniques},
  author={J{\"a}rvelin, Kalervo and Kek{\"a}l{\"a}inen, Jaana},
  journal={ACM Transactions on Information Systems},
  volume={20},
  number={4},
  pages={422--446},
  year={2002}
}
@inproceedings{voorhees1999trec,
  title={The TREC-8 Question Answering Track Report},
  author={Voorhees, Ellen M.},
  booktitle={Proceedings of the Eighth Text REtrieval Conference (TREC-8)},
  pages={77--82},
  year={1999}
}
"""


def rank_order(scores, labels) -> np.ndarray:
    """Indices of one query's candidates, best first; equal scores put the lower label first."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=float)
    # lexsort sorts by the last key first and is stable: score descending, then label ascending,
    # then input position (which can only order candidates that are equal in both).
    return np.lexsort((labels, -scores))


def dcg(gains_in_rank_order, k: int) -> float:
    g = np.asarray(gains_in_rank_order, dtype=float)[:k]
    return float(np.sum((np.power(2.0, g) - 1.0) / np.log2(np.arange(2, len(g) + 2))))


def query_scores(scores, labels, k: int) -> tuple[float, float, float]:
    """(reciprocal rank @k, nDCG@k, correct@1) of one query."""
    labels = np.asarray(labels, dtype=float)
    ranked = labels[rank_order(scores, labels)]
    relevant = np.flatnonzero(ranked > 0)
    if len(relevant) == 0:
        return 0.0, 0.0, 0.0
    first = int(relevant[0]) + 1
    rr = 1.0 / first if first <= k else 0.0
    ideal = dcg(np.sort(labels)[::-1], k)
    return rr, dcg(ranked, k) / ideal, float(ranked[0] > 0)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Ranking(_base.PairMetric):
    _doc, _args_doc, _citation = _DESCRIPTION, _KWARGS_DESCRIPTION, _CITATION
    _url = "https://github.com/usnistgov/trec_eval"

    def _features(self):
        return datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("float64"),
                                  "query_ids": datasets.Value("string")})

    def _compute(self, predictions, references, query_ids, k=10):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        rows = defaultdict(list)  # query id -> row positions, queries in first-appearance order
        for i, q in enumerate(query_ids):
            rows[q].append(i)
        predictions, references = np.asarray(predictions, dtype=float), np.asarray(references, dtype=float)
        if np.any(references < 0):
            raise ValueError("relevance labels must be >= 0")
        per_query = np.array([query_scores(predictions[idx], references[idx], k) for idx in rows.values()]).reshape(-1, 3)
        without = sum(1 for idx in rows.values() if not np.any(references[idx] > 0))
        means = per_query.mean(0) if len(per_query) else np.zeros(3)
        return {
            f"mrr_at_{k}": float(means[0]),
            f"ndcg_at_{k}": float(means[1]),
            "accuracy_at_1": float(means[2]),
            "queries": float(len(rows)),
            "queries_without_relevant": float(without),
        }
