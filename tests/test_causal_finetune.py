"""`task: causal-lm` finetuning on prompt/completion pairs (data.prompt_column + completion_column).

Checked by hand on one example: the prompt's labels are -100 and nothing else is, and the
model's loss is the mean over completion tokens only. The learning test runs the shipped
configs/finetune/gpt2-prompt-completion.yaml: a tiny GPT-2 from scratch, with a byte-level
BPE tokenizer trained on the pairs, must complete "sort: <list> =" with the sorted list on
unseen lists (exact match >= 0.9), and `predict` / `evaluate` on the kept model must
reproduce the generation metrics training reported. Plain-text causal LM (pretraining) is
covered by test_pretrain.py and test_lm_predict.py, unchanged.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest

from helpers import REPO, Recorder, explain
from helpers import cli as _cli
from lmctl import config as config_lib
from lmctl.errors import UserError
from scripts.data.make_sort_data import make_rows

CONFIG = REPO / "configs" / "finetune" / "gpt2-prompt-completion.yaml"
DATA = REPO / "configs" / "finetune" / "data"
PAIR = {"prompt": "sort: pig, ant =", "completion": " ant, pig"}

cli = partial(_cli, code=None)  # each test asserts, and explains, the exit code itself


def make_task(console=None, pairs: bool = True, **training):
    from lmctl.tasks.causal_lm import CausalLMTask

    data = {"prompt_column": "prompt", "completion_column": "completion"} if pairs else {}
    cfg = config_lib.load_config(None, base={
        "task": "causal-lm", "model": {"from_scratch": {"family": "gpt2", "size": "tiny"}},
        "data": data, "training": {"max_length": 32, **training},
    })
    return CausalLMTask(cfg, console or Recorder())


def dataset(rows: list[dict]):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])


@pytest.fixture(scope="module")
def tokenizer():
    from lmctl.tokenizer_training import train_tokenizer

    return train_tokenizer("gpt2", list(make_task().texts(dataset(make_rows(500, seed=5)))), 320, 2)


# ---- masking -----------------------------------------------------------------------------

def test_prompt_tokens_are_masked_exactly(tokenizer):
    enc = make_task().bind(tokenizer).encode(dataset([PAIR]), "train", "train.jsonl")[0]
    eos = "<|endoftext|>"
    # Hand-written: bos (GPT-2's bos is its eos, the document separator), the prompt, the completion, eos.
    assert tokenizer.convert_ids_to_tokens(enc["input_ids"]) == [
        eos, "sort", ":", "Ġpig", ",", "Ġant", "Ġ=", "Ġant", ",", "Ġpig", eos]
    # Labels: -100 on bos + the 6 prompt tokens, then the completion and eos are learnt.
    assert enc["labels"][:7] == [-100] * 7
    assert enc["labels"][7:] == enc["input_ids"][7:]
    assert -100 not in enc["labels"][7:]
    assert enc["length"] == 11 and "prompt_length" not in enc


def test_loss_is_the_mean_over_completion_tokens(tokenizer):
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from lmctl.models import scratch_config

    task = make_task()
    rows = [PAIR, {"prompt": "sort: owl, eel, bee, cat =", "completion": " bee, cat, eel, owl"}]
    task = task.bind(tokenizer)
    features = list(task.encode(dataset(rows), "train", "train.jsonl"))
    batch = task.collate([{k: f[k] for k in ("input_ids", "labels")} for f in features])
    n0 = len(features[0]["input_ids"])
    assert batch["labels"][0, n0:].eq(-100).all()  # padding is never a target
    assert batch["attention_mask"][0].tolist() == [1] * n0 + [0] * (batch["input_ids"].shape[1] - n0)

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(scratch_config("gpt2", "tiny", {}, tokenizer, 32)).eval()
    with torch.no_grad():
        loss = model(**batch).loss
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # By hand: position t predicts token t+1; keep the completion and eos targets only.
    targets, nll = [], []
    for row, f in enumerate(features):
        prompt_len = 1 + len(tokenizer(rows[row]["prompt"], add_special_tokens=False)["input_ids"])
        for t in range(prompt_len, len(f["input_ids"])):
            targets.append(f["input_ids"][t])
            nll.append(F.cross_entropy(logits[row, t - 1], torch.tensor(f["input_ids"][t])))
    assert len(targets) == (3 + 1) + (7 + 1)  # " ant, pig" + eos, " bee, cat, eel, owl" + eos
    assert loss.item() == pytest.approx(torch.stack(nll).mean().item(), rel=1e-5)


def test_evaluation_batches_carry_left_padded_prompts(tokenizer):
    task = make_task()
    rows = [PAIR, {"prompt": "sort: owl, eel, bee, cat =", "completion": " bee, cat, eel, owl"}]
    task = task.bind(tokenizer)
    features = list(task.encode(dataset(rows), "eval", "dev.jsonl"))
    assert [f["reference"] for f in features] == [r["completion"] for r in rows]
    batch = task.eval_collate([dict(f) for f in features])
    prompts = [[tokenizer.bos_token_id] + tokenizer(r["prompt"], add_special_tokens=False)["input_ids"] for r in rows]
    width = max(map(len, prompts))
    assert batch["prompt_input_ids"].tolist() == [[tokenizer.pad_token_id] * (width - len(p)) + p for p in prompts]
    assert batch["prompt_attention_mask"].tolist() == [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
    assert batch["labels"].shape == batch["input_ids"].shape  # the whole examples, for the loss


def test_truncation_is_reported(tokenizer):
    console = Recorder()
    rows = [PAIR, {"prompt": "sort: owl, eel, bee, cat, pig, ant, dog =", "completion": " ant, bee"}]
    encoded = make_task(console, max_length=12).bind(tokenizer).encode(dataset(rows), "train", "train.jsonl")
    assert [len(x) for x in encoded["input_ids"]] == [11, 12]
    assert all(x == -100 for x in encoded[1]["labels"])  # this prompt alone fills the window
    assert console.warnings == [
        "train.jsonl: 1 of 2 examples (50.0%) are longer than max_length=12 tokens and were truncated",
        "train.jsonl: in 1 of 2 examples the prompt fills max_length=12 tokens: no completion token is left "
        "to learn from; raise training.max_length or shorten the prompts",
    ]


def test_columns_and_metrics_follow_the_data_kind():
    perplexity = ("loss", "perplexity", "tokens")
    generation = {"rouge1", "rouge2", "rougeL", "bleu", "exact_match", "gen_len"}
    pairs, plain = make_task(), make_task(pairs=False)
    assert pairs.columns(with_labels=True) == {"data.prompt_column": "prompt", "data.completion_column": "completion"}
    assert pairs.columns(with_labels=False) == {"data.prompt_column": "prompt", "data.completion_column": None}
    assert set(pairs.metric_names) == set(perplexity) | generation
    assert plain.columns(with_labels=True) == {"data.text_column": "text"} and tuple(plain.metric_names) == perplexity
    assert pairs.main_metric == plain.main_metric == "loss"


def test_pairs_cannot_be_streamed():
    from lmctl.tasks.causal_lm import CausalLMTask

    cfg = config_lib.load_config(None, base={
        "task": "causal-lm", "data": {"prompt_column": "p", "completion_column": "c", "streaming": True},
        "training": {"max_steps": 10}})
    with pytest.raises(UserError, match="data.streaming: prompt/completion pairs"):
        CausalLMTask(cfg, Recorder())


def test_prompt_without_completion_column_is_refused():
    with pytest.raises(UserError, match="prompt_column and data.completion_column go together"):
        config_lib.load_config(None, base={"task": "causal-lm", "data": {"prompt_column": "p"}})


# ---- end to end --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sort_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("causal") / "gpt2-sort"
    result = cli("finetune", CONFIG, "--set", f"output_dir={out}")
    assert result.exit_code == 0, explain(result)
    return out


def test_tiny_gpt2_learns_to_complete(sort_run):
    metrics = json.loads((sort_run / "metrics.json").read_text())
    # Measured over 3 seeds: exact match 0.35-0.45 after 250 steps, 0.995-1.0 after 500.
    assert metrics["eval_exact_match"] >= 0.9, metrics
    assert metrics["eval_rougeL"] >= 0.95
    # Perplexity is over completion tokens (and eos) only: 200 dev rows of 3-5 words, commas, eos.
    dev = [json.loads(line) for line in (DATA / "sort_dev.jsonl").read_text().splitlines()]
    words = sum(len(d["target"].split(", ")) for d in dev)
    assert metrics["eval_tokens"] == 2 * words  # per row: its words, a comma between each two, eos
    assert metrics["eval_perplexity"] < 1.5


def test_predict_and_evaluate_reproduce_the_reported_metrics(sort_run, tmp_path):
    metrics = json.loads((sort_run / "metrics.json").read_text())
    dev = [json.loads(line) for line in (DATA / "sort_dev.jsonl").read_text().splitlines()]
    out = tmp_path / "pred.jsonl"
    result = cli("predict", "--model", sort_run, "--input", DATA / "sort_dev.jsonl", "--output", out)
    assert result.exit_code == 0, explain(result)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in records] == [d["prompt"] for d in dev]  # input order, prompt echoed
    hits = sum(r["generated"].split() == d["completion"].split() for r, d in zip(records, dev))
    assert hits / len(dev) == pytest.approx(metrics["eval_exact_match"])

    report = tmp_path / "eval.json"
    result = cli("evaluate", "--model", sort_run, "--data", DATA / "sort_dev.jsonl", "--output", report)
    assert result.exit_code == 0, explain(result)
    scored = json.loads(report.read_text())["metrics"]
    for name in ("exact_match", "rouge1", "rougeL", "bleu", "gen_len", "tokens"):
        assert scored[name] == pytest.approx(metrics[f"eval_{name}"]), name
    assert scored["loss"] == pytest.approx(metrics["eval_loss"], rel=1e-4)


def test_predict_a_prompt_file_and_score_mode(sort_run, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("sort: pig, cat, eel, ant =\nsort: owl, bee, dog =\n")
    out = tmp_path / "gen.jsonl"
    result = cli("predict", "--model", sort_run, "--input", prompts, "--output", out)
    assert result.exit_code == 0, explain(result)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["generated"] for r in records] == [" ant, cat, eel, pig", " bee, dog, owl"]
    result = cli("predict", "--model", sort_run, "--input", prompts, "--output", out, "--mode", "score")
    assert result.exit_code == 0, explain(result)
    scores = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["log_prob"] < 0 and r["num_tokens"] > 5 for r in scores)
