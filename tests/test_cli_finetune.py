"""`lmctl finetune / evaluate / predict` end to end on the tiny BERT, GPT-2 and T5.

Every test goes through the CLI (Typer's CliRunner, in process, so torch imports once;
a subprocess for the pipe test) and checks what a user relies on: the run directory
is complete and reloads, training learns, evaluate re-scores the kept model to the
same numbers, and predictions come back in input order although inference sorts
batches by length.

The data sets are generated: short sentences built from the tiny tokenizers' corpus
vocabulary (tests/tiny_models.py) whose label depends on one adjective, so a
0.05M-parameter model learns them in a few seconds.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import BATCH, EPOCHS, NEGATIVE, POSITIVE, cli, sentence, sentiment_rows, write_config, write_rows

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread: see conftest.py

FAMILIES = ["bert", "gpt2", "t5"]
TRAIN_ROWS, DEV_ROWS = 120, 40
# The tiny T5 learns slowest: over six random inits it reached 0.875-1.0 dev accuracy in 8 epochs,
# 1.0 every time in 12.
FAMILY_EPOCHS = {"bert": EPOCHS, "gpt2": EPOCHS, "t5": 12}
STEPS_PER_EPOCH = math.ceil(TRAIN_ROWS / BATCH)
HEAD_CLASSES = {
    "bert": "BertForSequenceClassification",
    "gpt2": "GPT2ForSequenceClassification",
    "t5": "T5ForSequenceClassification",
}

NEUTRAL = ["quiet", "slow", "strange", "bright", "careful"]  # the pair task's first sentences


# Very different lengths in an order that is neither sorted nor reverse-sorted, so the
# length-sorted inference batches must be mapped back to this order.
PREDICT_TEXTS = [
    "The chef was great.",
    "My neighbour was terrible at the station yesterday, and the old farmer was cold near the river "
    "in the morning, and our teacher was boring in the city after dinner again today.",
    "Cold.",
    "A dog was happy by the sea in the morning, and my sister was brilliant on the farm.",
    "The band was lazy at school.",
    "Great!",
    "The engineer was warm in the kitchen after dinner, and a stranger was gentle in the park yesterday, "
    "and the cat was happy by the sea again today.",
    "Our teacher was noisy near the river again today.",
    "Happy.",
    "My sister was boring in the city, and the chef was terrible at the station.",
]


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def eval_metrics(metrics: dict) -> dict:
    return {k.removeprefix("eval_"): v for k, v in metrics.items() if k.startswith("eval_")}


def direct_logits(run: Path, texts: list[str], pairs: list[str] | None = None, mean_pooled: bool = False) -> np.ndarray:
    """One text at a time through `from_pretrained(run)`: no batching, no sorting, no lmctl.

    `mean_pooled`: the head applied by hand to the mean of every token's final state (one text,
    so no padding) instead of transformers' own last-token pooling."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    tokenizer = AutoTokenizer.from_pretrained(run)
    model = AutoModelForSequenceClassification.from_pretrained(run).eval()
    rows = []
    with torch.no_grad():
        for i, text in enumerate(texts):
            enc = tokenizer(text, pairs[i] if pairs else None, truncation=True,
                            max_length=cfg["training"]["max_length"], return_tensors="pt")
            if mean_pooled:
                logits = model.score(model.base_model(**enc).last_hidden_state.mean(1))
            else:
                logits = model(**enc).logits
            rows.append(logits[0].float().numpy())
    return np.stack(rows)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ---- shared runs -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("sentiment")
    return {"dir": d, "train": write_rows(d / "train.tsv", sentiment_rows(TRAIN_ROWS, seed=1)),
            "dev": write_rows(d / "dev.tsv", sentiment_rows(DEV_ROWS, seed=2))}


