"""The optimizer the training loop builds: weight-decay groups and layer-wise learning rates.

AdamW's first step moves every parameter with a non-zero gradient by exactly its learning
rate (m/sqrt(v) = sign(g), with an epsilon far below the gradients), so the largest change per tensor after one step is the rate
that tensor really got, whatever the optimizer's groups say.
"""

from __future__ import annotations

import pytest
import torch

from lmctl.config import TrainingConfig
from lmctl.engine.train import _layer_depths, _optimizer

LR = 1e-3


def _one_step(model, batch: dict, **training) -> dict[str, float]:
    torch.manual_seed(0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = _optimizer(model, TrainingConfig(learning_rate=LR, adam_epsilon=1e-16, **training), "cpu")
    model(**batch).loss.backward()
    optimizer.step()
    return {name: (p.detach() - before[name]).abs().max().item() for name, p in model.named_parameters()}


def _classifier(path: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    batch = tokenizer(["the cat watched the movie", "a dog sold the red bicycle again"],
                      padding=True, return_tensors="pt")
    return model, {**batch, "labels": torch.tensor([0, 1])}


def _expected(rate_at_depth, depths: dict[str, int], moved: dict[str, float]) -> None:
    checked = 0
    for name, change in moved.items():
        if change == 0:  # no gradient reached it (an unused position, a pad row): nothing to measure
            continue
        assert change == pytest.approx(rate_at_depth(depths[name]), rel=1e-3), name
        checked += 1
    assert checked > 10


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_layer_lr_decay_gives_each_layer_its_rate(tiny_models, family):
    model, batch = _classifier(str(tiny_models[family]))
    depths, top = _layer_depths([name for name, _ in model.named_parameters()])
    layers = model.config.num_hidden_layers
    assert top == layers + 1
    # Embeddings at the bottom, layer i at i+1, the classifier on top.
    assert {d for n, d in depths.items() if "embed" in n or "wte" in n} == {0}
    assert {d for n, d in depths.items() if "classifier" in n or "score" in n} == {top}

    moved = _one_step(model, batch, layer_lr_decay=0.5)
    _expected(lambda depth: LR * 0.5 ** (top - depth), depths, moved)
    # The embeddings moved 2^(layers+1) times less than the head: the decay really applied.
    assert max(v for n, v in moved.items() if depths[n] == 0) == pytest.approx(LR / 2 ** (layers + 1), rel=1e-3)


def test_without_decay_every_parameter_gets_the_rate(tiny_models):
    model, batch = _classifier(str(tiny_models["bert"]))
    depths, _ = _layer_depths([name for name, _ in model.named_parameters()])
    _expected(lambda depth: LR, depths, _one_step(model, batch))


def test_encoder_decoder_stacks_share_depths(tiny_models):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["t5"])
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_models["t5"])
    depths, top = _layer_depths([name for name, _ in model.named_parameters()])
    assert depths["shared.weight"] == 0
    assert depths["encoder.block.0.layer.0.SelfAttention.q.weight"] == 1
    assert depths["decoder.block.0.layer.0.SelfAttention.q.weight"] == 1
    assert depths["encoder.final_layer_norm.weight"] == top
    batch = tokenizer(["the cat watched the movie"], return_tensors="pt")
    batch["labels"] = tokenizer(["the cat"], return_tensors="pt").input_ids
    _expected(lambda depth: LR * 0.8 ** (top - depth), depths, _one_step(model, batch, layer_lr_decay=0.8))


def test_weight_decay_spares_biases_and_norms(tiny_models):
    model, _ = _classifier(str(tiny_models["bert"]))
    optimizer = _optimizer(model, TrainingConfig(weight_decay=0.1, layer_lr_decay=0.5), "cpu")
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            spared = p.ndim < 2 or "norm" in names[id(p)].lower()
            assert group["weight_decay"] == (0.0 if spared else 0.1), names[id(p)]


@pytest.mark.parametrize("value", [0, -0.5, 1.5])
def test_layer_lr_decay_out_of_range_is_refused(value):
    with pytest.raises(ValueError, match="layer_lr_decay"):
        TrainingConfig(layer_lr_decay=value)
