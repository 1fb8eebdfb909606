"""Several evaluation sets: data.validation_file as {name: file}; metrics per set
(eval_<name>_<metric>), metric_for_best naming a set, evaluate over several files with the gates
applied to each, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import REPO, cli

DATA = REPO / "configs" / "finetune" / "data"


def write_config(tmp: Path, model: Path, **changes) -> Path:
    head = tmp / "head.tsv"
    head.write_text("".join((DATA / "dev.tsv").read_text().splitlines(keepends=True)[:41]))  # header + 40 rows
    cfg = {"task": "text-classification", "model": {"name_or_path": str(model)},
           "data": {"train_file": str(DATA / "train.tsv"), "validation_file": {"dev": str(DATA / "dev.tsv"),
                                                                                "head": str(head)},
                    "text_column": "sentence"},
           "training": {"max_steps": 30, "batch_size": 16, "learning_rate": 1e-3, "max_length": 32,
                        "eval_strategy": "steps", "eval_steps": 10},
           "output_dir": str(tmp / "run")}
    for key, value in changes.items():
        section, name = key.split(".")
        cfg[section][name] = value
    path = tmp / "sets.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def run(tiny_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval-sets")
    cli("finetune", write_config(tmp, tiny_models["bert"], **{"training.metric_for_best": "head_loss"}))
    return tmp


def test_metrics_are_reported_per_set(run):
    metrics = json.loads((run / "run" / "metrics.json").read_text())
    for name in ("dev", "head"):
        for metric in ("accuracy", "f1", "loss"):
            assert f"eval_{name}_{metric}" in metrics
    assert metrics["best_metric"] == "head_loss"
    log = [json.loads(line) for line in (run / "run" / "train_log.jsonl").read_text().splitlines()]
    evals = [r for r in log if "eval_head_loss" in r]
    assert [r["step"] for r in evals] == [10, 20, 30]
    # Kept by the lowest head loss (a loss: lower is better).
    best = min(evals, key=lambda r: r["eval_head_loss"])
    assert metrics["best_step"] == best["step"] and metrics["eval_dev_accuracy"] == best["eval_dev_accuracy"]
    data = json.loads((run / "run" / "data.json").read_text())
    assert set(data["validation_file"]) == {"dev", "head"} and data["rows"]["validation"] == {"dev": 200, "head": 40}


def test_evaluate_scores_every_set_and_gates_each(run):
    out = run / "eval.json"
    cli("evaluate", "--model", run / "run", "--output", out)  # default: the run's validation files
    sets = json.loads(out.read_text())["sets"]
    kept = json.loads((run / "run" / "metrics.json").read_text())
    assert [Path(s["data"]).name for s in sets] == ["dev.tsv", "head.tsv"]
    assert sets[0]["metrics"]["accuracy"] == pytest.approx(kept["eval_dev_accuracy"], abs=1e-9)
    assert sets[1]["metrics"]["loss"] == pytest.approx(kept["eval_head_loss"], abs=1e-6)
    # A threshold between the two sets' accuracies fails on the lower one only.
    low, high = sorted(s["metrics"]["accuracy"] for s in sets)
    if low == high:
        pytest.skip("both sets scored the same accuracy: no threshold separates them")
    result = cli("evaluate", "--model", run / "run", "--data", DATA / "dev.tsv", "--data", run / "head.tsv",
                 "--fail-under", f"accuracy={(low + high) / 2}", code=1)
    failing = [s["data"] for s in sets if s["metrics"]["accuracy"] == low][0]
    gate_lines = [line for line in result.stderr.splitlines() if line.startswith("gate failed")]
    assert len(gate_lines) == 1 and gate_lines[0].startswith(f"gate failed: {failing}: accuracy")
    assert gate_lines[0].count("accuracy") == 1


@pytest.mark.parametrize("change,expected", [
    ({"data.validation_file": {"dev": "missing.tsv"}}, "data.validation_file.dev: file not found: missing.tsv"),
    ({"data.validation_file": {"two words": str(DATA / "dev.tsv")}}, "set name 'two words' must be letters"),
    ({"training.metric_for_best": "accuracy"}, "training.metric_for_best: 'accuracy' is not reported"),
])
def test_bad_sets_are_one_line(tiny_models, tmp_path, change, expected):
    result = cli("finetune", write_config(tmp_path, tiny_models["bert"], **change), code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert not (tmp_path / "run").exists()
