"""What lmctl knows about each model family, in one table.

Every module that must treat BERT, GPT-2 and T5 differently asks this table: models.py
(size presets, config values a from-scratch model takes from its tokenizer, pad/eos
fixes), tokenizer_training.py (which algorithm trains a family's tokenizer, its special
tokens and the transformers class that wraps it), config.py (which families, sizes,
poolings and task heads exist, checked when a config is validated), the engine (where the
transformer layers and embeddings are, for layer-wise learning rates), distillation and
pruning (which layers a student copies, the config fields that count them, the feed-forward
layouts pruning narrows, gated or not), ONNX export (whether torch's exporter handles the
family, and why not), explanations (which embedding modules carry the input tokens) and
span corruption (T5's sentinel tokens).

A fourth family is one more `Family` entry: `register(Family(...))` adds it to `FAMILIES`
(the public table), and nothing else reads a list of family names. Register before the
family is used: every reader looks the table up when it runs, none copies it at import.

Checkpoints of other architectures still load through `Auto*` classes; they get
`GENERIC`, which finds layers by the usual module names and assumes nothing else.
This module imports nothing heavy: config validation and `lmctl --help` read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable


def pad_from_eos(model_config, tokenizer) -> None:
    """GPT-2 ships without a pad token; batches > 1 need one, and eos is the convention."""
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token


def decoder_start_from_pad(model_config, tokenizer) -> None:
    """transformers v5's T5Config has no default decoder_start_token_id; T5 starts from pad."""
    if getattr(model_config, "decoder_start_token_id", None) is None:
        model_config.decoder_start_token_id = model_config.pad_token_id if model_config.pad_token_id is not None else 0


@dataclass(frozen=True)
class FeedForward:
    """One feed-forward block layout, by module-name endings inside a layer. Gated blocks (T5 v1.1,
    mT5: act(wi_0 x) * wi_1 x) have two input projections; every one of them makes the hidden units
    the output projection reads, so pruning keeps the same units in all of them."""

    inputs: tuple[str, ...]
    """The input projections (gated: the gate first), each writing `width` hidden units."""
    output: str
    """The output projection, reading the hidden units."""
    width: str
    """The config field holding the hidden width (the same in every layer)."""


# What export says of a family nobody has checked torch's exporter on.
ONNX_UNCHECKED = "lmctl has not checked torch's exporter on this family"


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    """`config.model_type` values of checkpoints that belong to the family."""
    config_class: str
    """The transformers config class a from-scratch model is built from."""
    presets: dict[str, dict]
    """`model.from_scratch.size` → config fields."""
    scratch_ids: Callable[[object, int], dict]
    """(tokenizer, max_length) → config fields a from-scratch model takes from its tokenizer."""
    tokenizer: str
    """The algorithm that trains a from-scratch model's tokenizer: a key of
    lmctl.tokenizer_training.TRAINERS (wordpiece, byte-bpe or unigram)."""
    tokenizer_class: str
    """The transformers tokenizer class the trained vocabulary is wrapped in (its post-processor
    adds the family's [CLS]/<s>/eos around inputs), so the saved tokenizer reloads with AutoTokenizer."""
    special_tokens: dict[str, str]
    """Tokenizer argument → special token, in id order from 0 (a token named twice gets one id)."""
    quirks: tuple[Callable, ...]
    """Fixes applied to (model config, tokenizer) before a model is built or loaded."""
    heads: dict[str, str]
    """Task → the transformers class that task gets for this family (a task not listed has no head)."""
    layer_stacks: tuple[str, ...]
    """Module paths of the transformer-layer lists (two for encoder-decoders: their depths are shared)."""
    embeddings: tuple[str, ...]
    """Words that mark the input embeddings' parameter names."""
    attention_projections: tuple[str, ...]
    """Names of the attention's linear projections (the modules an adapter targets)."""
    depth_fields: tuple[str, ...] = ()
    """The config field holding each layer stack's depth, in layer_stacks' order: a student built
    from a teacher's layers sets them (empty: the family's models cannot be cut that way)."""
    ffn: tuple[FeedForward, ...] = ()
    """The feed-forward layouts the family's checkpoints have (T5 v1.0's wi and v1.1's gated
    wi_0/wi_1); pruning narrows every layer's block of the layout a model has to the same width,
    which the config then records (empty: the width cannot be pruned)."""
    onnx_refusal: str | None = ONNX_UNCHECKED
    """None: `lmctl export --format onnx` exports the family (the export still checks its outputs
    against PyTorch before it writes); otherwise why not, the reason the refusal gives."""
    token_embeddings: tuple[tuple[str, int], ...] = ()
    """(module name suffix, offset) of each token-embedding module a forward pass calls, where
    attributions are taken: offset 1 for a decoder that reads the input shifted right by one (T5's
    classifier). Empty: the model's get_input_embeddings()."""
    poolings: tuple[str, ...] = ()
    """`model.pooling` values a classifier of this family accepts (none: it pools its own way)."""
    sentinel: str | None = None
    """Format of the span-corruption sentinels, with `{}` for the span index."""
    num_sentinels: int = 0
    _layer_index: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        stacks = "|".join(re.escape(s) for s in self.layer_stacks)
        object.__setattr__(self, "_layer_index", re.compile(rf"(?:^|\.)(?:{stacks})\.(\d+)\."))

    def layer_depths(self, names: list[str]) -> tuple[dict[str, int], int]:
        """Depth of each parameter name: 0 for the embeddings, i + 1 for transformer layer i and the
        top (one above the last layer) for the rest: final norms, pooler and task head."""
        index = {name: int(m.group(1)) for name in names if (m := self._layer_index.search(name))}
        top = max(index.values(), default=-1) + 2
        return {name: index[name] + 1 if name in index
                else 0 if self.is_embedding(name) else top
                for name in names}, top

    def renumber_layer(self, name: str, position: dict[int, int]) -> str | None:
        """A parameter name with its layer index mapped through `position` (teacher layer → student
        layer); None for a layer `position` leaves out; other names as they are."""
        m = self._layer_index.search(name)
        if not m:
            return name
        index = int(m.group(1))
        if index not in position:
            return None
        return f"{name[:m.start(1)]}{position[index]}{name[m.end(1):]}"

    def is_embedding(self, name: str) -> bool:
        return any(word in name for word in self.embeddings)


