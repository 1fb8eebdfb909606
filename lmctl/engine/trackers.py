"""Experiment trackers (`training.report_to`) through Accelerate's tracker API.

Trackers receive what train_log.jsonl receives, at the same steps, plus the run's config as
hyperparameters, from the main process only. TensorBoard writes event files into the run
directory; MLflow writes to the run directory's own SQLite store (MLflow 3 refuses its old
plain-file store) unless MLFLOW_TRACKING_URI names another; wandb follows its own settings.
Each is an optional extra: a missing one fails before any data is read.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from lmctl.config import flatten
from lmctl.errors import UserError

PROJECT = "lmctl"
TENSORBOARD_DIR = "tensorboard"
MLFLOW_STORE = "mlflow.db"


def check_installed(names) -> None:
    for name in names:
        if importlib.util.find_spec(name) is None:
            raise UserError(f"training.report_to: {name} is not installed; pip install 'lmctl[{name}]' "
                            f"(or drop {name} from training.report_to)")


def make(names, output_dir: Path) -> list:
    """Tracker objects for Accelerator(log_with=...), each told where this run's files go."""
    out = Path(output_dir).resolve()
    trackers = []
    for name in names:
        if name == "tensorboard":
            from accelerate.tracking import TensorBoardTracker

            trackers.append(TensorBoardTracker(TENSORBOARD_DIR, out))  # event files in output_dir/tensorboard
        elif name == "mlflow":
            from accelerate.tracking import MLflowTracker

            trackers.append(MLflowTracker(PROJECT, logging_dir=str(out / "mlflow-artifacts"), run_name=out.name))
        elif name == "wandb":
            from accelerate.tracking import WandBTracker

            trackers.append(WandBTracker(PROJECT, name=out.name, dir=str(out)))
    return trackers


def hyperparameters(config: dict) -> dict:
    """The config as dotted keys with scalar values (what tracker hyperparameter tables take)."""
    # None, lists and empty sections as text: TensorBoard's hparams accept no other types.
    return {k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v) for k, v in flatten(config).items()}


def start(accelerator, cfg, output_dir: Path) -> None:
    if not accelerator.log_with:
        return
    if "mlflow" in cfg.training.report_to and not os.environ.get("MLFLOW_TRACKING_URI"):
        import logging

        import mlflow

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its table-creation notes are noise here
        mlflow.set_tracking_uri(f"sqlite:///{Path(output_dir).resolve() / MLFLOW_STORE}")
    accelerator.init_trackers(PROJECT, config=hyperparameters(cfg.model_dump(mode="json")))


def log(accelerator, record: dict) -> None:
    """One train_log.jsonl record, its step as the tracker step and its numbers as values."""
    if accelerator.trackers:
        values = {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))}
        accelerator.log(values, step=record["step"])


def finish(accelerator) -> None:
    # Not accelerator.end_training(): that also tears down the process group, which the command
    # still uses after training.
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.trackers.clear()