@pytest.fixture(scope="module")
def runs(tiny_models, sentiment, tmp_path_factory) -> dict:
    """One finetuned run per family, trained once through the CLI and shared by the tests below."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for family in FAMILIES:
        config = write_config(root / f"{family}.yaml", tiny_models[family], sentiment["train"], sentiment["dev"],
                              root / family, training={"num_epochs": FAMILY_EPOCHS[family]})
        result = cli("finetune", config)
        out[family] = {"dir": root / family, "config": config, "result": result}
    return out


# ---- the run directory ------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_run_directory_is_complete(runs, sentiment, family):
    run = runs[family]["dir"]
    for name in ("config.yaml", "metrics.json", "train_log.jsonl", "environment.json", "data.json",
                 "config.json", "tokenizer_config.json"):
        assert (run / name).is_file(), f"{name} missing from {sorted(p.name for p in run.iterdir())}"
    # Safetensors only: a pickle file in a run directory would be refused by lmctl itself.
    assert list(run.glob("*.safetensors")) and not list(run.glob("*.bin"))

    metrics = read_json(run / "metrics.json")
    for key in ("train_seconds", "train_samples_per_second", "train_tokens_per_second", "eval_accuracy",
                "eval_loss", "completed_steps"):
        assert key in metrics, f"metrics.json lacks {key}: {sorted(metrics)}"
    assert metrics["train_seconds"] > 0
    assert metrics["train_samples_per_second"] > 0 and metrics["train_tokens_per_second"] > 0
    # Tokens per second counts real tokens, so it must exceed samples per second (sentences > 1 token).
    assert metrics["train_tokens_per_second"] > metrics["train_samples_per_second"]
    assert metrics["completed_steps"] == FAMILY_EPOCHS[family] * STEPS_PER_EPOCH
    assert metrics["train_samples"] == FAMILY_EPOCHS[family] * TRAIN_ROWS
    # The data is learnable from one word; chance is 0.5. Measured over six random inits of the
    # tiny models: 0.95-1.0 (T5 with its 12 epochs: 1.0).
    assert metrics["eval_accuracy"] >= 0.8, metrics

    # The resolved config in the run dir validates and is the config that ran.
    from lmctl import config as config_lib

    saved = config_lib.validate(yaml.safe_load((run / "config.yaml").read_text()))
    assert saved == config_lib.load_config(runs[family]["config"])

    env = read_json(run / "environment.json")
    assert env["packages"]["torch"] and env["packages"]["transformers"] and env["num_processes"] == 1

    data = read_json(run / "data.json")
    assert data["rows"] == {"train": TRAIN_ROWS, "validation": DEV_ROWS}
    import hashlib

    assert data["train_file"]["sha256"] == hashlib.sha256(sentiment["train"].read_bytes()).hexdigest()


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_model_reloads_with_label_names(runs, family):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run = runs[family]["dir"]
    config = read_json(run / "config.json")
    # Sorted label names become ids 0, 1; they travel in the model, not in lmctl.
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["label2id"] == {"negative": 0, "positive": 1}
    model = AutoModelForSequenceClassification.from_pretrained(run)
    assert type(model).__name__ == HEAD_CLASSES[family]
    assert model.config.id2label == {0: "negative", 1: "positive"}
    AutoTokenizer.from_pretrained(run)


@pytest.mark.parametrize("family", FAMILIES)
def test_training_loss_fell(runs, family):
    run = runs[family]["dir"]
    log = read_log(run)
    losses = [r["loss"] for r in log if "loss" in r]
    # logging_steps=1: one loss line per optimizer step.
    assert [r["step"] for r in log if "loss" in r] == list(range(1, len(losses) + 1))
    assert len(losses) == read_json(run / "metrics.json")["completed_steps"]
    assert all(math.isfinite(x) for x in losses)
    # Starts near ln 2 (two balanced classes) and ends below it. One batch is noisy, so the
    # size of the fall is judged on 10-step means (measured ratio 0.01-0.17 over six inits).
    assert losses[-1] < losses[0], (losses[0], losses[-1])
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10]), (losses[:10], losses[-10:])
    assert read_json(run / "metrics.json")["train_loss"] == pytest.approx(losses[-1])
    # An evaluation per epoch, each with the task's metrics.
    evals = [r for r in log if "eval_accuracy" in r]
    assert [r["epoch"] for r in evals] == [float(e) for e in range(1, FAMILY_EPOCHS[family] + 1)]


# ---- evaluate -----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_evaluate_rescores_the_kept_classifier(runs, sentiment, family, tmp_path):
    run = runs[family]["dir"]
    out = tmp_path / "eval.json"
    result = cli("evaluate", "--model", run, "--data", sentiment["dev"], "--output", out)
    report = read_json(out)
    metrics = read_json(run / "metrics.json")
    expected = eval_metrics(metrics)
    assert set(report["metrics"]) == set(expected)
    for key, value in expected.items():
        assert report["metrics"][key] == pytest.approx(value, abs=1e-6), key
    # The kept model is the best evaluation of training, not simply the last one.
    log = read_log(run)
    best = [r for r in log if "eval_accuracy" in r and r["step"] == metrics["best_step"]]
    assert len(best) == 1
    assert eval_metrics(best[0]) == pytest.approx(expected, abs=1e-9)
    assert metrics["eval_accuracy"] == max(r["eval_accuracy"] for r in log if "eval_accuracy" in r)
    assert report["examples"] == DEV_ROWS
    cm = report["confusion_matrix"]
    assert cm["labels"] == ["negative", "positive"]
    assert sum(map(sum, cm["matrix"])) == DEV_ROWS
    assert sum(cm["matrix"][i][i] for i in range(2)) == round(DEV_ROWS * expected["accuracy"])
    # The table goes to stdout, progress to stderr.
    assert "accuracy" in result.stdout and "confusion matrix" in result.stdout


def test_evaluate_defaults_to_the_runs_validation_file(runs):
    run = runs["bert"]["dir"]
    result = cli("evaluate", "--model", run)
    assert f"{DEV_ROWS} examples" in result.stdout


# ---- predict --------------------------------------------------------------------------------------


def predict_input(fmt: str, d: Path) -> tuple[list[str], str | None]:
    """(args for --input, stdin text) for a format."""
    rows = [{"sentence": t} for t in PREDICT_TEXTS]
    if fmt == "stdin":
        return ["--input", "-"], "".join(t + "\n" for t in PREDICT_TEXTS)
    if fmt == "stdin-jsonl":
        return ["--input", "-"], "".join(json.dumps(r) + "\n" for r in rows)
    return ["--input", str(write_rows(d / f"predict.{fmt}", rows))], None


@pytest.mark.parametrize("fmt", ["txt", "csv", "jsonl", "stdin", "stdin-jsonl"])
@pytest.mark.parametrize("family", FAMILIES)
def test_predict_in_input_order(runs, family, fmt, tmp_path):
    run = runs[family]["dir"]
    args, stdin = predict_input(fmt, tmp_path)
    # batch 3: several length-sorted batches, so a lost index would scramble the output.
    result = cli("predict", "--model", run, "--batch-size", "3", *args, input=stdin)
    records = jsonl(result.stdout)
    assert len(records) == len(PREDICT_TEXTS)
    logits = direct_logits(run, PREDICT_TEXTS)
    probs = softmax(logits)
    for i, (record, text) in enumerate(zip(records, PREDICT_TEXTS)):
        assert record["sentence"] == text
        assert set(record["scores"]) == {"negative", "positive"}
        assert record["label"] == ["negative", "positive"][int(logits[i].argmax())], (i, text)
        assert record["score"] == max(record["scores"].values())
        assert record["scores"]["negative"] == pytest.approx(probs[i][0], abs=1e-4)
        assert record["scores"]["positive"] == pytest.approx(probs[i][1], abs=1e-4)
        assert sum(record["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    # The model learnt the task, so predictions differ between rows and the order check has teeth.
    assert {r["label"] for r in records} == {"negative", "positive"}


def test_predict_output_file(runs, tmp_path):
    run = runs["bert"]["dir"]
    out = tmp_path / "pred.jsonl"
    args, _ = predict_input("txt", tmp_path)
    result = cli("predict", "--model", run, *args, "--output", out)
    assert result.stdout == ""
    records = jsonl(out.read_text())
    assert [r["sentence"] for r in records] == PREDICT_TEXTS


def test_predict_through_a_pipe(runs):
    """A real process with real pipes: JSON lines on stdout, nothing else there."""
    run = runs["gpt2"]["dir"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # see one_thread() in conftest.py
    proc = subprocess.run(
        [sys.executable, "-m", "lmctl", "predict", "--model", str(run)],
        input="".join(t + "\n" for t in PREDICT_TEXTS), capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    records = jsonl(proc.stdout)
    assert len(records) == len(proc.stdout.splitlines()) == len(PREDICT_TEXTS)
    logits = direct_logits(run, PREDICT_TEXTS)
    assert [r["label"] for r in records] == [["negative", "positive"][int(i)] for i in logits.argmax(-1)]
    assert "Traceback" not in proc.stderr


def test_gpt2_mean_pooling(tiny_models, sentiment, tmp_path):
    """`model.pooling: mean` trains, is saved with the model, and predict/evaluate use it on reload."""
    run = tmp_path / "run"
    cli("finetune", write_config(tmp_path / "c.yaml", tiny_models["gpt2"], sentiment["train"], sentiment["dev"], run),
        "--set", "model.pooling=mean")
    assert read_json(run / "config.json")["lmctl_pooling"] == "mean"
    metrics = read_json(run / "metrics.json")
    assert metrics["eval_accuracy"] >= 0.9
    records = jsonl(cli("predict", "--model", run, "--batch-size", "3",
                        input="".join(t + "\n" for t in PREDICT_TEXTS)).stdout)
    probs = np.array([[r["scores"]["negative"], r["scores"]["positive"]] for r in records])
    # Batched with padding, the prediction is the mean-pooled head computed one text at a time ...
    np.testing.assert_allclose(probs, softmax(direct_logits(run, PREDICT_TEXTS, mean_pooled=True)), atol=1e-4)
    # ... and not what transformers' last-token head gives for the same weights.
    assert np.abs(probs - softmax(direct_logits(run, PREDICT_TEXTS))).max() > 0.05
    out = tmp_path / "eval.json"
    cli("evaluate", "--model", run, "--data", sentiment["dev"], "--output", out)
    assert read_json(out)["metrics"]["accuracy"] == pytest.approx(metrics["eval_accuracy"], abs=1e-9)


def test_pooling_is_refused_where_the_model_pools_its_own_way(tiny_models, sentiment, tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny_models["bert"], sentiment["train"], sentiment["dev"],
                          tmp_path / "run")
    result = cli("finetune", config, "--set", "model.pooling=mean", code=2)
    assert result.stderr.strip().splitlines() == [
        "error: model.pooling: a pooling choice is for decoder classifiers (GPT-2 family); "
        "BertForSequenceClassification pools its own way: drop model.pooling"]
    assert not (tmp_path / "run").exists()


# ---- other label kinds -----------------------------------------------------------------------------


def test_int_labels(tiny_models, tmp_path):
    rows = [{"sentence": r["sentence"], "label": int(r["label"] == "positive")} for r in sentiment_rows(80, 3)]
    dev = [{"sentence": r["sentence"], "label": int(r["label"] == "positive")} for r in sentiment_rows(40, 4)]
    train_file, dev_file = write_rows(tmp_path / "train.csv", rows), write_rows(tmp_path / "dev.jsonl", dev)
    run = tmp_path / "run"
    cli("finetune", write_config(tmp_path / "c.yaml", tiny_models["bert"], train_file, dev_file, run))
    config = read_json(run / "config.json")
    assert config["id2label"] == {"0": "0", "1": "1"}
    metrics = read_json(run / "metrics.json")
    assert metrics["eval_accuracy"] >= 0.8
    out = tmp_path / "eval.json"
    cli("evaluate", "--model", run, "--data", dev_file, "--output", out)
    assert read_json(out)["metrics"]["accuracy"] == pytest.approx(metrics["eval_accuracy"], abs=1e-9)
    texts = "The chef was great at school.\nA dog was cold in the park.\n"
    records = jsonl(cli("predict", "--model", run, input=texts).stdout)
    assert [r["label"] for r in records] == ["1", "0"]
    assert all(set(r["scores"]) == {"0", "1"} for r in records)


def pair_rows(n: int, seed: int) -> list[dict]:
    """The label depends on the second sentence only (the first is neutral): a model that never sees
    the pair column stays at chance."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "agree" if i % 2 == 0 else "disagree"
        first = sentence(rng, rng.choice(NEUTRAL))
        second = sentence(rng, rng.choice(POSITIVE if label == "agree" else NEGATIVE))
        rows.append({"premise": first, "hypothesis": second, "label": label})
    rng.shuffle(rows)
    return rows