def _bert_ids(tokenizer, max_length: int) -> dict:
    return dict(max_position_embeddings=max(512, max_length), pad_token_id=tokenizer.pad_token_id)


def _gpt2_ids(tokenizer, max_length: int) -> dict:
    return dict(n_positions=max(1024, max_length), bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def _t5_ids(tokenizer, max_length: int) -> dict:
    # T5's positions are relative: no length field to size.
    return dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                decoder_start_token_id=tokenizer.pad_token_id)


# Sizes: "base" matches BERT-base / GPT-2 small / T5-base; parameter counts depend on the vocabulary.
BERT = Family(
    name="bert", model_types=("bert",), config_class="BertConfig",
    presets={
        "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512),
        "mini": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
        "small": dict(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=2048),
        "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    },
    scratch_ids=_bert_ids, tokenizer="wordpiece", tokenizer_class="BertTokenizer",
    special_tokens=dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                        mask_token="[MASK]"),
    quirks=(),
    heads={"text-classification": "BertForSequenceClassification", "reranking": "BertForSequenceClassification",
           "multi-label-classification": "BertForSequenceClassification",
           "question-answering": "BertForQuestionAnswering", "masked-lm": "BertForMaskedLM",
           "causal-lm": "BertLMHeadModel", "token-classification": "BertForTokenClassification"},
    layer_stacks=("encoder.layer",), depth_fields=("num_hidden_layers",), embeddings=("embeddings",),
    ffn=(FeedForward(("intermediate.dense",), "output.dense", "intermediate_size"),),
    onnx_refusal=None,
    attention_projections=("query", "key", "value"),
    token_embeddings=(("embeddings.word_embeddings", 0),),
)

GPT2 = Family(
    name="gpt2", model_types=("gpt2",), config_class="GPT2Config",
    presets={
        "tiny": dict(n_embd=128, n_layer=2, n_head=2),
        "mini": dict(n_embd=256, n_layer=4, n_head=4),
        "small": dict(n_embd=512, n_layer=6, n_head=8),
        "base": dict(n_embd=768, n_layer=12, n_head=12),
    },
    scratch_ids=_gpt2_ids, tokenizer="byte-bpe", tokenizer_class="GPT2Tokenizer",
    # One special token that is bos, eos and (by convention) pad.
    special_tokens=dict(unk_token="<|endoftext|>", bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                        pad_token="<|endoftext|>"),
    quirks=(pad_from_eos,),
    heads={"text-classification": "GPT2ForSequenceClassification", "reranking": "GPT2ForSequenceClassification",
           "multi-label-classification": "GPT2ForSequenceClassification",
           "question-answering": "GPT2ForQuestionAnswering", "causal-lm": "GPT2LMHeadModel",
           "token-classification": "GPT2ForTokenClassification"},
    layer_stacks=("h",), depth_fields=("n_layer",), embeddings=("wte", "wpe"),
    ffn=(FeedForward(("mlp.c_fc",), "mlp.c_proj", "n_inner"),),  # Conv1D: weights stored [in, out]
    onnx_refusal=None,
    attention_projections=("c_attn",),  # query, key and value in one fused Conv1D
    token_embeddings=(("wte", 0),),
    poolings=("last", "mean"),
)

