"""Experiment trackers (training.report_to): TensorBoard event files and an MLflow store in the run
directory hold the values of train_log.jsonl and the config, read back with tensorboard's event
reader and the MLflow client; an unknown tracker or a missing package is one line and exit 2."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from helpers import REPO, cli

DATA = REPO / "configs" / "finetune" / "data"


def write_config(tmp: Path, model: Path, report_to) -> Path:
    cfg = {"task": "text-classification", "model": {"name_or_path": str(model)},
           "data": {"train_file": str(DATA / "train.tsv"), "validation_file": str(DATA / "dev.tsv"),
                    "text_column": "sentence"},
           "training": {"max_steps": 20, "batch_size": 16, "learning_rate": 1e-3, "max_length": 32,
                        "eval_strategy": "steps", "eval_steps": 10, "logging_steps": 5, "report_to": report_to},
           "output_dir": str(tmp / "run")}
    path = tmp / "trackers.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def train_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def logged(log: list[dict], key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in log if key in r]


@pytest.fixture(scope="module")
def run(tiny_models, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("trackers")
    cli("finetune", write_config(tmp, tiny_models["bert"], ["tensorboard", "mlflow"]))
    return tmp / "run"


def test_tensorboard_events_hold_the_logged_values(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    log = train_log(run)
    assert logged(log, "loss") and logged(log, "eval_accuracy")
    for key in ("loss", "lr", "eval_accuracy", "eval_loss", "epoch"):
        # TensorBoard stores float32: equal to the JSON's float64 within its precision.
        assert [(e.step, pytest.approx(e.value, rel=1e-6, abs=1e-9)) for e in events.Scalars(key)] == logged(log, key)
    hparams = yaml.safe_load(next((run / "tensorboard").glob("*/hparams.yml")).read_text())
    assert hparams["training.learning_rate"] == 1e-3 and hparams["task"] == "text-classification"


def test_mlflow_store_holds_the_run(run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{run.resolve() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lmctl")
    [mlrun] = client.search_runs([experiment.experiment_id])
    assert mlrun.info.status == "FINISHED" and mlrun.info.run_name == "run"
    assert mlrun.data.params["training.max_steps"] == "20" and mlrun.data.params["model.peft"] == "null"
    log = train_log(run)
    for key in ("loss", "eval_accuracy", "samples_per_second"):
        history = client.get_metric_history(mlrun.info.run_id, key)
        assert [(m.step, m.value) for m in history] == logged(log, key)


def test_no_tracker_by_default(tiny_models, tmp_path):
    cli("finetune", write_config(tmp_path, tiny_models["bert"], []), "--set", "training.max_steps=5",
        "--set", "training.eval_strategy=no")
    assert (tmp_path / "run" / "train_log.jsonl").is_file()
    assert not (tmp_path / "run" / "tensorboard").exists() and not (tmp_path / "run" / "mlflow.db").exists()


def test_unknown_tracker_is_one_line(tiny_models, tmp_path):
    result = cli("finetune", write_config(tmp_path, tiny_models["bert"], ["tensorboard", "comet"]), code=2)
    assert result.stderr.strip().count("\n") == 0 and "training.report_to" in result.stderr
    assert "'tensorboard', 'mlflow' or 'wandb'" in result.stderr and "comet" in result.stderr
    assert not (tmp_path / "run").exists()


def test_missing_tracker_package_names_the_install(tiny_models, tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else find_spec(name, *a))
    result = cli("finetune", write_config(tmp_path, tiny_models["bert"], "tensorboard"), code=2)
    assert result.stderr.strip() == ("error: training.report_to: tensorboard is not installed; pip install "
                                     "'lmctl[tensorboard]' (or drop tensorboard from training.report_to)")
    assert not (tmp_path / "run").exists()