def test_sentence_pairs(tiny_models, tmp_path):
    train_file = write_rows(tmp_path / "train.jsonl", pair_rows(80, 5))
    dev_file = write_rows(tmp_path / "dev.jsonl", pair_rows(40, 6))
    run = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", tiny_models["bert"], train_file, dev_file, run,
                          data={"text_column": "premise", "text_pair_column": "hypothesis"})
    cli("finetune", config)
    metrics = read_json(run / "metrics.json")
    assert metrics["eval_accuracy"] >= 0.8, metrics  # only reachable if the pair reaches the model

    out = tmp_path / "eval.json"
    cli("evaluate", "--model", run, "--data", dev_file, "--output", out)
    for key, value in eval_metrics(metrics).items():
        assert read_json(out)["metrics"][key] == pytest.approx(value, abs=1e-6)

    premises = PREDICT_TEXTS
    hypotheses = list(reversed(PREDICT_TEXTS))
    pred_file = write_rows(tmp_path / "pred.jsonl", [{"premise": p, "hypothesis": h}
                                                     for p, h in zip(premises, hypotheses)])
    records = jsonl(cli("predict", "--model", run, "--input", pred_file, "--batch-size", "4").stdout)
    logits = direct_logits(run, premises, hypotheses)
    assert [r["label"] for r in records] == [["agree", "disagree"][int(i)] for i in logits.argmax(-1)]
    for record, p in zip(records, softmax(logits)):
        assert record["scores"]["agree"] == pytest.approx(p[0], abs=1e-4)
    assert [(r["premise"], r["hypothesis"]) for r in records] == list(zip(premises, hypotheses))


