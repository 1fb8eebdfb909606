"""A task is one file: a task defined here, outside lmctl, registered through `lmctl.tasks.register`,
runs finetune → evaluate → predict → export --format onnx, and everything task-specific it
declares (columns, a config default and a config rule, ONNX outputs, the direction of its
metrics) reaches config validation, training, export and compare without a line of lmctl
naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import cli, write_rows
from lmctl import tasks
from lmctl.tasks.base import Task, check_column_values_are_text

NAME = "text-length-bucket"
LONG_WORDS = 6  # a text of more words than this is "long"


class TextLengthBucketTask(Task):
    """Is a text short or long? The label comes from the text itself, so the task reads one column
    and has no label column; it reports `mistakes`, a count where lower is better (the name rule
    would read it the other way, so the declared direction is what is tested)."""

    name = NAME
    auto_class = "AutoModelForSequenceClassification"
    main_metric = "mistakes"
    metric_names = ("mistakes", "bucket_accuracy", "loss")
    higher_is_better = ("bucket_accuracy",)
    lower_is_better = ("mistakes", "loss")
    predict_modes = ("bucket",)
    mode = "bucket"
    config_defaults = {"training.max_length": 24}
    onnx_outputs = ("logits",)
    labels = ("short", "long")

    @classmethod
    def check_config(cls, cfg) -> None:
        if cfg.training.max_length > 64:
            raise ValueError(f"training.max_length: {NAME} reads at most 64 tokens, not {cfg.training.max_length}")

    def __init__(self, cfg, console):
        self.cfg, self.console = cfg, console
        self.column = cfg.data.text_column
        self._collator = None

    def columns(self, with_labels: bool) -> dict[str, str | None]:
        return {"data.text_column": self.column}

    def texts(self, ds):
        return ds[self.column]

    def _model_kwargs(self) -> dict:
        return dict(num_labels=2, id2label=dict(enumerate(self.labels)), label2id={n: i for i, n in enumerate(self.labels)})

    def build_model(self, name_or_path, tokenizer):
        from lmctl.models import build_model

        return build_model(self.auto_class, self.cfg.model, name_or_path, tokenizer, self.cfg.training.max_length,
                           **self._model_kwargs())

    def load_model(self, path, tokenizer, source):
        from lmctl.models import load_model

        return load_model(self.auto_class, path, tokenizer, key=source)

    def on_bind(self) -> None:
        from transformers import DataCollatorWithPadding

        self._collator = DataCollatorWithPadding(self.tokenizer)

    def encode(self, ds, split, source):
        check_column_values_are_text(ds, self.column, source)

        def tokenize(batch):
            enc = self.tokenizer(batch[self.column], truncation=True, max_length=self.cfg.training.max_length)
            enc["length"] = [len(ids) for ids in enc["input_ids"]]
            if split != "predict":
                enc["labels"] = [int(len(t.split()) > LONG_WORDS) for t in batch[self.column]]
            return enc

        return ds.map(tokenize, batched=True, remove_columns=ds.column_names)

    def collate(self, features):
        return self._collator(features)

    def eval_step(self, model, batch):
        labels = batch.pop("labels", None)
        out = {"logits": model(**batch).logits.float()}
        if labels is not None:
            out["labels"] = labels
        return out

    def compute_metrics(self, outputs, encoded):
        import numpy as np

        logits, labels = np.asarray(outputs["logits"]), np.asarray(outputs["labels"])
        wrong = int((logits.argmax(-1) != labels).sum())
        shifted = logits - logits.max(-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        return {"mistakes": float(wrong), "bucket_accuracy": 1 - wrong / len(labels),
                "loss": float(-log_probs[np.arange(len(labels)), labels].mean())}

    def predict_records(self, outputs, encoded):
        import numpy as np

        return [{"bucket": self.labels[int(i)]} for i in np.asarray(outputs["logits"]).argmax(-1)]


@pytest.fixture(scope="module")
def registered():
    tasks.register(NAME, TextLengthBucketTask)
    yield
    tasks.TASKS.pop(NAME)


def _rows(n: int, seed: int) -> list[dict]:
    import random

    rng = random.Random(seed)
    words = "the film was a delight and cast shines nothing here worked for me".split()
    return [{"text": " ".join(rng.choice(words) for _ in range(rng.choice([2, 3, 4, 9, 10, 12])))} for _ in range(n)]


def _config(tmp: Path, model: Path, **training) -> Path:
    train = write_rows(tmp / "train.tsv", _rows(48, 0))
    dev = write_rows(tmp / "dev.tsv", _rows(16, 1))
    cfg = {"task": NAME, "model": {"name_or_path": str(model)},
           "data": {"train_file": str(train), "validation_file": str(dev), "text_column": "text"},
           "training": {"max_steps": 6, "batch_size": 8, "learning_rate": 3.0e-3, "eval_strategy": "steps",
                        "eval_steps": 3, "logging_steps": 3, "seed": 13, **training},
           "output_dir": str(tmp / "run")}
    path = tmp / "bucket.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def test_a_task_defined_outside_lmctl_runs_every_command(registered, tiny_models, tmp_path, one_thread):
    config = _config(tmp_path, tiny_models["bert"])
    shown = yaml.safe_load(cli("config", "show", config).stdout)
    assert shown["training"]["max_length"] == 24  # the task's config default
    cli("finetune", config)
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_metric"] == "mistakes"
    # The kept model is the one with the fewest mistakes: the task says lower is better.
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    evals = [r["eval_mistakes"] for r in log if "eval_mistakes" in r]
    assert len(evals) == 2 and metrics["eval_mistakes"] == min(evals)

    out = tmp_path / "eval.json"
    cli("evaluate", "--model", run, "--data", tmp_path / "dev.tsv", "--output", out)
    scored = json.loads(out.read_text())["metrics"]
    assert scored["mistakes"] == metrics["eval_mistakes"] and scored["bucket_accuracy"] == 1 - scored["mistakes"] / 16

    predicted = [json.loads(line) for line in cli("predict", "--model", run, "--input", tmp_path / "dev.tsv").stdout.splitlines()]
    assert len(predicted) == 16 and {p["bucket"] for p in predicted} <= {"short", "long"}
    assert predicted[0]["text"] == _rows(16, 1)[0]["text"]  # its one text column is echoed

    export = tmp_path / "onnx"
    cli("export", "--model", run, "--output", export, "--format", "onnx")
    manifest = json.loads((export / "onnx.json").read_text())
    assert manifest["task"] == NAME and manifest["outputs"] == ["logits"]
    from_onnx = [json.loads(line) for line in cli("predict", "--model", export, "--input", tmp_path / "dev.tsv").stdout.splitlines()]
    assert [p["bucket"] for p in from_onnx] == [p["bucket"] for p in predicted]


def test_its_config_rule_runs_up_front_as_one_line(registered, tiny_models, tmp_path):
    config = _config(tmp_path, Path("no/such/model"), max_length=100)
    result = cli("finetune", config, code=2)
    assert result.stderr.strip() == f"error: {config}: training.max_length: {NAME} reads at most 64 tokens, not 100"
    # The generic rules read its declarations too: it neither distils nor streams nor pretrains.
    assert ("distillation is for text-classification, multi-label-classification (classes, labels or scores), not "
            "text-length-bucket") in \
        cli("finetune", config, "--set", "training.max_length=24", "--set", "distill.teacher=x", code=2).stderr
    assert "only the pretraining objectives read streams" in \
        cli("finetune", config, "--set", "training.max_length=24", "--set", "data.streaming=true", code=2).stderr
    assert f"task '{NAME}' is not a pretraining objective; use one of masked-lm, causal-lm, span-corruption" in \
        cli("pretrain", config, "--set", "training.max_length=24", code=2).stderr


def test_compare_ranks_by_the_direction_the_task_declares(registered, tmp_path):
    for name, mistakes in (("few", 1.0), ("many", 5.0), ("some", 3.0)):
        run = tmp_path / name
        run.mkdir()
        (run / "config.yaml").write_text(yaml.safe_dump({"task": NAME, "training": {"learning_rate": mistakes / 1000},
                                                         "output_dir": str(run)}))
        (run / "data.json").write_text(json.dumps({"validation_file": {"sha256": "x"}}))
        (run / "metrics.json").write_text(json.dumps({"eval_mistakes": mistakes, "best_metric": "mistakes"}))
    ranked = json.loads(cli("compare", tmp_path / "*", "--format", "json").stdout)["rows"]
    # The name rule would rank "mistakes" highest first; the task declares fewer is better.
    assert [r["mistakes"] for r in ranked] == [1.0, 3.0, 5.0]
    gate = cli("compare", tmp_path / "*", "--fail-if-worse", tmp_path / "some", code=None)
    assert gate.exit_code != 0 and "many: mistakes 5.0000 is 2.00 points worse" in gate.stdout + gate.stderr
