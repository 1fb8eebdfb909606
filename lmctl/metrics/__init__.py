"""Evaluation metrics, shipped as local `evaluate` modules so they load without the Hub.

Each `<name>.py` in this folder is an `evaluate.Metric`; `load(name)` returns it. Importing this
package stays cheap: `evaluate` (seconds to import) and scikit-learn are only imported by the
first `load`.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmctl.errors import UserError

if TYPE_CHECKING:
    import evaluate

METRICS_DIR = Path(__file__).resolve().parent

# Metrics where lower is better: losses, errors, perplexities. Everything else rises with quality.
_LOWER_IS_BETTER = ("loss", "mse", "perplexity", "error")


def greater_is_better_by_name(name: str) -> bool:
    """The fallback direction of a metric no task declares, by its name (eval_ prefix or not).

    Tasks declare the direction of every metric they report (`Task.higher_is_better` /
    `lower_is_better`), and that declaration decides; this rule only covers what no task reports:
    a distilled run's `teacher_agreement`, or a metric a plugin task forgot to declare."""
    return not any(word in name for word in _LOWER_IS_BETTER)

AVAILABLE: tuple[str, ...] = tuple(
    sorted(p.stem for p in METRICS_DIR.glob("*.py") if not p.stem.startswith("_"))
)


@functools.lru_cache(maxsize=None)
def load(name: str) -> "evaluate.EvaluationModule":
    """The metric `name` (one of `AVAILABLE`), loaded once per process.

    The instance is shared, so call `compute(predictions=..., references=...)` with the full
    inputs rather than `add_batch`, which would accumulate across callers.
    """
    if name not in AVAILABLE:
        raise UserError(f"unknown metric {name!r}; available: {', '.join(AVAILABLE)}")
    import evaluate

    # In memory: no Arrow cache files under HF_HOME to lock, clean up, or collide on when two
    # runs share a cache directory.
    return evaluate.load(str(METRICS_DIR / f"{name}.py"), keep_in_memory=True)


def _flat(values: Any) -> list:
    """A flat Python list from a list, NumPy array or tensor (e.g. an (n, 1) regression head)."""
    import numpy as np

    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values).reshape(-1).tolist()


def classification_metrics(predictions: Any, references: Any, num_labels: int) -> dict[str, float]:
    """Accuracy, F1, precision, recall and MCC for predicted class ids.

    Binary tasks (`num_labels == 2`) report the scores of class 1. Multiclass tasks also report
    `f1_macro`, `f1_micro`, `f1_weighted`, `precision_macro` and `recall_macro`; their plain
    `f1`, `precision` and `recall` are the macro averages, so every task has the same main keys.
    """
    if num_labels < 2:
        raise ValueError(f"classification needs num_labels >= 2, got {num_labels}")
    predictions, references = _flat(predictions), _flat(references)

    def score(metric: str, **kwargs: Any) -> float:
        return float(load(metric).compute(predictions=predictions, references=references, **kwargs)[metric])

    results = {"accuracy": score("accuracy")}
    if num_labels == 2:
        for metric in ("f1", "precision", "recall"):
            results[metric] = score(metric, average="binary", pos_label=1)
    else:
        for average in ("macro", "micro", "weighted"):
            results[f"f1_{average}"] = score("f1", average=average)
        results["precision_macro"] = score("precision", average="macro")
        results["recall_macro"] = score("recall", average="macro")
        results["f1"] = results["f1_macro"]
        results["precision"] = results["precision_macro"]
        results["recall"] = results["recall_macro"]
    results["matthews_correlation"] = score("matthews_correlation")
    return results


def regression_metrics(predictions: Any, references: Any) -> dict[str, float]:
    """Pearson and Spearman correlation (`pearson`, `spearman`) and mean squared error (`mse`)."""
    predictions, references = _flat(predictions), _flat(references)

    def correlation(metric: str) -> float:
        value = float(load(metric).compute(predictions=predictions, references=references)[metric])
        # A correlation is undefined (nan) when either side is constant, which is routine for a
        # model that still predicts one value early in training. nan would be written as invalid
        # JSON and compares false against everything when picking the best checkpoint, so report
        # 0.0: "no linear/monotonic relationship", which is what a constant prediction has.
        return value if math.isfinite(value) else 0.0

    return {
        "pearson": correlation("pearsonr"),
        "spearman": correlation("spearmanr"),
        "mse": float(load("mse").compute(predictions=predictions, references=references)["mse"]),
    }


def ranking_metrics(scores: Any, labels: Any, query_ids: Any, k: int) -> dict[str, float]:
    """`mrr_at_{k}`, `ndcg_at_{k}`, `accuracy_at_1` over queries, plus the `queries` and
    `queries_without_relevant` counts (see `ranking.py` for ties and queries without a relevant row)."""
    return {name: float(value) for name, value in load("ranking").compute(
        predictions=_flat(scores), references=_flat(labels), query_ids=[str(q) for q in _flat(query_ids)], k=k,
    ).items()}