def regression_rows(n: int, seed: int) -> list[dict]:
    """A score per adjective, from 0.0 (terrible) to 1.0 (brilliant)."""
    scale = {"terrible": 0.0, "boring": 0.1, "cold": 0.2, "noisy": 0.3, "lazy": 0.4,
             "gentle": 0.6, "warm": 0.7, "happy": 0.8, "great": 0.9, "brilliant": 1.0}
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        adjective = rng.choice(list(scale))
        rows.append({"sentence": sentence(rng, adjective), "label": scale[adjective]})
    return rows


def test_regression(tiny_models, tmp_path):
    train_file = write_rows(tmp_path / "train.tsv", regression_rows(80, 7))
    dev_file = write_rows(tmp_path / "dev.tsv", regression_rows(40, 8))
    run = tmp_path / "run"
    cli("finetune", write_config(tmp_path / "c.yaml", tiny_models["bert"], train_file, dev_file, run))
    config = read_json(run / "config.json")
    assert config["problem_type"] == "regression" and len(config["id2label"]) == 1
    metrics = read_json(run / "metrics.json")
    for key in ("eval_pearson", "eval_spearman", "eval_mse"):
        assert key in metrics, sorted(metrics)
    assert "eval_accuracy" not in metrics
    assert metrics["best_metric"] == "pearson"
    assert metrics["eval_pearson"] >= 0.8, metrics

    out = tmp_path / "eval.json"
    cli("evaluate", "--model", run, "--data", dev_file, "--output", out)
    for key, value in eval_metrics(metrics).items():
        assert read_json(out)["metrics"][key] == pytest.approx(value, abs=1e-6), key
    assert "confusion_matrix" not in read_json(out)

    records = jsonl(cli("predict", "--model", run, "--batch-size", "3",
                        input="".join(t + "\n" for t in PREDICT_TEXTS)).stdout)
    values = direct_logits(run, PREDICT_TEXTS)[:, 0]
    assert [set(r) for r in records] == [{"sentence", "value"}] * len(PREDICT_TEXTS)
    assert [r["value"] for r in records] == pytest.approx(values.tolist(), abs=1e-4)
    assert all(isinstance(r["value"], float) for r in records)


