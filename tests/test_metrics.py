"""lmctl.metrics: every local evaluate module against values worked out by hand."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

import lmctl.metrics as metrics
from lmctl.errors import UserError

EXPECTED_METRICS = {
    "accuracy",
    "bleu",
    "f1",
    "matthews_correlation",
    "mse",
    "multi_label",
    "pearsonr",
    "precision",
    "ranking",
    "recall",
    "rouge",
    "seqeval",
    "spearmanr",
    "squad",
}


@pytest.fixture(scope="module", autouse=True)
def offline_hf_home(tmp_path_factory):
    """Point the HF caches at a temp dir and forbid the Hub.

    evaluate and huggingface_hub read these variables when they are imported, and
    `lmctl.metrics` only imports evaluate inside `load`, so setting them here (before the
    first `load`) is early enough.
    """
    home = tmp_path_factory.mktemp("hf_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_HOME", str(home))
        mp.setenv("HF_MODULES_CACHE", str(home / "modules"))
        mp.setenv("HF_METRICS_CACHE", str(home / "metrics"))
        yield home


def compute(name, **kwargs):
    return metrics.load(name).compute(**kwargs)


# --- the package surface --------------------------------------------------------------------


def test_import_is_cheap():
    code = (
        "import sys, lmctl.metrics\n"
        "heavy = {'evaluate', 'torch', 'sklearn', 'datasets', 'scipy'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    # From the repo root, so the check does not depend on lmctl being pip-installed.
    subprocess.run([sys.executable, "-c", code], check=True, cwd=metrics.METRICS_DIR.parents[1])


def test_available_lists_every_module():
    assert set(metrics.AVAILABLE) == EXPECTED_METRICS
    assert metrics.METRICS_DIR.is_dir()


def test_load_is_cached_and_rejects_unknown_names():
    assert metrics.load("accuracy") is metrics.load("accuracy")
    with pytest.raises(UserError, match="available"):
        metrics.load("bertscore")


@pytest.mark.parametrize("name", sorted(EXPECTED_METRICS))
def test_every_module_describes_itself(name):
    module = metrics.load(name)
    assert module.description.strip()
    assert module.citation.strip()
    assert module.features is not None


# --- classification -------------------------------------------------------------------------

# TP=1 (idx 0), FP=2 (idx 1, 2), FN=1 (idx 3), TN=2: precision 1/3, recall 1/2, F1 0.4.
BIN_PRED = [1, 1, 1, 0, 0, 0]
BIN_REF = [1, 0, 0, 1, 0, 0]

# Per class (precision, recall, F1, support): 0 -> (1, 2/3, 0.8, 3); 1 -> (1/2, 1/2, 1/2, 2);
# 2 -> (1/2, 1, 2/3, 1). 4 of 6 correct.
MC_PRED = [0, 0, 1, 1, 2, 2]
MC_REF = [0, 0, 0, 1, 1, 2]
MC_F1_MACRO = (0.8 + 0.5 + 2 / 3) / 3
MC_F1_WEIGHTED = (3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6
MC_PRECISION_MACRO = (1 + 0.5 + 0.5) / 3
MC_RECALL_MACRO = (2 / 3 + 0.5 + 1) / 3
# Multiclass MCC = (c*s - sum p_k t_k) / sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2)) with c=4 correct,
# s=6 samples, predicted counts p=(2,2,2), true counts t=(3,2,1): 12 / sqrt(24 * 22).
MC_MCC = 12 / math.sqrt(24 * 22)


def test_accuracy():
    assert compute("accuracy", predictions=[0, 1, 1, 0], references=[0, 1, 0, 0]) == {"accuracy": 0.75}
    assert compute("accuracy", predictions=[0, 1, 1, 0], references=[0, 1, 0, 0], normalize=False) == {
        "accuracy": 3.0
    }


def test_binary_precision_recall_f1():
    assert compute("precision", predictions=BIN_PRED, references=BIN_REF)["precision"] == pytest.approx(1 / 3)
    assert compute("recall", predictions=BIN_PRED, references=BIN_REF)["recall"] == pytest.approx(1 / 2)
    assert compute("f1", predictions=BIN_PRED, references=BIN_REF)["f1"] == pytest.approx(0.4)


def test_binary_f1_pos_label():
    # Class 0 as positive: TP=2 (idx 4, 5), FP=1 (idx 3), FN=2 (idx 1, 2) -> P 2/3, R 1/2, F1 4/7.
    result = compute("f1", predictions=BIN_PRED, references=BIN_REF, pos_label=0)
    assert result["f1"] == pytest.approx(4 / 7)


def test_multiclass_averages():
    def f1(average):
        return compute("f1", predictions=MC_PRED, references=MC_REF, average=average)["f1"]

    assert f1("macro") == pytest.approx(MC_F1_MACRO)
    assert f1("micro") == pytest.approx(4 / 6)
    assert f1("weighted") == pytest.approx(MC_F1_WEIGHTED)
    assert compute("f1", predictions=MC_PRED, references=MC_REF, average=None)["f1"] == pytest.approx(
        [0.8, 0.5, 2 / 3]
    )
    precision = compute("precision", predictions=MC_PRED, references=MC_REF, average="macro")
    recall = compute("recall", predictions=MC_PRED, references=MC_REF, average="macro")
    assert precision["precision"] == pytest.approx(MC_PRECISION_MACRO)
    assert recall["recall"] == pytest.approx(MC_RECALL_MACRO)


def test_undefined_precision_is_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compute("precision", predictions=[0, 0], references=[1, 0]) == {"precision": 0.0}


def test_multi_label_hand_counted():
    # Labels a, b, c over 4 rows. a: TP 2 (rows 0, 1), FP 1 (row 2), FN 0 -> P 2/3, R 1, F1 0.8.
    # b: TP 1 (row 1), FP 0, FN 1 (row 3) -> P 1, R 1/2, F1 2/3. c: never true, never predicted -> 0 (zero_division).
    # Micro: TP 3, FP 1, FN 1 -> P 3/4, R 3/4, F1 3/4. Rows exactly right: 0 and 1 of 4.
    pred = [[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]]
    ref = [[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = compute("multi_label", predictions=pred, references=ref)
    assert got["micro_precision"] == pytest.approx(0.75) and got["micro_recall"] == pytest.approx(0.75)
    assert got["micro_f1"] == pytest.approx(0.75)
    assert got["f1"] == pytest.approx([0.8, 2 / 3, 0.0])
    assert got["precision"] == pytest.approx([2 / 3, 1.0, 0.0]) and got["recall"] == pytest.approx([1.0, 0.5, 0.0])
    assert got["support"] == [2, 2, 0]
    assert got["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 3)
    assert got["macro_precision"] == pytest.approx((2 / 3 + 1) / 3) and got["macro_recall"] == pytest.approx(0.5)
    assert got["subset_accuracy"] == pytest.approx(0.5)


def test_matthews_correlation():
    # TP=2, FP=1, FN=1, TN=2: (2*2 - 1*1) / sqrt(3*3*3*3) = 1/3.
    result = compute("matthews_correlation", predictions=[1, 1, 1, 0, 0, 0], references=[1, 1, 0, 1, 0, 0])
    assert result["matthews_correlation"] == pytest.approx(1 / 3)
    result = compute("matthews_correlation", predictions=MC_PRED, references=MC_REF)
    assert result["matthews_correlation"] == pytest.approx(MC_MCC)


def test_classification_metrics_binary():
    result = metrics.classification_metrics(np.array(BIN_PRED), np.array(BIN_REF), num_labels=2)
    assert result == pytest.approx(
        {"accuracy": 3 / 6, "f1": 0.4, "precision": 1 / 3, "recall": 1 / 2, "matthews_correlation": 0.0}
    )
    assert all(type(v) is float for v in result.values())


def test_classification_metrics_multiclass():
    result = metrics.classification_metrics(MC_PRED, MC_REF, num_labels=3)
    assert result == pytest.approx(
        {
            "accuracy": 4 / 6,
            "f1": MC_F1_MACRO,
            "f1_macro": MC_F1_MACRO,
            "f1_micro": 4 / 6,
            "f1_weighted": MC_F1_WEIGHTED,
            "precision": MC_PRECISION_MACRO,
            "precision_macro": MC_PRECISION_MACRO,
            "recall": MC_RECALL_MACRO,
            "recall_macro": MC_RECALL_MACRO,
            "matthews_correlation": MC_MCC,
        }
    )
    assert all(type(v) is float for v in result.values())


def test_classification_metrics_needs_two_labels():
    with pytest.raises(ValueError):
        metrics.classification_metrics([0], [0], num_labels=1)


# --- regression -----------------------------------------------------------------------------


def test_pearsonr():
    assert compute("pearsonr", predictions=[1.0, 2.0, 3.0, 4.0], references=[3.0, 5.0, 7.0, 9.0])[
        "pearsonr"
    ] == pytest.approx(1.0)
    assert compute("pearsonr", predictions=[1.0, 2.0, 3.0], references=[6.0, 4.0, 2.0])[
        "pearsonr"
    ] == pytest.approx(-1.0)
    # Deviations (-1, 0, 1) and (-1, 1, 0): covariance 1, variances 2 and 2 -> r = 0.5.
    result = compute("pearsonr", predictions=[1.0, 3.0, 2.0], references=[1.0, 2.0, 3.0], return_pvalue=True)
    assert result["pearsonr"] == pytest.approx(0.5)
    assert 0.0 < result["p-value"] <= 1.0


def test_spearmanr():
    # Monotonic but not linear: ranks agree exactly.
    assert compute("spearmanr", predictions=[1.0, 4.0, 9.0, 16.0], references=[1.0, 2.0, 3.0, 4.0])[
        "spearmanr"
    ] == pytest.approx(1.0)
    # One swapped pair: sum d^2 = 2, rho = 1 - 6*2 / (4*(16-1)) = 0.8.
    assert compute("spearmanr", predictions=[1.0, 3.0, 2.0, 4.0], references=[1.0, 2.0, 3.0, 4.0])[
        "spearmanr"
    ] == pytest.approx(0.8)


@pytest.mark.parametrize("name", ["pearsonr", "spearmanr"])
def test_correlation_of_constant_input_is_nan_without_warnings(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compute(name, predictions=[2.0, 2.0, 2.0], references=[1.0, 2.0, 3.0])
    assert math.isnan(result[name])


def test_mse():
    # Squared errors 0.25, 0.25, 0, 1 -> mean 0.375.
    kwargs = dict(predictions=[2.5, 0.0, 2.0, 8.0], references=[3.0, -0.5, 2.0, 7.0])
    assert compute("mse", **kwargs) == {"mse": pytest.approx(0.375)}
    assert compute("mse", squared=False, **kwargs) == {"mse": pytest.approx(math.sqrt(0.375))}


def test_regression_metrics():
    # An (n, 1) regression head output is flattened.
    predictions = np.array([[1.0], [3.0], [2.0]])
    result = metrics.regression_metrics(predictions, [1.0, 2.0, 3.0])
    # Squared errors 0, 1, 1 -> mse 2/3; ranks are the values themselves, so spearman = pearson.
    assert result == pytest.approx({"pearson": 0.5, "spearman": 0.5, "mse": 2 / 3})
    assert all(type(v) is float for v in result.values())


def test_regression_metrics_constant_predictions_report_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = metrics.regression_metrics([1.5, 1.5, 1.5], [1.0, 2.0, 3.0])
    assert result == pytest.approx({"pearson": 0.0, "spearman": 0.0, "mse": (0.25 + 0.25 + 2.25) / 3})


# --- question answering ---------------------------------------------------------------------


def test_squad_normalisation():
    assert compute("squad", predictions=["The Cat!"], references=[["cat"]]) == {"exact_match": 100.0, "f1": 100.0}
    assert compute("squad", predictions=["  New   York. "], references=[["new york"]]) == {
        "exact_match": 100.0,
        "f1": 100.0,
    }


def test_squad_partial_overlap_and_best_answer():
    # "blue whale" vs "big blue whale" (after dropping "the"): P = 2/2, R = 2/3 -> F1 0.8.
    assert compute("squad", predictions=["blue whale"], references=[["the big blue whale"]]) == pytest.approx(
        {"exact_match": 0.0, "f1": 80.0}
    )
    # The best of several gold answers counts.
    assert compute("squad", predictions=["blue whale"], references=[["shark", "a blue whale"]]) == {
        "exact_match": 100.0,
        "f1": 100.0,
    }


def test_squad_unanswerable_and_average():
    result = compute(
        "squad",
        predictions=["", "Paris", "The Cat!", "blue whale"],
        references=[[], [], ["cat"], ["the big blue whale"]],
    )
    # EM: 1, 0, 1, 0 -> 50; F1: 1, 0, 1, 0.8 -> 70.
    assert result == pytest.approx({"exact_match": 50.0, "f1": 70.0})


# --- generation -----------------------------------------------------------------------------

# rouge-score tokens: prediction [a, cat, sat, on, mats], reference [the, cat, sat, on, the, mat].
ROUGE_PRED = "a cat sat on mats"
ROUGE_REF = "the cat sat on the mat"


def test_rouge_hand_counted():
    result = compute("rouge", predictions=[ROUGE_PRED], references=[ROUGE_REF])
    # Unigrams: cat, sat, on shared -> P 3/5, R 3/6, F 6/11.
    assert result["rouge1"] == pytest.approx(6 / 11)
    # Bigrams: "cat sat", "sat on" shared of 4 and 5 -> P 2/4, R 2/5, F 4/9.
    assert result["rouge2"] == pytest.approx(4 / 9)
    # LCS "cat sat on" = 3 tokens, same as unigrams here; one line, so Lsum equals L.
    assert result["rougeL"] == pytest.approx(6 / 11)
    assert result["rougeLsum"] == pytest.approx(6 / 11)


def test_rouge_stemmer_and_multiple_references():
    # "mats" stems to "mat": 4 shared unigrams -> P 4/5, R 4/6, F 8/11.
    stemmed = compute("rouge", predictions=[ROUGE_PRED], references=[ROUGE_REF], use_stemmer=True)
    assert stemmed["rouge1"] == pytest.approx(8 / 11)
    multi = compute(
        "rouge", predictions=[ROUGE_PRED, "x"], references=[["dog", ROUGE_REF], ["x"]], rouge_types=["rouge1"]
    )
    assert multi == pytest.approx({"rouge1": (6 / 11 + 1.0) / 2})
    per_example = compute(
        "rouge", predictions=[ROUGE_PRED, "x"], references=[ROUGE_REF, "y"], use_aggregator=False
    )
    assert per_example["rouge1"] == pytest.approx([6 / 11, 0.0])


def test_bleu():
    sentences = ["the cat sat on the mat", "hello there my good friend"]
    assert compute("bleu", predictions=sentences, references=sentences)["bleu"] == pytest.approx(100.0)
    # Different numbers of references per prediction.
    result = compute("bleu", predictions=sentences, references=[[sentences[0], "a mat"], [sentences[1]]])
    assert result["bleu"] == pytest.approx(100.0)
    assert result["brevity_penalty"] == pytest.approx(1.0)
    disjoint = compute("bleu", predictions=["alpha beta gamma delta"], references=[["one two three four"]])
    assert disjoint["bleu"] == pytest.approx(0.0)
    assert disjoint["precisions"] == [0.0, 0.0, 0.0, 0.0]
