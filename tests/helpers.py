"""Shared test helpers: plain functions and constants (the fixtures live in conftest.py)."""

from __future__ import annotations

import csv
import json
import os
import random
import traceback
from pathlib import Path

import yaml
from typer.testing import CliRunner

from lmctl.cli import app
from lmctl.console import Console

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LMCTL_SHARED_DATA", REPO.parent / "shared" / "data"))


def cli(*args, code: int | None = 0, input: str | None = None):
    """Run lmctl in process (torch imports once per session), stderr kept apart from stdout.

    `code`: the exit code to assert; None leaves the checking to the caller.
    """
    result = CliRunner().invoke(app, [str(a) for a in args], input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        traceback.print_exception(result.exception)  # shown by pytest when the test fails
    if code is not None:
        assert result.exit_code == code, (
            f"lmctl {' '.join(map(str, args))} exited {result.exit_code}, expected {code}\n"
            f"stderr:\n{result.stderr}\nexception: {result.exception!r}"
        )
    return result


def explain(result) -> str:
    """The tails of a CliRunner result's stdout and stderr, for an assertion message."""
    return f"exit {result.exit_code}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"


def set_args(overrides: list[str]) -> list[str]:
    """`--set` before each override, as the command line takes them."""
    return [x for o in overrides for x in ("--set", o)]


# Enough steps for a from-scratch model to learn the sample reviews' commonest tokens,
# few enough for seconds on two cores. Two evaluations show the eval loss falling.
PRETRAIN_SHORT = [
    "training.max_steps=24", "training.max_length=32", "training.eval_strategy=steps",
    "training.eval_steps=12", "training.logging_steps=1",
]


class Recorder(Console):
    """A Console that keeps its warnings (truncation reports) and log lines for the test to read."""

    def __init__(self):
        super().__init__(enabled=False)
        self.warnings: list[str] = []
        self.logs: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def log(self, message: str) -> None:
        self.logs.append(message)


# ---- generated sentiment data for the text-classification runs ------------------------------

# Words the tiny tokenizers were trained on (tests/tiny_models.py), so they are whole tokens.
SUBJECTS = ["the cat", "a dog", "my neighbour", "the old farmer", "our teacher", "the chef", "my sister",
            "the band", "a stranger", "the engineer"]
PLACES = ["in the park", "at the station", "near the river", "in the city", "on the farm", "at school",
          "by the sea", "in the kitchen"]
TAILS = ["", " yesterday", " after dinner", " in the morning", " again today"]
POSITIVE = ["great", "happy", "brilliant", "warm", "gentle"]
NEGATIVE = ["terrible", "boring", "cold", "noisy", "lazy"]


def sentence(rng: random.Random, adjective: str) -> str:
    """A short generated sentence around `adjective`."""
    s = f"{rng.choice(SUBJECTS)} was {adjective} {rng.choice(PLACES)}{rng.choice(TAILS)}."
    return s[0].upper() + s[1:]


def sentiment_rows(n: int, seed: int) -> list[dict]:
    """Balanced rows; the label is decided by the adjective alone."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        rows.append({"sentence": sentence(rng, rng.choice(POSITIVE if label == "positive" else NEGATIVE)),
                     "label": label})
    rng.shuffle(rows)
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Write rows as .tsv / .csv / .jsonl / .txt (first column only), by the file's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif suffix == ".txt":
        path.write_text("".join(next(iter(r.values())) + "\n" for r in rows), encoding="utf-8")
    else:
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t" if suffix == ".tsv" else ",",
                                    lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    return path


EPOCHS, BATCH = 8, 8  # write_config's training defaults


def write_config(path: Path, model: Path, train: Path, dev: Path, output_dir: Path, **sections) -> Path:
    """A text-classification config (text column `sentence`, labels `label`); `sections` update its parts."""
    cfg = {
        "task": "text-classification",
        "model": {"name_or_path": str(model)},
        "data": {"train_file": str(train), "validation_file": str(dev), "text_column": "sentence",
                 "label_column": "label"},
        # Tiny random models need far more than a pretrained one's 5e-5 to learn in 100 steps, and
        # warmup: without it the tiny BERT stayed at chance on the pair task for 8 of 8 inits.
        "training": {"num_epochs": EPOCHS, "batch_size": BATCH, "learning_rate": 3.0e-3, "warmup_ratio": 0.1,
                     "max_length": 48, "logging_steps": 1, "seed": 13},
        "output_dir": str(output_dir),
    }
    for section, values in sections.items():
        cfg[section].update(values)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def plain_scores(model_dir: Path, texts: list[str]) -> list[dict]:
    """Each text's label → probability from transformers alone (`from_pretrained` of `model_dir`),
    one text at a time: no batching, no padding, no lmctl."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    scores = []
    with torch.no_grad():
        for text in texts:
            probs = model(**tokenizer(text, return_tensors="pt")).logits.softmax(-1)[0]
            scores.append(dict(zip(labels, probs.tolist())))
    return scores