# ---- training options --------------------------------------------------------------------------------


def small_config(tmp_path: Path, tiny_models, sentiment, name: str = "run", family: str = "bert", **training) -> Path:
    return write_config(tmp_path / f"{name}.yaml", tiny_models[family], sentiment["train"], sentiment["dev"],
                        tmp_path / name, training=training)


def test_set_overrides_take_effect(tiny_models, sentiment, tmp_path):
    config = small_config(tmp_path, tiny_models, sentiment)
    cli("finetune", config, "--set", "training.max_steps=3", "--set", "training.learning_rate=2e-3",
        "-s", "training.seed=5", "--set", f"output_dir={tmp_path / 'other'}")
    run = tmp_path / "other"
    assert not (tmp_path / "run").exists()  # output_dir came from --set
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["training"]["max_steps"] == 3
    assert saved["training"]["learning_rate"] == 2e-3 and isinstance(saved["training"]["learning_rate"], float)
    assert saved["training"]["seed"] == 5
    assert read_json(run / "metrics.json")["completed_steps"] == 3
    lrs = [r["lr"] for r in read_log(run) if "lr" in r]
    # Warmup (1 of 3 steps) peaks at the overridden rate, not the file's 3e-3, then decays.
    assert max(lrs) == pytest.approx(2e-3)


