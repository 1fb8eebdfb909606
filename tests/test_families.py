"""The family table (lmctl/families.py) against what transformers really builds.

Expected names and depths below are written out by hand from the models' printed
parameter names, not derived from the table under test.
"""

from __future__ import annotations

import pytest

import json
import math

import yaml

from helpers import cli, sentiment_rows, write_config, write_rows
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


@pytest.mark.parametrize("family", list(families.FAMILIES))
def test_heads_match_transformers_auto_classes(family):
    """A task the table lists gets exactly the class transformers maps it to; a task it does not
    list has no class in that Auto mapping (so config validation may refuse it up front)."""
    check_heads(families.FAMILIES[family])


def check_heads(spec: families.Family) -> None:
    import transformers

    config_class = getattr(transformers, spec.config_class)
    for task in task_names():
        mapping = getattr(transformers, get_task_class(task).auto_class)._model_mapping
        built = mapping[config_class].__name__ if config_class in mapping else None
        assert built == spec.heads.get(task), (spec.name, task)


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


@pytest.mark.parametrize("family", list(families.FAMILIES))
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


@pytest.mark.parametrize("family", list(families.FAMILIES))
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


# ---- a fourth family, added through the public table only ------------------------------------

def _roberta_ids(tokenizer, max_length: int) -> dict:
    # RoBERTa numbers positions from padding_idx + 1 (pad is id 1: the first position is 2), so its
    # position table is that much longer than the longest input; bos/eos come from the trained vocabulary.
    return dict(max_position_embeddings=max(512, max_length) + tokenizer.pad_token_id + 1,
                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id)


ROBERTA = families.Family(
    name="roberta", model_types=("roberta",), config_class="RobertaConfig",
    presets={"tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)},
    scratch_ids=_roberta_ids,
    # Byte-level BPE like GPT-2, in RoBERTa's class (its post-processor writes <s> ... </s>) with RoBERTa's
    # specials: <s> 0, <pad> 1, </s> 2, <unk> 3, <mask> 4.
    tokenizer="byte-bpe", tokenizer_class="RobertaTokenizer",
    special_tokens=dict(bos_token="<s>", cls_token="<s>", pad_token="<pad>", eos_token="</s>", sep_token="</s>",
                        unk_token="<unk>", mask_token="<mask>"),
    quirks=(),
    heads={"text-classification": "RobertaForSequenceClassification",
           "multi-label-classification": "RobertaForSequenceClassification",
           "reranking": "RobertaForSequenceClassification", "question-answering": "RobertaForQuestionAnswering",
           "masked-lm": "RobertaForMaskedLM", "causal-lm": "RobertaForCausalLM",
           "token-classification": "RobertaForTokenClassification"},
    layer_stacks=("encoder.layer",), depth_fields=("num_hidden_layers",), embeddings=("embeddings",),
    ffn=(families.FeedForward(("intermediate.dense",), "output.dense", "intermediate_size"),),
    attention_projections=("query", "key", "value"),
    token_embeddings=(("embeddings.word_embeddings", 0),),
    onnx_refusal=None,
)


@pytest.fixture(scope="module")
def roberta():
    """ROBERTA registered for this module's tests; the other modules see the three built-in families."""
    families.register(ROBERTA)
    yield ROBERTA
    del families.FAMILIES[ROBERTA.name]


def test_register_refuses_a_taken_name_or_model_type():
    with pytest.raises(ValueError, match="a model family named 'bert' is already registered"):
        families.register(families.BERT)
    with pytest.raises(ValueError, match="model_type 'mt5' already belongs to the 't5' family"):
        families.register(families.Family(**{**{f: getattr(ROBERTA, f) for f in (
            "config_class", "presets", "scratch_ids", "tokenizer", "tokenizer_class", "special_tokens", "quirks",
            "heads", "layer_stacks", "embeddings", "attention_projections")}, "name": "m", "model_types": ("mt5",)}))
    assert "m" not in families.FAMILIES


def test_config_checks_the_family_when_it_validates(tmp_path):
    """The config reads the table at validation time: a family registered after lmctl.config was
    imported is valid, and an unknown one is one line with a did-you-mean hint."""
    def message(scratch: dict) -> str:
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump({"task": "masked-lm", "model": {"from_scratch": scratch}}))
        result = cli("config", "show", path, code=2)
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1
        return lines[0]

    assert message({"family": "roberta"}) == (f"error: {tmp_path / 'c.yaml'}: model.from_scratch.family: unknown "
                                              "family 'roberta' (did you mean 'bert'?); known: bert, gpt2, t5")
    families.register(ROBERTA)
    try:
        assert message({"family": "robreta"}).endswith("unknown family 'robreta' (did you mean 'roberta'?); "
                                                       "known: bert, gpt2, t5, roberta")
        # Sizes are the family's own presets.
        assert message({"family": "roberta", "size": "mini"}).endswith(
            "model.from_scratch.size: unknown size 'mini' for family roberta; its sizes: tiny")
        assert "unknown size 'tinny' (did you mean 'tiny'?)" in message({"family": "roberta", "size": "tinny"})
        cfg = config_lib.validate({"task": "masked-lm", "model": {"from_scratch": {"family": "roberta", "size": "tiny"}}})
        assert cfg.model.from_scratch.family == "roberta"
    finally:
        del families.FAMILIES[ROBERTA.name]


