"""The family table (lmctl/families.py) against what transformers really builds.

Expected names and depths below are written out by hand from the models' printed
parameter names, not derived from the table under test.
"""

from __future__ import annotations

import pytest

from lmctl import config as config_lib
from lmctl import families
from lmctl.errors import UserError
from lmctl.tasks import get_task_class, task_names


def _tokenizer(tiny_models, family):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_models[family])


def _scratch(tiny_models, family, task):
    """A tiny randomly initialised model of `family` with `task`'s head, built the way runs build it."""
    import transformers

    from lmctl.models import apply_quirks, scratch_config

    tokenizer = _tokenizer(tiny_models, family)
    config = scratch_config(family, "tiny", {}, tokenizer, 64, num_labels=2)
    apply_quirks(config, tokenizer)
    auto = getattr(transformers, get_task_class(task).auto_class)
    return auto.from_config(config)


@pytest.mark.parametrize("family", families.FAMILY_NAMES)
def test_heads_match_transformers_auto_classes(family):
    """A task the table lists gets exactly the class transformers maps it to; a task it does not
    list has no class in that Auto mapping (so config validation may refuse it up front)."""
    import transformers

    spec = families.FAMILIES[family]
    config_class = getattr(transformers, spec.config_class)
    for task in task_names():
        mapping = getattr(transformers, get_task_class(task).auto_class)._model_mapping
        built = mapping[config_class].__name__ if config_class in mapping else None
        assert built == spec.heads.get(task), (family, task)


def test_hand_written_heads():
    assert families.BERT.heads["masked-lm"] == "BertForMaskedLM"
    assert families.GPT2.heads["text-classification"] == "GPT2ForSequenceClassification"
    assert families.T5.heads["span-corruption"] == "T5ForConditionalGeneration"
    assert "seq2seq" not in families.BERT.heads and "masked-lm" not in families.GPT2.heads


def test_config_refuses_a_task_the_family_has_no_head_for():
    with pytest.raises(UserError, match=r"family 'gpt2' has no model for this task \(masked-lm\)"):
        config_lib.validate({"task": "masked-lm", "model": {"from_scratch": {"family": "gpt2"}}})
    with pytest.raises(UserError, match=r"family 'bert' has no model for this task \(seq2seq\)"):
        config_lib.validate({"task": "seq2seq", "model": {"from_scratch": {"family": "bert"}}})
    config_lib.validate({"task": "span-corruption", "model": {"from_scratch": {"family": "t5"}}})


# (task, parameter name, depth) for tiny 2-layer models: 0 embeddings, 1-2 the layers, 3 the rest.
DEPTHS = {
    "bert": ("text-classification", {
        "bert.embeddings.word_embeddings.weight": 0,
        "bert.embeddings.LayerNorm.weight": 0,
        "bert.encoder.layer.0.attention.self.query.weight": 1,
        "bert.encoder.layer.1.output.dense.weight": 2,
        "bert.pooler.dense.weight": 3,
        "classifier.weight": 3,
    }),
    "gpt2": ("text-classification", {
        "transformer.wte.weight": 0,
        "transformer.wpe.weight": 0,
        "transformer.h.0.attn.c_attn.weight": 1,
        "transformer.h.1.mlp.c_fc.weight": 2,
        "transformer.ln_f.weight": 3,
        "score.weight": 3,
    }),
    "t5": ("seq2seq", {
        "shared.weight": 0,
        "encoder.block.0.layer.0.SelfAttention.q.weight": 1,
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": 1,
        "decoder.block.0.layer.1.EncDecAttention.k.weight": 1,
        "encoder.block.1.layer.1.DenseReluDense.wi.weight": 2,
        "decoder.block.1.layer.2.DenseReluDense.wo.weight": 2,
        "encoder.final_layer_norm.weight": 3,
        "decoder.final_layer_norm.weight": 3,
    }),
}