def test_existing_output_dir_needs_overwrite(tiny_models, sentiment, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("my earlier results\n")
    config = small_config(tmp_path, tiny_models, sentiment, max_steps=2)
    result = cli("finetune", config, code=2)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "--overwrite" in lines[0] and str(run) in lines[0]
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    assert (run / "notes.txt").read_text() == "my earlier results\n"

    cli("finetune", config, "--overwrite")
    names = {p.name for p in run.iterdir()}
    assert "notes.txt" not in names  # replaced, not mixed with the old run's files
    assert {"metrics.json", "config.yaml", "config.json"} <= names


def test_max_steps_overrides_epochs(tiny_models, sentiment, tmp_path):
    cli("finetune", small_config(tmp_path, tiny_models, sentiment, max_steps=5, num_epochs=10))
    run = tmp_path / "run"
    metrics = read_json(run / "metrics.json")
    assert metrics["completed_steps"] == 5 and metrics["train_samples"] == 5 * BATCH
    log = read_log(run)
    assert max(r["step"] for r in log) == 5
    # The run ends between epoch evaluations; the final model is still judged.
    assert [r["step"] for r in log if "eval_accuracy" in r] == [5]


def test_gradient_accumulation(tiny_models, sentiment, tmp_path):
    # 120 rows / batch 12 = 10 batches an epoch; 2 batches per optimizer step → 5 steps an epoch.
    cli("finetune", small_config(tmp_path, tiny_models, sentiment, gradient_accumulation_steps=2, num_epochs=2,
                                 batch_size=12))
    run = tmp_path / "run"
    metrics = read_json(run / "metrics.json")
    assert metrics["completed_steps"] == 10
    assert metrics["train_samples"] == 2 * TRAIN_ROWS  # every batch was trained on, none skipped
    log = read_log(run)
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 11))
    assert [r["step"] for r in log if "eval_accuracy" in r] == [5, 10]