def _log(run) -> tuple[list[float], list[float]]:
    records = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r], [r["eval_loss"] for r in records if "eval_loss" in r]


def _classification(path, start, train, dev, out, model: dict | None = None, **training):
    """helpers.write_config's text-classification config, from `start`, with `model` keys on top."""
    write_config(path, start, train, dev, out, training={"logging_steps": 20, **training})
    cfg = yaml.safe_load(path.read_text())
    cfg["model"].update(model or {})
    path.write_text(yaml.safe_dump(cfg))
    return path


def _accuracy(run) -> float:
    return json.loads((run / "metrics.json").read_text())["eval_accuracy"]


def test_roberta_pretrains_finetunes_distils_prunes_and_exports(roberta, tmp_path, one_thread):
    """RoBERTa, one entry registered above, through every command: masked-LM pretraining from scratch
    with its own byte-level BPE tokenizer, classification from that run, LoRA adapters, a distilled
    student built from the classifier's layers, pruning and ONNX export."""
    import torch
    import transformers

    from tiny_models import make_corpus

    check_heads(roberta)
    train, dev = sentiment_rows(160, 0), sentiment_rows(60, 1)
    train_file, dev_file = write_rows(tmp_path / "train.tsv", train), write_rows(tmp_path / "dev.tsv", dev)
    corpus = write_rows(tmp_path / "corpus.txt", [{"text": t} for t in make_corpus(300) + [r["sentence"] for r in train]])
    held_out = write_rows(tmp_path / "held_out.txt", [{"text": t} for t in make_corpus(40, seed=1)])

    # 1. Masked-LM pretraining from scratch, with a tokenizer trained on the corpus.
    pretrained = tmp_path / "pretrained"
    (tmp_path / "mlm.yaml").write_text(yaml.safe_dump({
        "task": "masked-lm",
        "model": {"from_scratch": {"family": "roberta", "size": "tiny"},
                  "train_tokenizer": {"vocab_size": 400, "min_frequency": 1}},
        "data": {"train_file": str(corpus), "validation_file": str(held_out)},
        "training": {"max_steps": 60, "batch_size": 16, "learning_rate": 3.0e-3, "max_length": 32,
                     "eval_strategy": "steps", "eval_steps": 30, "logging_steps": 1},
        "output_dir": str(pretrained),
    }))
    cli("pretrain", tmp_path / "mlm.yaml")
    losses, eval_losses = _log(pretrained)
    assert losses[-1] < losses[0] - 1.0 and eval_losses[-1] < eval_losses[0], (losses, eval_losses)
    mlm = transformers.AutoModelForMaskedLM.from_pretrained(pretrained)
    tokenizer = transformers.AutoTokenizer.from_pretrained(pretrained)
    assert type(mlm).__name__ == "RobertaForMaskedLM" and type(tokenizer).__name__ == "RobertaTokenizer"
    assert [tokenizer.convert_ids_to_tokens(i) for i in range(5)] == ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    ids = tokenizer("the cat was happy")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id == 0 and ids[-1] == tokenizer.sep_token_id == 2
    assert mlm.config.max_position_embeddings == 512 + 2 and mlm.config.pad_token_id == 1
    assert mlm.config.vocab_size == len(tokenizer) <= 400

    # 2. Text classification from the pretrained run, every weight trained.
    finetuned = tmp_path / "finetuned"
    cli("finetune", _classification(tmp_path / "cls.yaml", pretrained, train_file, dev_file, finetuned, num_epochs=4))
    assert _accuracy(finetuned) >= 0.9

    # 3. LoRA on the attention projections the entry names; the new head trains in full and travels
    # with the adapter. (Whether adapters learn is test_lora.py's; a classifier on adapters over so
    # short a pretraining stays at chance: its <s> states differ between inputs by ~0.003.)
    lora = tmp_path / "lora"
    cli("finetune", _classification(tmp_path / "lora.yaml", pretrained, train_file, dev_file, lora,
                                    model={"peft": {"r": 4, "alpha": 8, "dropout": 0.0}}, num_epochs=1))
    adapter = json.loads((lora / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["key", "query", "value"]
    assert sorted(adapter["modules_to_save"]) == ["classifier.dense", "classifier.out_proj"]
    assert not (lora / "model.safetensors").exists()  # the adapter only
    kept = json.loads((lora / "metrics.json").read_text())
    cli("evaluate", "--model", lora, "--data", dev_file, "--output", tmp_path / "lora-eval.json")
    reloaded = json.loads((tmp_path / "lora-eval.json").read_text())["metrics"]
    assert math.isclose(reloaded["loss"], kept["eval_loss"], rel_tol=1e-6)  # base + adapter, as trained

    # 4. A one-layer student from the classifier's second layer, distilled from it.
    student = tmp_path / "student"
    cli("finetune", _classification(tmp_path / "distill.yaml", pretrained, train_file, dev_file, student,
                                    model={"name_or_path": None, "from_teacher": {"layers": [1]}}, num_epochs=2),
        "--set", f"distill.teacher={finetuned}")
    assert json.loads((student / "config.json").read_text())["num_hidden_layers"] == 1
    metrics = json.loads((student / "metrics.json").read_text())
    assert metrics["eval_accuracy"] >= 0.8 and metrics["eval_teacher_agreement"] >= 0.8

    # 5. Pruning: one layer and half the feed-forward width, reloaded by plain transformers.
    pruned = tmp_path / "pruned"
    cli("prune", "--model", finetuned, "--output", pruned, "--layers", "1", "--ffn", "0.5")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(pruned)
    assert model.config.num_hidden_layers == 1 and model.config.intermediate_size == 32
    assert model.roberta.encoder.layer[0].intermediate.dense.weight.shape == (32, 32)

    # 6. ONNX export, checked against PyTorch by the export and again here through evaluate.
    exported = tmp_path / "onnx"
    cli("export", "--model", finetuned, "--output", exported, "--format", "onnx")
    check = json.loads((exported / "onnx.json").read_text())["check"]
    assert check["rows"] > 0 and check["max_abs_diff"] < 1e-4
    for model_dir, name in ((finetuned, "torch"), (exported, "onnx")):
        cli("evaluate", "--model", model_dir, "--data", dev_file, "--output", tmp_path / f"{name}.json")
    scores = [json.loads((tmp_path / f"{n}.json").read_text())["metrics"] for n in ("torch", "onnx")]
    assert scores[0]["accuracy"] == scores[1]["accuracy"] and math.isclose(
        scores[0]["loss"], scores[1]["loss"], rel_tol=1e-4)
