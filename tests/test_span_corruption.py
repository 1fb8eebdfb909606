"""T5 span corruption (lmctl.tasks.span_corruption) does what the T5 paper describes.

Statistics are measured over thousands of masks, the corruption is checked to be
lossless (inputs + targets give back the original ids exactly), and the block length
arithmetic is checked to give exactly `max_length` input tokens. No model is trained
here: only the tokenizer the pretraining run would train.
"""

from __future__ import annotations

import random

import pytest
import torch

from lmctl import config as config_lib
from lmctl.console import Console
from lmctl.errors import UserError
from lmctl.tasks.span_corruption import SpanCorruptionTask, corrupt, inputs_and_targets_length, noise_mask

DENSITY, MEAN_SPAN = 0.15, 3.0
EOS = 1
SENTINELS = list(range(32_000, 32_200))  # ids far from the token ids below, so they cannot be confused


def _runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of each run of True, computed the slow obvious way."""
    runs, start = [], None
    for i, v in enumerate(mask.tolist() + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


def _reconstruct(inputs: list[int], targets: list[int], sentinels: list[int], eos: int) -> list[int]:
    """Put each target span back where its sentinel sits in the inputs (the inverse of corruption)."""
    assert inputs[-1] == eos and targets[-1] == eos
    sentinel_set = set(sentinels)
    spans: dict[int, list[int]] = {}
    current = None
    for t in targets[:-1]:
        if t in sentinel_set:
            current = t
            spans[current] = []
        else:
            assert current is not None, "targets must start with a sentinel"
            spans[current].append(t)
    out = []
    for t in inputs[:-1]:
        out.extend(spans[t] if t in sentinel_set else [t])
    return out


@pytest.fixture(scope="module")
def masks():
    """2,000 masks of random lengths 100-512, as a long pretraining run would draw them."""
    torch.manual_seed(1234)
    rng = random.Random(1234)
    out = []
    for _ in range(2000):
        n = rng.randint(100, 512)
        out.append(noise_mask(n, DENSITY, MEAN_SPAN))
    return out


def test_noise_density_and_mean_span_length_match_the_paper(masks):
    densities = [float(m.float().mean()) for m in masks]
    assert abs(sum(densities) / len(densities) - DENSITY) < 0.01
    noise = sum(int(m.sum()) for m in masks)
    spans = sum(len(_runs(m)) for m in masks)
    assert abs(noise / spans - MEAN_SPAN) < 0.3
    assert all(m.dtype == torch.bool for m in masks)


def test_span_positions_and_lengths_are_random(masks):
    # A mask that always put its noise in the same place (or used one fixed span length)
    # would teach the model nothing; both must vary.
    assert len({tuple(m.tolist()) for m in masks}) == len(masks)
    lengths = {length for m in masks for _, length in _runs(m)}
    assert {1, 2, 3, 4, 5} <= lengths
    # Noise reaches every part of a sequence: count noise in each tenth of it.
    tenths = [0] * 10
    for m in masks:
        for i in torch.nonzero(m).flatten().tolist():
            tenths[i * 10 // len(m)] += 1
    assert min(tenths) > 0.5 * max(tenths), tenths


def test_corrupt_is_lossless_and_sentinels_count_up():
    torch.manual_seed(0)
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(20, 300)
        ids = [rng.randint(5, 30_000) for _ in range(n)]
        mask = noise_mask(n, DENSITY, MEAN_SPAN)
        inputs, targets = corrupt(ids, mask, SENTINELS, EOS)
        k = len(_runs(mask))
        in_sentinels = [t for t in inputs if t in SENTINELS]
        tgt_sentinels = [t for t in targets if t in SENTINELS]
        # <extra_id_0>, <extra_id_1>, ... in order, one per span, the same in both.
        assert in_sentinels == SENTINELS[:k]
        assert tgt_sentinels == SENTINELS[:k]
        assert inputs[-1] == EOS and targets[-1] == EOS
        assert targets[0] == SENTINELS[0]
        # Inputs hold every kept token in order; targets every noise token in order.
        keep = [t for t, m in zip(ids, mask.tolist()) if not m]
        noise = [t for t, m in zip(ids, mask.tolist()) if m]
        assert [t for t in inputs[:-1] if t not in SENTINELS] == keep
        assert [t for t in targets[:-1] if t not in SENTINELS] == noise
        assert _reconstruct(inputs, targets, SENTINELS, EOS) == ids


@pytest.mark.parametrize("max_length", [3, 4, 5, 6, 7, 8, 9, 10, 16, 32, 64, 100, 128, 256, 333, 512, 568, 1024])
def test_block_length_gives_exactly_max_length_inputs(max_length):
    raw, target_length = inputs_and_targets_length(max_length, DENSITY, MEAN_SPAN)
    # Spans of one token leave the length alone and eos adds one, so a short block holds
    # max_length - 1 raw tokens; from 10 tokens on, spans are long enough to pay for eos.
    assert raw >= (max_length if max_length >= 10 else max_length - 1)
    for seed in range(20):
        torch.manual_seed(seed)
        mask = noise_mask(raw, DENSITY, MEAN_SPAN)
        inputs, targets = corrupt(list(range(100, 100 + raw)), mask, SENTINELS, EOS)
        assert len(inputs) == max_length  # including eos
        assert len(targets) == target_length
    # The block is the longest that fits: one more raw token would overflow max_length.
    torch.manual_seed(0)
    mask = noise_mask(raw + 1, DENSITY, MEAN_SPAN)
    longer, _ = corrupt(list(range(100, 101 + raw)), mask, SENTINELS, EOS)
    assert len(longer) > max_length


def test_t5_paper_lengths():
    # The figures the T5 / HF Flax script quote: 512 input tokens need 568 raw tokens and 114 targets.
    assert inputs_and_targets_length(512, 0.15, 3.0) == (568, 114)


# ---- the task's collator on real blocks -------------------------------------------------

TEXTS = [
    f"the {a} {b} sat on the {c} mat near the {d} door number {i}."
    for i, (a, b, c, d) in enumerate(
        (a, b, c, d)
        for a in ("small", "big", "old", "new")
        for b in ("cat", "dog", "fox")
        for c in ("red", "blue", "green")
        for d in ("front", "back")
    )
]


@pytest.fixture(scope="module")
def t5_tokenizer():
    from lmctl.tokenizer_training import train_tokenizer

    return train_tokenizer("t5", TEXTS, vocab_size=300, min_frequency=1)


def _task(max_length: int, seed: int = 42) -> SpanCorruptionTask:
    cfg = config_lib.validate({"task": "span-corruption", "training": {"max_length": max_length, "seed": seed}})
    return SpanCorruptionTask(cfg, Console(enabled=False))


def _blocks(task, tokenizer):
    from datasets import Dataset

    return task.encode(Dataset.from_dict({"text": TEXTS}), "train", "test corpus")


@pytest.mark.parametrize("max_length", [32, 64])
def test_collate_pads_labels_with_minus_100_and_reconstructs(t5_tokenizer, max_length):
    tok = t5_tokenizer
    task = _task(max_length).bind(tok)
    blocks = _blocks(task, tok)
    raw, target_length = inputs_and_targets_length(max_length, DENSITY, MEAN_SPAN)
    lengths = blocks["length"]
    assert lengths[:-1] == [raw] * (len(lengths) - 1)  # packed: every block but the tail is full
    # The real block ids (a stream of tokens with no eos between documents), plus the short tail.
    features = [{"input_ids": list(ids)} for ids in blocks["input_ids"]]
    short = {"input_ids": list(blocks["input_ids"][0][:17])}  # a short row forces padding
    features = features[:5] + [short]

    torch.manual_seed(7)
    batch = task.collate([dict(f) for f in features])
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    assert ids.shape == (6, max_length) and mask.shape == (6, max_length)
    assert labels.shape[0] == 6 and labels.is_contiguous()
    assert labels.dtype == torch.long
    sentinels = task.sentinels
    assert sentinels[0] == tok.convert_tokens_to_ids("<extra_id_0>")
    assert sentinels[1] == tok.convert_tokens_to_ids("<extra_id_1>")
    for row in range(6):
        n_in = int(mask[row].sum())
        real_in = ids[row, :n_in].tolist()
        assert ids[row, n_in:].eq(tok.pad_token_id).all()
        lab = labels[row].tolist()
        n_lab = sum(1 for t in lab if t != -100)
        assert lab[n_lab:] == [-100] * (len(lab) - n_lab)  # padding is -100 (ignored), and only at the end
        real_lab = lab[:n_lab]
        assert tok.pad_token_id not in real_lab
        if row < 5:  # full blocks
            assert n_in == max_length and n_lab == target_length
        assert _reconstruct(real_in, real_lab, sentinels, tok.eos_token_id) == features[row]["input_ids"]


def test_training_collate_draws_new_spans_but_eval_collate_is_repeatable(t5_tokenizer):
    task = _task(64).bind(t5_tokenizer)
    blocks = _blocks(task, t5_tokenizer)
    features = [{"input_ids": list(ids)} for ids in blocks["input_ids"][:4]]
    train_a = task.collate([dict(f) for f in features])["input_ids"]
    train_b = task.collate([dict(f) for f in features])["input_ids"]
    assert not torch.equal(train_a, train_b)  # fresh noise every step
    state = torch.random.get_rng_state()
    eval_a = task.eval_collate([dict(f) for f in features])
    eval_b = task.eval_collate([dict(f) for f in features])
    assert torch.equal(eval_a["input_ids"], eval_b["input_ids"])
    assert torch.equal(eval_a["labels"], eval_b["labels"])
    # Evaluation noise must not disturb the training RNG stream.
    assert torch.equal(state, torch.random.get_rng_state())


def test_too_few_sentinels_is_a_clear_error(t5_tokenizer):
    # The trained tokenizer has 100 sentinels; a 2,000-token block needs ~100 spans or more.
    from datasets import Dataset

    task = _task(2000).bind(t5_tokenizer)
    task.encode(Dataset.from_dict({"text": TEXTS[:2]}), "train", "x")
    with pytest.raises(UserError, match="sentinels"):
        task.collate([{"input_ids": list(range(5, 4005))}])


def test_tokenizer_without_sentinels_is_rejected():
    from datasets import Dataset

    from lmctl.tokenizer_training import train_tokenizer

    tok = train_tokenizer("bert", TEXTS, vocab_size=200, min_frequency=1)
    with pytest.raises(UserError, match="sentinel"):  # when bound, before any data is encoded
        _task(32).bind(tok)


def test_prediction_splits_the_answer_into_spans_and_fills_the_input(t5_tokenizer):
    tok = t5_tokenizer
    task = _task(64).bind(tok)
    inputs = tok("the old cat sat on the <extra_id_0> near the <extra_id_1> number 3.")["input_ids"]
    answer = tok("<extra_id_0> blue mat <extra_id_1> green door <extra_id_2>", add_special_tokens=False)["input_ids"]
    # As generate returns it: decoder start (pad) first, eos, then padding up to the batch's longest.
    generated = [tok.pad_token_id, *answer, tok.eos_token_id, tok.pad_token_id, tok.pad_token_id]
    record = task.predict_records({"generated": [generated]}, [{"input_ids": inputs}])[0]
    assert record["spans"] == {"<extra_id_0>": "blue mat", "<extra_id_1>": "green door", "<extra_id_2>": ""}
    expected = tok("the old cat sat on the blue mat near the green door number 3.")["input_ids"]
    assert record["filled"] == tok.decode(expected, skip_special_tokens=True)
    assert record["generated"].startswith("<extra_id_0>")
    # A sentinel the model left out is filled with nothing; text before the first sentinel is ignored.
    generated = [tok.pad_token_id, *tok("blue <extra_id_1> green door", add_special_tokens=False)["input_ids"],
                 tok.eos_token_id]
    record = task.predict_records({"generated": [generated]}, [{"input_ids": inputs}])[0]
    assert record["spans"] == {"<extra_id_1>": "green door"}
    expected = tok("the old cat sat on the near the green door number 3.")["input_ids"]
    assert record["filled"] == tok.decode(expected, skip_special_tokens=True)
