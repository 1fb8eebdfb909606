"""The real all-MiniLM-L6-v2 finetuned on the bundled sample reviews, through the CLI.

The tiny random models prove the plumbing; this proves the defaults (head, optimizer,
schedule, dynamic padding) make a real pretrained encoder learn: dev accuracy far above
chance after one epoch. Measured on 2 CPU cores: 0.95 dev accuracy after 25 steps
(0.995 after two epochs at 1e-4), 80-100 s of training on a busy machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import cli

DATA = Path(__file__).resolve().parents[1] / "configs" / "finetune" / "data"

pytestmark = pytest.mark.slow


def test_minilm_learns_the_sample_reviews(minilm_path, tmp_path):
    run = tmp_path / "run"
    config = tmp_path / "minilm.yaml"
    config.write_text(yaml.safe_dump({
        "task": "text-classification",
        "model": {"name_or_path": minilm_path},
        "data": {"train_file": str(DATA / "train.tsv"), "validation_file": str(DATA / "dev.tsv"),
                 "text_column": "sentence", "label_column": "label"},
        # One epoch (25 steps) keeps this under two minutes; 2e-4 suits so short a run.
        "training": {"num_epochs": 1, "batch_size": 32, "learning_rate": 2.0e-4, "max_length": 64,
                     "seed": 42, "logging_steps": 5},
        "output_dir": str(run),
    }))
    cli("finetune", config)

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["completed_steps"] == 25
    # Balanced positive/negative dev set: chance is 0.5. Measured 0.95.
    assert metrics["eval_accuracy"] >= 0.85, metrics
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < losses[0] - 0.1

    out = tmp_path / "eval.json"
    cli("evaluate", "--model", run, "--data", DATA / "dev.tsv", "--output", out,
        "--fail-under", "accuracy=0.85")
    report = json.loads(out.read_text())
    assert report["examples"] == 200
    for key, value in metrics.items():
        if key.startswith("eval_"):
            assert report["metrics"][key.removeprefix("eval_")] == pytest.approx(value, abs=1e-6), key

    records = [json.loads(line) for line in cli("predict", "--model", run, "--input",
                                                 DATA / "predict_sample.txt").stdout.splitlines()]
    texts = (DATA / "predict_sample.txt").read_text().splitlines()
    assert [r["sentence"] for r in records] == texts
    assert {r["label"] for r in records} <= {"negative", "positive"}
    # The two plainest lines of the sample: cold pasta, the best headphones.
    assert records[0]["label"] == "negative" and records[1]["label"] == "positive"
