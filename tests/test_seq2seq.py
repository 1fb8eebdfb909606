"""`task: seq2seq` (lmctl.tasks.seq2seq): T5 learns a text-to-text task, evaluated by generation.

The learning test runs the shipped configs/finetune/sort-t5.yaml through the CLI: a tiny
T5 built from config, with a Unigram tokenizer trained on the data, must sort unseen word
lists (exact match >= 0.9 on 200 dev lists). That proves in one go that targets become
labels, that generation runs in evaluation and `predict`, and that the metrics compare
the right texts: `predict` and `evaluate` on the kept model must reproduce the exact
match that training reported. Smaller tests check the encoding by hand (source_prefix,
eos, truncation reports, label padding) and the metrics on hand-made predictions.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest

from helpers import REPO, Recorder, explain
from helpers import cli as _cli
from lmctl import config as config_lib
from scripts.data.make_sort_data import make_rows, make_splits

CONFIG = REPO / "configs" / "finetune" / "sort-t5.yaml"
DATA = REPO / "configs" / "finetune" / "data"

cli = partial(_cli, code=None)  # each test asserts, and explains, the exit code itself


def make_task(console=None, **training):
    from lmctl.tasks.seq2seq import Seq2SeqTask

    cfg = config_lib.load_config(None, base={
        "task": "seq2seq",
        "model": {"from_scratch": {"family": "t5", "size": "tiny"}},
        "data": {"text_column": "source", "target_column": "target", "source_prefix": "sort: "},
        "training": {"max_length": 24, "max_target_length": 16, **training},
    })
    return Seq2SeqTask(cfg, console or Recorder())


def dataset(rows: list[dict]):
    from datasets import Dataset

    return Dataset.from_list([{"source": r["source"], "target": r["target"]} for r in rows])


@pytest.fixture(scope="module")
def tokenizer():
    """The tokenizer a from-scratch run trains: Unigram on the task's texts (sources and targets)."""
    from lmctl.tokenizer_training import train_tokenizer

    return train_tokenizer("t5", list(make_task().texts(dataset(make_rows(500, seed=5)))), 400, 1)


# ---- data --------------------------------------------------------------------------------

def test_shipped_sort_data_is_the_generators_output():
    train, dev = make_splits(2000, 200, seed=0)
    assert (DATA / "sort_train.jsonl").read_text(encoding="utf-8") == "".join(json.dumps(r) + "\n" for r in train)
    assert (DATA / "sort_dev.jsonl").read_text(encoding="utf-8") == "".join(json.dumps(r) + "\n" for r in dev)
    assert not {r["source"] for r in dev} & {r["source"] for r in train}


def test_tokenizer_texts_are_prefixed_sources_and_targets():
    rows = [{"source": "pig, ant, cat", "target": "ant, cat, pig"},
            {"source": "owl, eel, bee", "target": "bee, eel, owl"}]
    assert list(make_task().texts(dataset(rows))) == [
        "sort: pig, ant, cat", "ant, cat, pig", "sort: owl, eel, bee", "bee, eel, owl"]


def test_encode_applies_the_prefix_and_appends_eos(tokenizer):
    rows = [{"source": "pig, ant, cat", "target": "ant, cat, pig"}]
    task = make_task()
    task = task.bind(tokenizer)
    enc = task.encode(dataset(rows), "eval", "dev.jsonl")[0]
    source_ids = tokenizer("sort: pig, ant, cat", add_special_tokens=False)["input_ids"]
    target_ids = tokenizer("ant, cat, pig", add_special_tokens=False)["input_ids"]
    assert enc["input_ids"] == source_ids + [tokenizer.eos_token_id]
    assert enc["labels"] == target_ids + [tokenizer.eos_token_id]
    assert enc["attention_mask"] == [1] * len(enc["input_ids"])
    assert enc["reference"] == "ant, cat, pig"  # metrics compare with the text itself
    # Words are whole pieces (the data's commas make the Unigram trainer learn them).
    assert tokenizer.convert_ids_to_tokens(target_ids) == ["▁ant", ",", "▁cat", ",", "▁pig"]
    # predict: the same source encoding, no targets needed.
    pred = task.encode(dataset(rows).remove_columns(["target"]), "predict", "in.jsonl")[0]
    assert pred["input_ids"] == enc["input_ids"] and "labels" not in pred


def test_truncation_of_sources_and_targets_is_reported(tokenizer):
    console = Recorder()
    task = make_task(console, max_length=10, max_target_length=4)
    rows = [{"source": "pig, ant, cat, owl", "target": "ant, cat, owl, pig"},  # both too long
            {"source": "ant", "target": "ant"}]                               # both fit
    task = task.bind(tokenizer)
    encoded = task.encode(dataset(rows), "train", "train.jsonl")
    long = encoded[0]
    assert len(long["input_ids"]) == 10 and long["input_ids"][-1] == tokenizer.eos_token_id
    assert len(long["labels"]) == 4 and long["labels"][-1] == tokenizer.eos_token_id
    assert encoded[1]["labels"] == tokenizer("ant")["input_ids"]
    assert console.warnings == [
        "train.jsonl (sources, column 'source'): 1 of 2 examples (50.0%) are longer than max_length=10 tokens "
        "and were truncated",
        "train.jsonl (targets, column 'target'): 1 of 2 examples (50.0%) are longer than max_target_length=4 "
        "tokens and were truncated",
    ]


