"""`lmctl predict` and `lmctl evaluate` on pretrained language models give the model's real numbers.

Every figure is checked against a direct computation with the saved model through plain
transformers: generated continuations (greedy, one line at a time), line log-probabilities,
fill-mask candidates, and corpus perplexity on packed blocks and with a sliding window
(the Hugging Face perplexity guide's method). Inputs have different lengths so that
inference, which batches longest first, has to put results back in input order.
"""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import pytest
import torch

from helpers import REPO, explain
from helpers import cli as _cli

cli = partial(_cli, code=None)  # each test asserts, and explains, the exit code itself

PROMPTS = [  # deliberately not sorted by length
    "The food",
    "Overall, the service was friendly but the price was",
    "I",
    "The battery of this phone",
    "Frankly, the plot of this movie was dull and",
    "Well, despite the solid acting,",
]


@pytest.fixture(scope="module")
def gpt2_run(pretrain_run) -> Path:
    return pretrain_run("tiny-gpt2")


@pytest.fixture(scope="module")
def bert_run(pretrain_run) -> Path:
    return pretrain_run("tiny-bert")


@pytest.fixture(scope="module")
def t5_run(pretrain_run) -> Path:
    return pretrain_run("tiny-t5")


def _lines_file(tmp_path: Path, lines: list[str], name: str = "input.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _predict(run: Path, input_file: Path, out: Path, *extra: str) -> list[dict]:
    result = cli("predict", "--model", run, "--input", input_file, "--output", out, *extra)
    assert result.exit_code == 0, explain(result)
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def _load(run: Path, auto: str):
    import transformers

    model = getattr(transformers, auto).from_pretrained(run).eval()
    return model, transformers.AutoTokenizer.from_pretrained(run)


def _until_eos(ids: list[int], tok) -> list[int]:
    out = []
    for t in ids:
        if t == tok.eos_token_id:
            break
        if t != tok.pad_token_id:
            out.append(t)
    return out


# ---- causal LM: generate and score ------------------------------------------------------

def test_causal_generate_is_greedy_continuation_in_input_order(gpt2_run, tmp_path):
    records = _predict(gpt2_run, _lines_file(tmp_path, PROMPTS), tmp_path / "gen.jsonl",
                       "--set", "generation.max_new_tokens=8", "--batch-size", "4")
    assert [r["sentence"] for r in records] == PROMPTS
    model, tok = _load(gpt2_run, "AutoModelForCausalLM")
    for prompt, record in zip(PROMPTS, records):
        assert isinstance(record["generated"], str)
        # As the task encodes a prompt: bos (<|endoftext|>, the document separator in training) + the text.
        ids = torch.tensor([[tok.bos_token_id] + tok(prompt, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        expected = tok.decode(_until_eos(out[0, ids.shape[1]:].tolist(), tok))
        assert record["generated"] == expected, prompt
    # Different prompts lead somewhere different (the model conditions on its input).
    assert len({r["generated"] for r in records}) > 1


def test_sampling_is_repeatable_with_a_seed(gpt2_run, tmp_path):
    inp = _lines_file(tmp_path, PROMPTS)

    def sample(seed: int, name: str) -> list[str]:
        recs = _predict(gpt2_run, inp, tmp_path / name, "--set", "generation.do_sample=true",
                        "--set", f"generation.seed={seed}", "--set", "generation.max_new_tokens=12")
        return [r["generated"] for r in recs]

    first, again, other = sample(3, "a.jsonl"), sample(3, "b.jsonl"), sample(4, "c.jsonl")
    assert first == again
    # A different seed draws different text (6 prompts x 12 sampled tokens cannot all coincide).
    assert first != other
    greedy = [r["generated"] for r in _predict(gpt2_run, inp, tmp_path / "g.jsonl",
                                                 "--set", "generation.max_new_tokens=12")]
    assert first != greedy  # sampling is really on


def test_score_is_the_models_log_probability(gpt2_run, tmp_path):
    lines = PROMPTS + ["The waiter was rude and the soup was cold."]
    records = _predict(gpt2_run, _lines_file(tmp_path, lines), tmp_path / "score.jsonl", "--mode", "score")
    model, tok = _load(gpt2_run, "AutoModelForCausalLM")
    assert [r["sentence"] for r in records] == lines
    for line, record in zip(lines, records):
        assert set(record) >= {"log_prob", "num_tokens", "perplexity"}
        ids = [tok.bos_token_id] + tok(line, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double()
        logp = torch.log_softmax(logits, -1)
        # log P(text | bos) = sum over tokens of log P(token | everything before it).
        expected = sum(float(logp[i - 1, ids[i]]) for i in range(1, len(ids)))
        assert record["num_tokens"] == len(ids) - 1
        assert record["log_prob"] == pytest.approx(expected, abs=2e-3)
        assert record["log_prob"] < 0
        assert record["perplexity"] == pytest.approx(math.exp(-expected / (len(ids) - 1)), rel=1e-3)


def test_unknown_mode_is_a_clear_error(gpt2_run, bert_run, tmp_path):
    inp = _lines_file(tmp_path, ["the [MASK] was good"])
    result = cli("predict", "--model", bert_run, "--input", inp, "--mode", "score")
    assert result.exit_code == 2
    assert "fill-mask" in result.stderr
    result = cli("predict", "--model", gpt2_run, "--input", inp, "--mode", "fill-mask")
    assert result.exit_code == 2
    assert "generate" in result.stderr and "score" in result.stderr


# ---- masked LM: fill-mask -----------------------------------------------------------------

def test_fill_mask_gives_the_models_top_k(bert_run, tmp_path):
    lines = [
        "The food was [MASK].",
        "Overall, the [MASK] was friendly but the [MASK] was too high.",
        "No mask in this line.",
        "[MASK] [MASK] [MASK]",
    ]
    records = _predict(bert_run, _lines_file(tmp_path, lines), tmp_path / "fill.jsonl", "--batch-size", "3")
    model, tok = _load(bert_run, "AutoModelForMaskedLM")
    assert [r["sentence"] for r in records] == lines
    for line, record in zip(lines, records):
        assert len(record["masks"]) == line.count("[MASK]")
        enc = tok(line, return_tensors="pt")
        with torch.no_grad():
            probs = torch.softmax(model(**enc).logits[0].double(), -1)
        positions = (enc["input_ids"][0] == tok.mask_token_id).nonzero().flatten().tolist()
        filled = enc["input_ids"][0].clone()
        for pos, candidates in zip(positions, record["masks"]):
            assert len(candidates) == 5  # generation.fill_mask_top_k default
            scores = [c["score"] for c in candidates]
            assert scores == sorted(scores, reverse=True)
            assert all(0 < s <= 1 for s in scores) and sum(scores) <= 1 + 1e-5
            top = probs[pos].topk(5)
            assert [c["token"] for c in candidates] == tok.convert_ids_to_tokens(top.indices.tolist())
            assert scores == pytest.approx(top.values.tolist(), abs=2e-6)
            filled[pos] = top.indices[0]
        assert record["filled"] == tok.decode(filled.tolist(), skip_special_tokens=True)
    assert records[2]["masks"] == []


# ---- span corruption: generate ------------------------------------------------------------

def test_span_corruption_generate(t5_run, tmp_path):
    lines = ["The food was <extra_id_0> and the service <extra_id_1>.", "The <extra_id_0> of this phone lasts",
             "Frankly, I will happily <extra_id_0> back."]
    records = _predict(t5_run, _lines_file(tmp_path, lines), tmp_path / "t5.jsonl",
                       "--set", "generation.max_new_tokens=10")
    model, tok = _load(t5_run, "AutoModelForSeq2SeqLM")
    assert [r["sentence"] for r in records] == lines
    for line, record in zip(lines, records):
        assert isinstance(record["generated"], str) and record["generated"]
        enc = tok(line, return_tensors="pt")
        assert enc["input_ids"][0, -1] == tok.eos_token_id
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=10, do_sample=False, pad_token_id=tok.pad_token_id)
        assert record["generated"] == tok.decode(_until_eos(out[0].tolist(), tok)), line
        assert "<extra_id" not in record["filled"]
        assert all(span in record["filled"] for span in record["spans"].values())
    # Trained on span corruption, the model answers in its format: sentinel first.
    assert sum(r["generated"].startswith("<extra_id_0>") for r in records) >= 2


# ---- perplexity ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def eval_lines() -> list[str]:
    rows = (REPO / "configs" / "finetune" / "data" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [r.split("\t")[0] for r in rows[:60]]


def _evaluate(run: Path, data: Path, out: Path, *extra: str) -> dict:
    result = cli("evaluate", "--model", run, "--data", data, "--output", out, *extra)
    assert result.exit_code == 0, explain(result)
    return json.loads(out.read_text())


def _stream(tok, lines: list[str]) -> list[int]:
    """Each line tokenized, eos appended (the document separator), all concatenated."""
    return [t for line in lines for t in tok(line, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]]


def _window_nll(model, window: list[int], first_scored: int) -> tuple[float, int]:
    """Summed NLL of window[j] given window[:j], for j >= first_scored (>= 1)."""
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([window])).logits[0].double(), -1)
    js = range(max(first_scored, 1), len(window))
    return -sum(float(logp[j - 1, window[j]]) for j in js), len(js)


def test_perplexity_on_packed_blocks_matches_a_hand_computation(gpt2_run, eval_lines, tmp_path):
    data = _lines_file(tmp_path, eval_lines, "eval.txt")
    result = _evaluate(gpt2_run, data, tmp_path / "ppl.json")
    model, tok = _load(gpt2_run, "AutoModelForCausalLM")
    block = 32  # training.max_length of the run
    stream = _stream(tok, eval_lines)
    usable = len(stream) // block * block  # the tail shorter than a block is dropped
    nll, count = 0.0, 0
    for begin in range(0, usable, block):
        n, c = _window_nll(model, stream[begin:begin + block], 1)
        nll, count = nll + n, count + c
    assert result["examples"] == usable // block
    assert result["metrics"]["tokens"] == count == usable - usable // block
    assert result["metrics"]["loss"] == pytest.approx(nll / count, rel=1e-4)
    assert result["metrics"]["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-4)


def test_sliding_window_perplexity_matches_the_hf_guide_method(gpt2_run, eval_lines, tmp_path):
    data = _lines_file(tmp_path, eval_lines, "eval.txt")
    stride, max_length = 8, 32
    result = _evaluate(gpt2_run, data, tmp_path / "ppl.json", "--set", f"pretraining.eval_stride={stride}")
    model, tok = _load(gpt2_run, "AutoModelForCausalLM")
    stream = _stream(tok, eval_lines)
    # The perplexity guide's loop: windows of max_length every `stride` tokens, and in each only
    # the tokens not scored by an earlier window count (so every token has >= max_length - stride context).
    nll, count, prev_end = 0.0, 0, 0
    for begin in range(0, len(stream), stride):
        end = min(begin + max_length, len(stream))
        window = stream[begin:end]
        n, c = _window_nll(model, window, len(window) - (end - prev_end))
        nll, count, prev_end = nll + n, count + c, end
        if end == len(stream):
            break
    assert count == len(stream) - 1  # every token but the first is scored exactly once
    assert result["metrics"]["tokens"] == count
    assert result["metrics"]["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-4)
    # And it is a different figure from the non-overlapping one (more context per token).
    blocks = _evaluate(gpt2_run, data, tmp_path / "blocks.json")
    assert blocks["metrics"]["perplexity"] != pytest.approx(result["metrics"]["perplexity"], rel=1e-3)


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-t5"])
def test_masked_and_span_evaluation_is_finite_and_repeatable(name, eval_lines, tmp_path, pretrain_run):
    # Masks and spans are random; evaluation seeds them from the data, so a figure can be compared.
    run = pretrain_run(name)
    data = _lines_file(tmp_path, eval_lines, "eval.txt")
    a = _evaluate(run, data, tmp_path / "a.json")["metrics"]
    b = _evaluate(run, data, tmp_path / "b.json")["metrics"]
    assert a == b
    assert math.isfinite(a["loss"]) and a["tokens"] > 0
    assert a["perplexity"] == pytest.approx(math.exp(a["loss"]), rel=1e-6)
    # The trained model beats a uniform guess over its vocabulary.
    from transformers import AutoTokenizer

    assert a["perplexity"] < len(AutoTokenizer.from_pretrained(run))
