"""`lmctl export` (transformers format) writes a classifier that a plain
`AutoModelForSequenceClassification.from_pretrained` runs with lmctl's scores, or refuses: a GPT-2
with `model.pooling: mean` pools by a forward lmctl binds at load time, which a plain reload would
not run (it pools the last token, silently). Its ONNX export carries the pooling in the graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import cli, plain_scores, sentiment_rows, set_args, write_config, write_rows

# Run name → (tiny model family, config overrides).
RUNS = {"bert": ("bert", []), "gpt2-last": ("gpt2", ["model.pooling=last"]), "gpt2-mean": ("gpt2", ["model.pooling=mean"]),
        "t5": ("t5", [])}


@pytest.fixture(scope="module")
def runs(tiny_models, tmp_path_factory, one_thread) -> dict:
    """A short finetuning run per classifier (the scores need not be good, only the model's own),
    and rows to predict."""
    tmp = tmp_path_factory.mktemp("reload")
    train = write_rows(tmp / "train.tsv", sentiment_rows(32, 0))
    dev = write_rows(tmp / "dev.tsv", sentiment_rows(16, 1))
    out = {"input": write_rows(tmp / "input.tsv", [{"sentence": r["sentence"]} for r in sentiment_rows(12, 5)])}
    for name, (family, overrides) in RUNS.items():
        cli("finetune", write_config(tmp / f"{name}.yaml", tiny_models[family], train, dev, tmp / name,
                                     training={"num_epochs": 1}), *set_args(overrides))
        out[name] = tmp / name
    return out


def predict(model: Path, data: Path) -> list[dict]:
    return [json.loads(line) for line in cli("predict", "--model", model, "--input", data).stdout.splitlines()]


def largest_difference(records: list[dict], scores: list[dict]) -> float:
    assert len(records) == len(scores)
    return max(abs(r["scores"][label] - s[label]) for r, s in zip(records, scores) for label in s)


@pytest.mark.parametrize("name", ["bert", "gpt2-last", "t5"])
def test_a_transformers_export_scores_as_lmctl_after_a_plain_reload(runs, name, tmp_path):
    export = tmp_path / "export"
    cli("export", "--model", runs[name], "--output", export)
    records = predict(runs[name], runs["input"])  # lmctl on the run directory: the reference
    scores = plain_scores(export, [r["sentence"] for r in records])
    assert largest_difference(records, scores) < 1e-5  # predict rounds its scores to 6 decimals


def test_a_mean_pooled_classifier_is_refused_in_transformers_format_and_kept_by_onnx(runs, tmp_path):
    run = runs["gpt2-mean"]
    result = cli("export", "--model", run, "--output", tmp_path / "plain", code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: --format transformers: {run} pools its tokens' states by mean (model.pooling)")
    assert "--format onnx" in lines[0]
    assert not (tmp_path / "plain").exists()
    records = predict(run, runs["input"])
    # Why it is refused: the run's own weights, reloaded plainly, score otherwise (last-token pooling).
    assert largest_difference(records, plain_scores(run, [r["sentence"] for r in records])) > 1e-3
    # The ONNX graph traced lmctl's forward, pooling included.
    cli("export", "--model", run, "--output", tmp_path / "onnx", "--format", "onnx")
    exported = predict(tmp_path / "onnx", runs["input"])
    assert [r["label"] for r in exported] == [r["label"] for r in records]
    assert max(abs(a["scores"][k] - b["scores"][k]) for a, b in zip(records, exported) for k in a["scores"]) < 1e-4