def test_collate_pads_labels_to_their_own_width_with_minus_100(tokenizer):
    task = make_task()
    rows = [{"source": "pig, ant, cat, owl, eel", "target": "ant"}, {"source": "bee", "target": "bee, cat, dog"}]
    task = task.bind(tokenizer)
    features = list(task.encode(dataset(rows), "train", "train.jsonl"))
    batch = task.collate([{k: f[k] for k in ("input_ids", "attention_mask", "labels")} for f in features])
    n_src = [len(f["input_ids"]) for f in features]
    n_tgt = [len(f["labels"]) for f in features]
    assert batch["input_ids"].shape == (2, max(n_src)) and batch["labels"].shape == (2, max(n_tgt))
    assert batch["labels"][0, n_tgt[0]:].eq(-100).all() and batch["labels"][0, :n_tgt[0]].ne(-100).all()
    assert batch["attention_mask"][1].tolist() == [1] * n_src[1] + [0] * (max(n_src) - n_src[1])
    assert batch["input_ids"][1, n_src[1]:].eq(tokenizer.pad_token_id).all()


# ---- metrics -----------------------------------------------------------------------------

def test_generation_metrics_on_hand_made_predictions():
    from lmctl.tasks.lm_common import exact_match, text_metrics

    predictions = ["the cat sat on the mat", "a b", "  ant,  bee "]
    references = ["the cat sat on the mat", "a c", "ant, bee"]
    result = text_metrics(predictions, references)
    # Exact match normalises whitespace only: rows 1 and 3 match.
    assert result["exact_match"] == pytest.approx(2 / 3)
    assert exact_match(["Ant"], ["ant"]) == 0.0 and exact_match(["ant."], ["ant"]) == 0.0
    # ROUGE F1 per row, averaged: row 2 has 1 of 2 unigrams right (P = R = 1/2), no bigram, LCS 1;
    # row 3 is "ant bee" against itself once punctuation is dropped.
    assert result["rouge1"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert result["rouge2"] == pytest.approx((1 + 0 + 1) / 3)
    assert result["rougeL"] == pytest.approx((1 + 0.5 + 1) / 3)
    # Corpus BLEU in [0, 100] on 13a tokens ("ant , bee"): n-gram matches over all rows are 10/11,
    # 7/8, 5/5 and 3/3 for n = 1..4, and 11 output tokens against 11 reference tokens (no brevity
    # penalty), so BLEU is 100 times the geometric mean of the four precisions.
    assert result["bleu"] == pytest.approx(100 * (10 / 11 * 7 / 8 * 1 * 1) ** (1 / 4))
    assert text_metrics(["a cat, a dog"], ["a cat, a dog"])["bleu"] == pytest.approx(100.0)
    # Corpus BLEU needs 4-grams: a single output shorter than four tokens scores 0 even when right.
    assert text_metrics(["ant, bee"], ["ant, bee"])["bleu"] == 0.0


def test_generation_metrics_stop_at_eos_and_skip_padding(tokenizer):
    from lmctl.tasks.lm_common import generation_metrics

    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    words = tokenizer("ant, bee", add_special_tokens=False)["input_ids"]
    # T5 starts from pad; anything after eos (and -100 cross-process padding) is not output.
    generated = [[pad] + words + [eos] + words, [pad] + words[:1] + [eos, pad, -100]]
    result = generation_metrics(tokenizer, generated, ["ant, bee", "ant, bee"])
    assert result["exact_match"] == 0.5
    assert result["gen_len"] == (len(words) + 1) / 2


# ---- end to end --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sort_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seq2seq") / "sort-t5"
    result = cli("finetune", CONFIG, "--set", f"output_dir={out}")
    assert result.exit_code == 0, explain(result)
    return out


def test_tiny_t5_learns_to_sort(sort_run):
    metrics = json.loads((sort_run / "metrics.json").read_text())
    # Measured over 3 seeds: exact match 0.85-0.98 after 100 steps, 1.0 after 200; chance is ~0.
    assert metrics["eval_exact_match"] >= 0.9, metrics
    assert metrics["eval_rougeL"] >= 0.95 and metrics["eval_bleu"] >= 90
    assert metrics["eval_loss"] < 0.1
    assert metrics["best_metric"] == "rougeL"
    log = [json.loads(line) for line in (sort_run / "train_log.jsonl").read_text().splitlines()]
    evals = [row for row in log if "eval_exact_match" in row]
    assert len(evals) == 2 and evals[0]["eval_loss"] > evals[-1]["eval_loss"]
    train_losses = [row["loss"] for row in log if "loss" in row]
    assert train_losses[-1] < train_losses[0] / 10


def test_predict_and_evaluate_reproduce_the_reported_exact_match(sort_run, tmp_path):
    metrics = json.loads((sort_run / "metrics.json").read_text())
    dev = [json.loads(line) for line in (DATA / "sort_dev.jsonl").read_text().splitlines()]

    out = tmp_path / "pred.jsonl"
    result = cli("predict", "--model", sort_run, "--input", DATA / "sort_dev.jsonl", "--output", out)
    assert result.exit_code == 0, explain(result)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    # In input order (inference runs longest first), the source echoed next to its output.
    assert [r["source"] for r in records] == [d["source"] for d in dev]
    assert set(records[0]) == {"source", "generated"}
    hits = sum(r["generated"].strip() == d["target"] for r, d in zip(records, dev))
    assert hits / len(dev) == pytest.approx(metrics["eval_exact_match"])

    report = tmp_path / "eval.json"
    result = cli("evaluate", "--model", sort_run, "--data", DATA / "sort_dev.jsonl", "--output", report)
    assert result.exit_code == 0, explain(result)
    scored = json.loads(report.read_text())["metrics"]
    for name in ("exact_match", "rouge1", "rouge2", "rougeL", "bleu", "gen_len"):
        assert scored[name] == pytest.approx(metrics[f"eval_{name}"]), name
    assert scored["loss"] == pytest.approx(metrics["eval_loss"], rel=1e-4)


def test_predict_from_stdin_sorts_new_lists(sort_run):
    from typer.testing import CliRunner

    from lmctl.cli import app

    lines = ["pig, cat, eel, ant", "owl, bee, dog"]
    result = CliRunner().invoke(app, ["predict", "--model", str(sort_run), "--input", "-"],
                                input="\n".join(lines) + "\n")
    assert result.exit_code == 0, explain(result)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["source"] for r in records] == lines
    assert [r["generated"] for r in records] == ["ant, cat, eel, pig", "bee, dog, owl"]