def test_gradient_accumulation_uneven_last_step(tiny_models, sentiment, tmp_path):
    # 120 rows / batch 8 = 15 batches; 2 per step → 8 steps an epoch, the last one from one batch
    # (accumulation must sync at the end of the epoch, not carry a half step into the next).
    cli("finetune", small_config(tmp_path, tiny_models, sentiment, gradient_accumulation_steps=2, num_epochs=2))
    run = tmp_path / "run"
    metrics = read_json(run / "metrics.json")
    assert metrics["completed_steps"] == 16
    assert metrics["train_samples"] == 2 * TRAIN_ROWS
    assert [r["step"] for r in read_log(run) if "eval_accuracy" in r] == [8, 16]


def test_early_stopping(tiny_models, sentiment, tmp_path):
    # A learning rate too small to move the argmax: accuracy never improves after the first eval.
    cli("finetune", small_config(tmp_path, tiny_models, sentiment, learning_rate=1e-9, num_epochs=20,
                                 early_stopping_patience=2))
    run = tmp_path / "run"
    evals = [r for r in read_log(run) if "eval_accuracy" in r]
    # Stopped exactly `patience` evaluations after the last improvement, long before 20 epochs.
    best_i, best = 0, None
    for i, r in enumerate(evals):
        if best is None or r["eval_accuracy"] > best:
            best_i, best = i, r["eval_accuracy"]
    assert len(evals) == best_i + 1 + 2, [r["eval_accuracy"] for r in evals]
    assert len(evals) < 20
    metrics = read_json(run / "metrics.json")
    assert metrics["completed_steps"] == len(evals) * STEPS_PER_EPOCH
    assert metrics["best_step"] == evals[best_i]["step"]


def test_eval_strategy_steps(tiny_models, sentiment, tmp_path):
    cli("finetune", small_config(tmp_path, tiny_models, sentiment, eval_strategy="steps", eval_steps=4,
                                 max_steps=10))
    log = read_log(tmp_path / "run")
    # Every 4 steps, plus the final step so the last model is judged too.
    assert [r["step"] for r in log if "eval_accuracy" in r] == [4, 8, 10]


def test_eval_strategy_no_keeps_the_last_model(tiny_models, sentiment, tmp_path):
    cli("finetune", small_config(tmp_path, tiny_models, sentiment, eval_strategy="no", max_steps=4))
    run = tmp_path / "run"
    assert not [r for r in read_log(run) if "eval_accuracy" in r]
    assert (run / "config.json").is_file() and list(run.glob("*.safetensors"))


def test_metric_for_best_loss_keeps_the_lowest_loss(tiny_models, sentiment, tmp_path):
    cli("finetune", small_config(tmp_path, tiny_models, sentiment, metric_for_best="loss", num_epochs=4))
    run = tmp_path / "run"
    evals = [r for r in read_log(run) if "eval_loss" in r]
    assert len({r["eval_loss"] for r in evals}) > 1
    lowest = min(evals, key=lambda r: r["eval_loss"])
    metrics = read_json(run / "metrics.json")
    assert metrics["best_metric"] == "loss"
    assert metrics["best_step"] == lowest["step"]
    assert metrics["eval_loss"] == pytest.approx(lowest["eval_loss"])


def test_same_seed_same_run(tiny_models, sentiment, tmp_path):
    def run_once(name: str, seed: int) -> dict:
        cli("finetune", small_config(tmp_path, tiny_models, sentiment, name=name, seed=seed, num_epochs=2))
        return read_json(tmp_path / name / "metrics.json")

    a, b, c = run_once("a", 21), run_once("b", 21), run_once("c", 22)
    assert eval_metrics(a) == eval_metrics(b)
    assert a["train_loss"] == b["train_loss"]
    assert a["best_step"] == b["best_step"]
    # The seed is really used: another one gives another run.
    assert c["train_loss"] != a["train_loss"]
    losses_a = [r["loss"] for r in read_log(tmp_path / "a") if "loss" in r]
    losses_b = [r["loss"] for r in read_log(tmp_path / "b") if "loss" in r]
    assert losses_a == losses_b