@pytest.mark.parametrize("family", families.FAMILY_NAMES)
def test_layer_depths_on_real_parameter_names(tiny_models, family):
    task, expected = DEPTHS[family]
    model = _scratch(tiny_models, family, task)
    names = [name for name, _ in model.named_parameters()]
    spec = families.for_model_type(model.config.model_type)
    assert spec is families.FAMILIES[family]
    depths, top = spec.layer_depths(names)
    assert top == 3
    assert {name: depths[name] for name in expected} == expected
    assert set(depths.values()) == {0, 1, 2, 3}


@pytest.mark.parametrize("family", families.FAMILY_NAMES)
def test_layer_stacks_and_attention_projections_exist(tiny_models, family):
    """What pruning and adapters will use: each layer stack is a ModuleList of the preset's depth,
    and each attention projection names Linear-like modules inside every layer."""
    import torch

    spec = families.FAMILIES[family]
    task = "seq2seq" if family == "t5" else "text-classification"
    model = _scratch(tiny_models, family, task)
    modules = dict(model.named_modules())
    for stack in spec.layer_stacks:
        found = [m for name, m in modules.items() if name == stack or name.endswith("." + stack)]
        assert len(found) == 1 and isinstance(found[0], torch.nn.ModuleList), stack
        assert len(found[0]) == 2
    for projection in spec.attention_projections:
        hits = [name for name in modules if name.rsplit(".", 1)[-1] == projection]
        assert hits and all(hasattr(modules[h], "weight") for h in hits), projection


def test_checkpoints_of_other_types_get_the_right_entry():
    assert families.for_model_type("mt5") is families.T5
    assert families.for_model_type("bert") is families.BERT
    generic = families.for_model_type("llama")
    assert generic is families.GENERIC and families.pad_from_eos in generic.quirks
    # Generic layer names: Llama's model.layers.i, RoBERTa's encoder.layer.i.
    depths, top = generic.layer_depths(["model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight",
                                        "model.layers.3.self_attn.q_proj.weight", "lm_head.weight"])
    assert top == 5
    assert depths == {"model.embed_tokens.weight": 0, "model.layers.0.mlp.up_proj.weight": 1,
                      "model.layers.3.self_attn.q_proj.weight": 4, "lm_head.weight": 5}


def test_a_fourth_family_is_one_entry(tiny_models, monkeypatch):
    """RoBERTa added as one table entry: a from-scratch config, a tokenizer and layer rates follow."""
    import transformers

    from lmctl.models import scratch_config
    from lmctl.tokenizer_training import train_tokenizer

    roberta = families.Family(
        name="roberta", model_types=("roberta",), config_class="RobertaConfig",
        presets={"tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)},
        scratch_ids=lambda tok, n: dict(max_position_embeddings=max(512, n) + 2, pad_token_id=tok.pad_token_id),
        tokenizer="wordpiece", quirks=(),
        heads={"text-classification": "RobertaForSequenceClassification"},
        layer_stacks=("encoder.layer",), embeddings=("embeddings",), attention_projections=("query", "key", "value"),
    )
    monkeypatch.setitem(families.FAMILIES, "roberta", roberta)
    tokenizer = train_tokenizer("roberta", ["a small corpus of words", "more words here"] * 20, 200, 1)
    config = scratch_config("roberta", "tiny", {}, tokenizer, 64, num_labels=3)
    model = transformers.AutoModelForSequenceClassification.from_config(config)
    assert type(model).__name__ == roberta.heads["text-classification"]
    assert model.config.vocab_size == len(tokenizer)
    depths, top = families.for_model_type("roberta").layer_depths([n for n, _ in model.named_parameters()])
    assert depths["roberta.embeddings.word_embeddings.weight"] == 0
    assert depths["roberta.encoder.layer.1.attention.self.query.weight"] == 2
    assert depths["classifier.out_proj.weight"] == top == 3