def finetune_checkpoint(model: Path, train: Path, dev: Path, out: Path, steps: int, max_new_tokens: int):
    """The sort config on other data, starting from a T5 checkpoint instead of from scratch."""
    overrides = [f"model.name_or_path={model}", "model.from_scratch=null", f"data.train_file={train}",
                 f"data.validation_file={dev}", f"training.max_steps={steps}", "training.batch_size=8",
                 "training.eval_strategy=no", f"generation.max_new_tokens={max_new_tokens}", f"output_dir={out}"]
    result = cli("finetune", CONFIG, *[x for o in overrides for x in ("--set", o)])
    assert result.exit_code == 0, explain(result)
    return result


def test_finetune_from_a_checkpoint(tiny_models, tmp_path):
    rows = make_rows(48, seed=3)
    train, dev = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows[:40]))
    dev.write_text("".join(json.dumps(r) + "\n" for r in rows[40:]))
    out = tmp_path / "run"
    result = finetune_checkpoint(tiny_models["t5"], train, dev, out, steps=4, max_new_tokens=4)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["completed_steps"] == 4
    # The checkpoint's own tokenizer is kept (no tokenizer is trained for a checkpoint).
    assert "tokenizer: trained" not in result.stderr + result.stdout
    report = tmp_path / "eval.json"
    result = cli("evaluate", "--model", out, "--output", report)
    assert result.exit_code == 0, explain(result)
    scored = json.loads(report.read_text())
    assert scored["examples"] == 8 and 0 <= scored["metrics"]["gen_len"] <= 4


def test_numeric_looking_targets_in_a_csv_stay_text(tiny_models, tmp_path):
    """A CSV parser would read a target column of digits as integers; targets are text to generate."""
    lines = ["source,target"] + [f"{' '.join(r['source'].split(', '))},{len(r['source'].split(', '))}"
                                 for r in make_rows(24, seed=5)]  # count the words: targets "3" ... "5"
    data = tmp_path / "count.csv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    finetune_checkpoint(tiny_models["t5"], data, data, out, steps=2, max_new_tokens=3)
    report = tmp_path / "eval.json"
    result = cli("evaluate", "--model", out, "--data", data, "--output", report)
    assert result.exit_code == 0, explain(result)
    assert json.loads(report.read_text())["examples"] == 24


# ---- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["no_target_column", "empty_target", "bert_from_scratch"])
def test_bad_input_is_one_clear_line(case, tmp_path):
    rows = make_rows(20, seed=4)
    overrides = []
    if case == "no_target_column":
        rows = [{"source": r["source"], "answer": r["target"]} for r in rows]
        expected = "no column 'target' (from data.target_column)"
    elif case == "empty_target":
        rows[6]["target"] = ""
        expected = "row 7: empty text in column 'target'"
    else:
        overrides = ["--set", "model.from_scratch.family=bert", "--set", "model.from_scratch.overrides={}"]
        expected = "family 'bert' has no model for this task"
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = cli("finetune", CONFIG, "--set", f"data.train_file={train}", "--set", f"data.validation_file={train}",
                 "--set", f"output_dir={tmp_path / 'run'}", *overrides)
    assert result.exit_code == 2, explain(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
