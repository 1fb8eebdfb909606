"""The optimizer the training loop builds: weight-decay groups and layer-wise learning rates.

AdamW's first step moves every parameter with a non-zero gradient by exactly its learning
rate (m/sqrt(v) = sign(g), with an epsilon far below the gradients), so the largest change per tensor after one step is the rate
that tensor really got, whatever the optimizer's groups say.
"""

from __future__ import annotations

import pytest
import torch

from lmctl.config import TrainingConfig
from lmctl.engine.train import _optimizer

LR = 1e-3

# The rates each parameter of the tiny 2-layer models must get, written out by hand for
# learning_rate 1e-3 and layer_lr_decay 0.5: the head (with BERT's pooler and GPT-2's final norm)
# at the full rate, each layer below half the one above it, the embeddings lowest.
DECAYED_RATES = {
    "bert": {
        "bert.embeddings.": 1.25e-4,
        "bert.encoder.layer.0.": 2.5e-4,
        "bert.encoder.layer.1.": 5e-4,
        "bert.pooler.": 1e-3,
        "classifier.": 1e-3,
    },
    "gpt2": {
        "transformer.wte.": 1.25e-4,
        "transformer.wpe.": 1.25e-4,
        "transformer.h.0.": 2.5e-4,
        "transformer.h.1.": 5e-4,
        "transformer.ln_f.": 1e-3,
        "score.": 1e-3,
    },
}
# The tiny T5 (2 encoder + 2 decoder blocks, tied embeddings) at layer_lr_decay 0.8: block i of
# the encoder and block i of the decoder learn at the same rate.
T5_RATES = {
    "shared.": 5.12e-4,
    "encoder.block.0.": 6.4e-4,
    "decoder.block.0.": 6.4e-4,
    "encoder.block.1.": 8e-4,
    "decoder.block.1.": 8e-4,
    "encoder.final_layer_norm.": 1e-3,
    "decoder.final_layer_norm.": 1e-3,
}


def _one_step(model, batch: dict, **training) -> dict[str, float]:
    torch.manual_seed(0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = _optimizer(model, TrainingConfig(learning_rate=LR, adam_epsilon=1e-16, **training), "cpu")
    model(**batch).loss.backward()
    # Only entries with a real gradient: an attention key bias's is rounding noise (softmax ignores a
    # shift shared by all keys), near enough to epsilon that it moved ~0.1% less than its rate.
    real = {name: p.grad is not None and p.grad.abs() > 1e-9 for name, p in model.named_parameters()}
    optimizer.step()
    return {name: ((p.detach() - before[name]).abs() * real[name]).max().item()
            for name, p in model.named_parameters()}


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


def _expected(rates: dict[str, float], moved: dict[str, float]) -> None:
    """Each parameter moved by the rate of the one prefix in `rates` its name starts with."""
    checked, measured = 0, set()
    for name, change in moved.items():
        prefixes = [prefix for prefix in rates if name.startswith(prefix)]
        assert len(prefixes) == 1, (name, prefixes)
        if change == 0:  # no real gradient reached it (an unused position, a pad row): nothing to measure
            continue
        assert change == pytest.approx(rates[prefixes[0]], rel=1e-3), name
        checked += 1
        measured.add(prefixes[0])
    assert checked > 10
    assert measured == set(rates)  # every layer's rate was seen


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_layer_lr_decay_gives_each_layer_its_rate(tiny_models, family):
    model, batch = _classifier(str(tiny_models[family]))
    assert model.config.num_hidden_layers == 2  # the layers DECAYED_RATES lists
    _expected(DECAYED_RATES[family], _one_step(model, batch, layer_lr_decay=0.5))


def test_without_decay_every_parameter_gets_the_rate(tiny_models):
    model, batch = _classifier(str(tiny_models["bert"]))
    _expected(dict.fromkeys(DECAYED_RATES["bert"], LR), _one_step(model, batch))


def test_encoder_decoder_stacks_share_depths(tiny_models):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["t5"])
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_models["t5"])
    batch = tokenizer(["the cat watched the movie"], return_tensors="pt")
    batch["labels"] = tokenizer(["the cat"], return_tensors="pt").input_ids
    _expected(T5_RATES, _one_step(model, batch, layer_lr_decay=0.8))


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