T5 = Family(
    name="t5", model_types=("t5", "mt5"), config_class="T5Config",
    presets={
        "tiny": dict(d_model=128, d_ff=512, d_kv=32, num_layers=2, num_heads=4),
        "mini": dict(d_model=256, d_ff=1024, d_kv=64, num_layers=4, num_heads=4),
        "small": dict(d_model=512, d_ff=2048, d_kv=64, num_layers=6, num_heads=8),
        "base": dict(d_model=768, d_ff=3072, d_kv=64, num_layers=12, num_heads=12),
    },
    scratch_ids=_t5_ids, tokenizer="unigram", tokenizer_class="T5Tokenizer",
    special_tokens=dict(pad_token="<pad>", eos_token="</s>", unk_token="<unk>"),  # T5's layout: pad 0, eos 1, unk 2
    quirks=(decoder_start_from_pad,),
    heads={"text-classification": "T5ForSequenceClassification", "reranking": "T5ForSequenceClassification",
           "multi-label-classification": "T5ForSequenceClassification",
           "question-answering": "T5ForQuestionAnswering", "seq2seq": "T5ForConditionalGeneration",
           "span-corruption": "T5ForConditionalGeneration", "token-classification": "T5ForTokenClassification"},
    layer_stacks=("encoder.block", "decoder.block"), depth_fields=("num_layers", "num_decoder_layers"),
    ffn=(FeedForward(("DenseReluDense.wi",), "DenseReluDense.wo", "d_ff"),  # T5 v1.0: ReLU
         FeedForward(("DenseReluDense.wi_0", "DenseReluDense.wi_1"), "DenseReluDense.wo", "d_ff")),  # v1.1, mT5
    # torch 2.13's exporter fails on T5's attention reshape (dynamo) or bakes the eos position in
    # (TorchScript, logits off by 0.37 on the tiny test model): T5 is refused, not exported wrong.
    onnx_refusal="torch's exporter fails on T5's attention reshape or mistraces its eos pooling",
    embeddings=("shared", "embed_tokens"),
    attention_projections=("q", "k", "v", "o"),
    # The classifier's decoder reads the input too (shifted right): both carry each token.
    token_embeddings=(("encoder.embed_tokens", 0), ("decoder.embed_tokens", 1)),
    sentinel="<extra_id_{}>", num_sentinels=100,
)

FAMILIES: dict[str, Family] = {f.name: f for f in (BERT, GPT2, T5)}
"""The family table: `model.from_scratch.family` → entry. Add to it with `register`."""

# Any other checkpoint (Llama, DeBERTa, ...): layers under the usual list names, embeddings by
# name, and a pad token from eos when the tokenizer has none. It cannot be built from scratch.
GENERIC = Family(
    name="generic", model_types=(), config_class="", presets={}, scratch_ids=lambda tokenizer, n: {},
    tokenizer="", tokenizer_class="", special_tokens={}, quirks=(pad_from_eos,), heads={},
    layer_stacks=("h", "layer", "layers", "block"), depth_fields=(), embeddings=("embed", "wte", "wpe", "shared"),
    attention_projections=(),
)


def for_model_type(model_type: str | None) -> Family:
    """The family a checkpoint belongs to, by its config's `model_type`; GENERIC when none."""
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    return GENERIC


def register(family: Family) -> Family:
    """Add `family` to the table: from-scratch configs may name it and its checkpoints get its entry.
    Call it before anything builds or loads the family's models (an import-time call in your code
    will do); a name or a model_type another entry has is refused."""
    if family.name in FAMILIES or family.name == GENERIC.name:
        raise ValueError(f"a model family named '{family.name}' is already registered")
    taken = {t: f.name for f in FAMILIES.values() for t in f.model_types}
    clash = [t for t in family.model_types if t in taken]
    if clash:
        raise ValueError(f"model_type '{clash[0]}' already belongs to the '{taken[clash[0]]}' family")
    FAMILIES[family.name] = family
    return family


def onnx_exportable() -> list[str]:
    """The names of the families `lmctl export --format onnx` takes."""
    return [f.name for f in FAMILIES.values() if f.onnx_refusal is None]
