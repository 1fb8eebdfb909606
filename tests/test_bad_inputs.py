"""Bad inputs: one line on stderr, exit code 2, nothing touched.

Each case builds one broken input in a fresh folder and runs the CLI on it. What every
case must show is the contract of `lmctl.errors.UserError`: exit code 2, exactly one
stderr line starting with `error:` that names the file / key / row at fault, no
traceback, nothing on stdout, and every file that existed before (data, configs, the
trained run, an old output directory) byte-for-byte as it was, with no new files.
A few cases also run as a real process, where library warnings are not captured by
pytest and would show up on stderr.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import yaml
from typer.testing import CliRunner

from helpers import sentiment_rows, write_rows
from lmctl.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread: see conftest.py


@pytest.fixture(scope="module")
def trained(tiny_models, tmp_path_factory) -> Path:
    """A finetuned run (labels negative/positive, text column `sentence`) for evaluate/predict cases."""
    root = tmp_path_factory.mktemp("bad-inputs-run")
    env = Env(root, tiny_models, None)
    result = CliRunner().invoke(app, ["finetune", str(env.config(training={"max_steps": 2}))])
    assert result.exit_code == 0, result.stderr
    return root / "out"


@dataclass
class Env:
    """A fresh folder with a good train/dev pair; each case breaks one thing."""

    dir: Path
    models: dict
    run: Path | None
    stdin: str | None = None
    train: Path = field(init=False)
    dev: Path = field(init=False)

    def __post_init__(self):
        self.train = write_rows(self.dir / "train.tsv", sentiment_rows(24, 1))
        self.dev = write_rows(self.dir / "dev.tsv", sentiment_rows(12, 2))

    def config(self, name: str = "config.yaml", **sections) -> Path:
        cfg = {
            "task": "text-classification",
            "model": {"name_or_path": str(self.models["bert"])},
            "data": {"train_file": str(self.train), "validation_file": str(self.dev), "text_column": "sentence"},
            "training": {"batch_size": 8, "max_length": 32, "learning_rate": 1.0e-3},
            "output_dir": str(self.dir / "out"),
        }
        for section, values in sections.items():
            if isinstance(values, dict):
                cfg.setdefault(section, {}).update(values)
            else:
                cfg[section] = values
        return self.write(name, yaml.safe_dump(cfg, sort_keys=False))

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    def finetune_with(self, **data) -> list[str]:
        return ["finetune", str(self.config(data=data))]

    def evaluate(self, *args: str) -> list[str]:
        return ["evaluate", "--model", str(self.run), *args]


@dataclass
class Case:
    id: str
    build: Callable[[Env], list[str]]
    expect: tuple[str, ...]  # substrings of the one error line
    subprocess: bool = False  # also run it as a real process


def _copy_run(env: Env, name: str) -> Path:
    target = env.dir / name
    shutil.copytree(env.run, target)
    return target


def _pickle_run(env: Env) -> Path:
    """A model dir whose weights are only a pickle file (never loaded: the bytes are junk)."""
    target = _copy_run(env, "pickled")
    for weights in target.glob("*.safetensors"):
        weights.unlink()
    (target / "pytorch_model.bin").write_bytes(b"not really a pickle")
    return target


def _cut_short_run(env: Env) -> Path:
    """A run directory whose model.safetensors lost its second half (a full disk, an interrupted copy)."""
    target = _copy_run(env, "cut")
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return target


def _cut_short_json(env: Env, name: str) -> Path:
    target = _copy_run(env, "cut-json")
    path = target / name
    path.write_bytes(path.read_bytes()[:40])
    return target


def _existing_output(env: Env) -> list[str]:
    env.write("out/results.txt", "earlier results\n")
    return ["finetune", str(env.config())]


def _stdin(env: Env, text: str, *args: str) -> list[str]:
    env.stdin = text
    return ["predict", "--model", str(env.run), *args]


# Broken file contents; row numbers in messages count data rows (the header is not a row).
BAD_YAML = "task: text-classification\ntraining:\n  batch_size: [8\n  seed: 1\n"
LATIN1 = b"sentence\tlabel\nThe cat was great.\tpositive\nA dog was cold.\tnegative\nThe caf\xe9 was warm.\tpositive\n"
BLANK_TEXT = "sentence\tlabel\nThe cat was great.\tpositive\n\tnegative\nA dog was cold.\tnegative\n"
NO_LABEL = "sentence,label\nThe cat was great.,positive\nA dog was cold.,negative\nThe chef was warm.,\n"
MIXED_LABELS = ('{"sentence": "The cat was great.", "label": "positive"}\n'
                '{"sentence": "A dog was cold.", "label": 0}\n')
NUMBER_TEXT = ('{"sentence": "The cat was great.", "label": "positive"}\n'
               '{"sentence": 7, "label": "negative"}\n')
ONE_LABEL = "sentence\tlabel\nThe cat was great.\tpositive\nThe chef was warm.\tpositive\n"
UNSEEN_LABEL = "sentence\tlabel\nThe cat was great.\tpositive\nA dog was cold.\tnegative\nIt was quiet.\tneutral\n"
# Multi-label rows: comma-separated labels in a TSV cell (the sentiment rows' single labels are sets of one).
ML_UNSEEN_LABEL = "sentence\tlabel\nThe cat was great.\tpositive\nA dog was cold.\tnegative,sport\n"
ML_UNREADABLE = "sentence\tlabel\nThe cat was great.\tpositive\nA dog was cold.\t[negative, positive\n"
ML_NOT_A_LIST = ('{"sentence": "The cat was great.", "label": {"positive": 1}}\n'
                 '{"sentence": "A dog was cold.", "label": {"negative": 1}}\n')


def _finetune(e: Env, *extra: str, **sections) -> list[str]:
    return ["finetune", str(e.config(**sections)), *extra]


def _train_file(e: Env, name: str, content: str | bytes) -> list[str]:
    return e.finetune_with(train_file=str(e.write(name, content)))


def _multi_label(e: Env, **data) -> list[str]:
    return _finetune(e, task="multi-label-classification", data=data)


def _model(e: Env, name_or_path) -> list[str]:
    return _finetune(e, model={"name_or_path": str(name_or_path)})


CASES = [
    # ---- config ----
    Case("malformed-yaml", lambda e: ["finetune", str(e.write("c.yaml", BAD_YAML))],
         ("c.yaml", "malformed YAML", "line"), subprocess=True),
    Case("yaml-not-a-mapping", lambda e: ["finetune", str(e.write("c.yaml", "- task\n- model\n"))],
         ("c.yaml", "mapping")),
    Case("config-not-utf8", lambda e: ["finetune", str(e.write("c.yaml", b"task: text-classification\n# caf\xe9\n"))],
         ("c.yaml", "UTF-8")),
    Case("missing-config", lambda e: ["finetune", str(e.dir / "nope.yaml")], ("nope.yaml", "not found")),
    Case("unknown-key", lambda e: _finetune(e, training={"learnin_rate": 0.1}),
         ("training.learnin_rate", "did you mean 'learning_rate'")),
    Case("wrong-type", lambda e: _finetune(e, training={"batch_size": "eight"}), ("training.batch_size",)),
    Case("zero-batch-size", lambda e: _finetune(e, training={"batch_size": 0}),
         ("training.batch_size", "greater than 0")),
    Case("negative-batch-size", lambda e: _finetune(e, "--set", "training.batch_size=-8"),
         ("training.batch_size", "greater than 0")),
    Case("zero-max-train-samples", lambda e: _finetune(e, data={"max_train_samples": 0}),
         ("data.max_train_samples",)),
    Case("missing-task", lambda e: ["finetune", str(e.write("c.yaml", "model:\n  name_or_path: x\n"))],
         ("missing required key 'task'",)),
    Case("unknown-task", lambda e: _finetune(e, task="text-clasification"),
         ("unknown task 'text-clasification'", "did you mean 'text-classification'")),
    Case("eval-steps-missing", lambda e: _finetune(e, training={"eval_strategy": "steps"}),
         ("training.eval_strategy", "training.eval_steps")),
    Case("bad-set-syntax", lambda e: _finetune(e, "--set", "foo"), ("--set 'foo'", "KEY=VALUE")),
    Case("set-unknown-key", lambda e: _finetune(e, "--set", "training.epochs=2"), ("training.epochs",)),
    Case("metric-for-best-unknown", lambda e: _finetune(e, training={"metric_for_best": "acc"}),
         ("training.metric_for_best", "'acc'", "accuracy")),
    # ---- data files ----
    Case("missing-train-file", lambda e: e.finetune_with(train_file=str(e.dir / "missing.tsv")),
         ("data.train_file", "missing.tsv", "not found")),
    Case("missing-validation-file", lambda e: e.finetune_with(validation_file=str(e.dir / "gone.tsv")),
         ("data.validation_file", "gone.tsv")),
    Case("empty-file", lambda e: _train_file(e, "empty.tsv", ""), ("data.train_file", "empty.tsv", "empty")),
    Case("header-only", lambda e: _train_file(e, "head.csv", "sentence,label\n"),
         ("data.train_file", "head.csv", "no data rows")),
    Case("unsupported-extension", lambda e: _train_file(e, "train.xlsx", "x"),
         ("train.xlsx", "unsupported file type '.xlsx'")),
    Case("missing-text-column", lambda e: e.finetune_with(text_column="text"),
         ("'text'", "data.text_column", "columns are: sentence, label")),
    Case("missing-label-column-in-dev",
         lambda e: e.finetune_with(validation_file=str(e.write("dev2.tsv", "sentence\tgold\nThe cat.\tpositive\n"))),
         ("dev2.tsv", "'label'", "columns are: sentence, gold")),
    Case("non-utf8-bytes", lambda e: _train_file(e, "latin1.tsv", LATIN1), ("latin1.tsv", "line 4", "UTF-8"),
         subprocess=True),
    Case("empty-text-row", lambda e: _train_file(e, "blank.tsv", BLANK_TEXT),
         ("blank.tsv", "row 2", "empty text", "sentence")),
    Case("missing-label-row", lambda e: _train_file(e, "nolabel.csv", NO_LABEL), ("row 3", "missing label")),
    Case("mixed-label-types", lambda e: _train_file(e, "mixed.jsonl", MIXED_LABELS), ("mixed.jsonl", "'label'", "row 2")),
    Case("number-as-text", lambda e: _train_file(e, "num.jsonl", NUMBER_TEXT), ("num.jsonl", "'sentence'", "row 2")),
    Case("single-label", lambda e: _train_file(e, "one.tsv", ONE_LABEL), ("only one label", "'positive'")),
    Case("label-names-incomplete", lambda e: e.finetune_with(label_names=["negative", "neutral"]),
         ("data.label_names", "'positive'")),
    Case("multi-label-threshold-out-of-range",
         lambda e: _finetune(e, task="multi-label-classification", training={"threshold": 1.5}),
         ("training.threshold", "between 0 and 1", "1.5"), subprocess=True),
    Case("multi-label-unreadable-labels",
         lambda e: _multi_label(e, train_file=str(e.write("ml.tsv", ML_UNREADABLE))),
         ("ml.tsv", "row 2", "'[negative, positive'", "JSON list")),
    Case("multi-label-labels-not-a-list",
         lambda e: _multi_label(e, train_file=str(e.write("ml.jsonl", ML_NOT_A_LIST))),
         ("ml.jsonl", "row 1", "cannot read", "label")),
    Case("multi-label-unseen-label-at-evaluation",
         lambda e: _multi_label(e, validation_file=str(e.write("mldev.tsv", ML_UNSEEN_LABEL))),
         ("mldev.tsv", "row 2", "'sport'", "not seen in training")),
    Case("hub-dataset-offline", lambda e: e.finetune_with(train_file=None, dataset_name="glue"),
         ("data.dataset_name", "hub")),
    # ---- output directory ----
    Case("existing-output-dir", _existing_output, ("output_dir", "not empty", "--overwrite")),
    Case("output-dir-is-a-file", lambda e: _finetune(e, output_dir=str(e.write("taken", "x"))),
         ("output_dir", "taken", "is a file")),
    # ---- models ----
    Case("missing-model-path", lambda e: _model(e, e.dir / "no" / "model"), ("model.name_or_path", "not found")),
    Case("model-dir-without-config", lambda e: _model(e, e.dir), ("model.name_or_path", "config.json")),
    Case("hub-id-offline", lambda e: _model(e, "bert-base-uncased"), ("model.name_or_path", "bert-base-uncased", "hub")),
    Case("pickle-only-model-finetune", lambda e: _model(e, _pickle_run(e)), ("pickled", "pickle", "safetensors"),
         subprocess=True),
    Case("pickle-only-model-evaluate", lambda e: ["evaluate", "--model", str(_pickle_run(e)), "--data", str(e.dev)],
         ("pickled", "pickle", "safetensors")),
    Case("weights-cut-short-predict",
         lambda e: ["predict", "--model", str(_cut_short_run(e)), "--input", str(e.dev)],
         ("--model", "cut/model.safetensors", "damaged or cut short"), subprocess=True),
    Case("weights-cut-short-evaluate",
         lambda e: ["evaluate", "--model", str(_cut_short_run(e)), "--data", str(e.dev)],
         ("--model", "cut/model.safetensors", "damaged or cut short")),
    Case("weights-cut-short-finetune", lambda e: _model(e, _cut_short_run(e)),
         ("model.name_or_path", "cut/model.safetensors", "damaged or cut short")),
    Case("tokenizer-json-cut-short-predict",
         lambda e: ["predict", "--model", str(_cut_short_json(e, "tokenizer.json")), "--input", str(e.dev)],
         ("--model", "cut-json/tokenizer.json", "damaged or cut short")),
    Case("config-json-cut-short-evaluate",
         lambda e: ["evaluate", "--model", str(_cut_short_json(e, "config.json")), "--data", str(e.dev)],
         ("--model", "cut-json/config.json", "damaged or cut short")),
    # ---- evaluate / predict ----
    Case("label-unseen-at-evaluation", lambda e: e.evaluate("--data", str(e.write("dev3.tsv", UNSEEN_LABEL))),
         ("dev3.tsv", "row 3", "'neutral'", "not seen in training"), subprocess=True),
    Case("evaluate-missing-model", lambda e: ["evaluate", "--model", str(e.dir / "no-run"), "--data", str(e.dev)],
         ("--model", "no-run")),
    Case("evaluate-missing-data", lambda e: e.evaluate("--data", str(e.dir / "nodev.tsv")), ("--data", "nodev.tsv")),
    Case("evaluate-unknown-gate-metric", lambda e: e.evaluate("--data", str(e.dev), "--fail-under", "acc=0.5"),
         ("--fail-under", "'acc'", "accuracy")),
    Case("evaluate-bad-gate-syntax", lambda e: e.evaluate("--data", str(e.dev), "--fail-under", "accuracy"),
         ("--fail-under 'accuracy'",)),
    Case("predict-missing-model", lambda e: ["predict", "--model", str(e.dir / "no-run"), "--input", str(e.dev)],
         ("--model", "no-run")),
    Case("predict-missing-input", lambda e: ["predict", "--model", str(e.run), "--input", str(e.dir / "in.txt")],
         ("--input", "in.txt")),
    Case("predict-wrong-column",
         lambda e: ["predict", "--model", str(e.run), "--input", str(e.write("in.csv", "text\nhello\n"))],
         ("in.csv", "'sentence'", "columns are: text")),
    Case("predict-empty-stdin", lambda e: _stdin(e, ""), ("stdin", "no input")),
    Case("predict-bad-json-stdin", lambda e: _stdin(e, '{"sentence": "fine"}\n{"sentence": \n'),
         ("stdin", "line 2", "JSON")),
]


def snapshot(*roots: Path) -> dict:
    files = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file():
                files[str(path)] = path.read_bytes()
    return files


def check_one_error_line(stderr: str, stdout: str, expect: tuple[str, ...]) -> None:
    assert "Traceback" not in stderr + stdout
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got:\n{stderr}"
    assert lines[0].startswith("error: ")
    for part in expect:
        assert part in lines[0], f"{part!r} not in {lines[0]!r}"
    assert stdout == ""


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tiny_models, trained, tmp_path):
    env = Env(tmp_path, tiny_models, trained)
    argv = case.build(env)
    before = snapshot(tmp_path, trained, *tiny_models.values())
    result = CliRunner().invoke(app, argv, input=env.stdin)
    assert result.exit_code == 2, f"exit {result.exit_code}\n{result.stderr}\n{result.exception!r}"
    assert isinstance(result.exception, SystemExit)  # not an escaped exception
    check_one_error_line(result.stderr, result.stdout, case.expect)
    assert snapshot(tmp_path, trained, *tiny_models.values()) == before


SUBPROCESS_CASES = [c for c in CASES if c.subprocess]


@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=[c.id for c in SUBPROCESS_CASES])
def test_bad_input_in_a_real_process(case, tiny_models, trained, tmp_path):
    env = Env(tmp_path, tiny_models, trained)
    argv = case.build(env)
    before = snapshot(tmp_path, trained)
    proc = subprocess.run([sys.executable, "-m", "lmctl", *argv], input=env.stdin or "", capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr
    check_one_error_line(proc.stderr, proc.stdout, case.expect)
    assert snapshot(tmp_path, trained) == before


def test_debug_keeps_the_traceback(tiny_models, trained, tmp_path):
    """--debug is the escape hatch: the same bad input raises instead of printing one line."""
    from lmctl.errors import UserError

    env = Env(tmp_path, tiny_models, trained)
    result = CliRunner().invoke(app, ["--debug", *env.finetune_with(text_column="text")])
    assert isinstance(result.exception, UserError)
    assert "text" in str(result.exception)


def test_table_is_large_enough():
    assert len(CASES) >= 20
    assert len({c.id for c in CASES}) == len(CASES)
