"""Tiny BERT / GPT-2 / T5 checkpoints built from config, for fast offline tests.

Each builder trains a real tokenizer (WordPiece, byte-level BPE, Unigram) on a
small generated corpus, wraps it in the family's own ``transformers`` tokenizer
class so the saved ``tokenizer_config.json`` names that class, and saves a
randomly initialised model next to it. The resulting directory loads with the
``Auto*`` classes exactly like a hub checkpoint, with no network access.

Plain functions only: the test suite wraps them in fixtures.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

__all__ = [
    "FIXTURE_CORPUS",
    "build_all",
    "build_tiny_bert",
    "build_tiny_gpt2",
    "build_tiny_t5",
    "T5_NUM_SENTINELS",
]

# Small enough that building all three models takes about a second, large
# enough that common English words are whole tokens rather than characters.
_VOCAB_SIZE = 500
T5_NUM_SENTINELS = 20

_SUBJECTS = [
    "the cat", "a dog", "my neighbour", "the old farmer", "our teacher",
    "the young pilot", "a tired student", "the chef", "my sister", "the band",
    "a small child", "the committee", "her brother", "the engineer", "a stranger",
]
_VERBS = [
    "watched", "painted", "carried", "found", "cooked", "repaired", "sold",
    "described", "ignored", "borrowed", "cleaned", "opened", "liked", "hated",
    "reviewed",
]
_OBJECTS = [
    "the movie", "a wooden chair", "the red bicycle", "an old map", "the garden",
    "a loaf of bread", "the broken window", "a new phone", "the letter",
    "the kitchen", "a heavy box", "the restaurant menu", "a blue kite",
]
_ADJECTIVES = [
    "quiet", "bright", "slow", "happy", "strange", "cold", "warm", "noisy",
    "careful", "lazy", "brilliant", "boring", "terrible", "great", "gentle",
]
_ADVERBS = [
    "quickly", "slowly", "carefully", "yesterday", "again", "today",
    "without a word", "in the morning", "after dinner", "at night",
]
_PLACES = [
    "in the park", "at the station", "near the river", "in the city",
    "on the farm", "at school", "by the sea", "in the kitchen",
]


def _make_corpus(n: int = 200, seed: int = 0) -> list[str]:
    # A fixed seed keeps the trained vocabularies (and so the token ids) stable
    # across runs and machines.
    rng = random.Random(seed)
    templates = [
        lambda: f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_ADVERBS)}.",
        lambda: f"{rng.choice(_SUBJECTS)} was {rng.choice(_ADJECTIVES)} {rng.choice(_PLACES)}.",
        lambda: f"Why did {rng.choice(_SUBJECTS)} say that {rng.choice(_OBJECTS)} was {rng.choice(_ADJECTIVES)}?",
        lambda: f"{rng.choice(_OBJECTS)} is {rng.choice(_ADJECTIVES)} and {rng.choice(_ADJECTIVES)}, not {rng.choice(_ADJECTIVES)}!",
        lambda: f"On day {rng.randint(1, 31)}, {rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.randint(2, 99)} things {rng.choice(_PLACES)}.",
        lambda: f"I think {rng.choice(_OBJECTS)} was {rng.choice(['really', 'very', 'not', 'quite'])} {rng.choice(_ADJECTIVES)}.",
    ]
    sentences: list[str] = []
    seen: set[str] = set()
    while len(sentences) < n:
        s = rng.choice(templates)()
        s = s[0].upper() + s[1:]
        if s not in seen:
            seen.add(s)
            sentences.append(s)
    return sentences


FIXTURE_CORPUS: list[str] = _make_corpus()

# Every printable ASCII character goes into the base alphabet so text outside
# the corpus still tokenizes into pieces instead of collapsing to unk.
_ALPHABET = list(string.ascii_letters + string.digits + string.punctuation)


def _model_json(tok) -> dict:
    return json.loads(tok.to_str())["model"]


def build_tiny_bert(out_dir: str | Path) -> Path:
    """Lower-cased WordPiece tokenizer + 2-layer BertForMaskedLM (hidden 32)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    raw = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    raw.normalizer = normalizers.BertNormalizer(lowercase=True)
    raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=_VOCAB_SIZE,
        special_tokens=specials,
        initial_alphabet=[c for c in _ALPHABET if not c.isupper()],
        show_progress=False,
    )
    raw.train_from_iterator(FIXTURE_CORPUS, trainer=trainer)

    vocab: dict[str, int] = dict(_model_json(raw)["vocab"])
    # WordPiece only learns "##x" for characters it saw mid-word; without all of
    # them an unseen word with an unseen continuation becomes a single [UNK].
    for c in _ALPHABET:
        if not c.isupper() and f"##{c}" not in vocab:
            vocab[f"##{c}"] = len(vocab)

    # BertTokenizer rebuilds the normalizer, pre-tokenizer and [CLS]/[SEP]
    # template itself; using it (not a generic wrapper) makes the saved config
    # name BertTokenizer and return token_type_ids.
    tok = BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=256)
    tok.save_pretrained(out)

    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
        type_vocab_size=2,
        pad_token_id=tok.pad_token_id,
    )
    BertForMaskedLM(config).save_pretrained(out)
    return out


def build_tiny_gpt2(out_dir: str | Path) -> Path:
    """Byte-level BPE tokenizer + 2-layer GPT2LMHeadModel (n_embd 32)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    eos = "<|endoftext|>"
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        special_tokens=[eos],
        # The full 256-byte alphabet means any input string is encodable.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(FIXTURE_CORPUS, trainer=trainer)
    model_json = _model_json(raw)
    # tokenizers' BPE takes merges as (left, right) pairs; older tokenizer.json
    # files store them as "left right" strings.
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_json["merges"]]

    # GPT-2 has no pad token of its own; reusing eos is the standard choice and
    # is what lets GPT2ForSequenceClassification accept batches larger than 1.
    tok = GPT2Tokenizer(
        vocab=model_json["vocab"],
        merges=merges,
        unk_token=eos,
        bos_token=eos,
        eos_token=eos,
        pad_token=eos,
        model_max_length=256,
    )
    tok.save_pretrained(out)

    eos_id = tok.convert_tokens_to_ids(eos)
    config = GPT2Config(
        vocab_size=len(tok),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=256,
        # The defaults (50256) point outside a 500-token vocab.
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    GPT2LMHeadModel(config).save_pretrained(out)
    return out


def build_tiny_t5(out_dir: str | Path) -> Path:
    """Unigram tokenizer with T5's id layout + 2+2-layer T5ForConditionalGeneration."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    raw = Tokenizer(models.Unigram())
    # Same pre-tokenization T5Tokenizer applies, so the learned pieces carry
    # the "▁" word-start marker it expects.
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
        ]
    )
    trainer = trainers.UnigramTrainer(
        vocab_size=_VOCAB_SIZE - T5_NUM_SENTINELS,
        # Listing them first pins T5's layout: <pad>=0, </s>=1, <unk>=2.
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        initial_alphabet=_ALPHABET,
        show_progress=False,
    )
    raw.train_from_iterator(FIXTURE_CORPUS, trainer=trainer)
    pieces = [(p, float(s)) for p, s in _model_json(raw)["vocab"]]
    assert [p for p, _ in pieces[:3]] == ["<pad>", "</s>", "<unk>"], pieces[:3]

    # T5 puts sentinels at the end of the vocab in reverse, so <extra_id_0> is
    # the last id; span-corruption code often relies on that ordering.
    pieces += [(f"<extra_id_{i}>", 0.0) for i in reversed(range(T5_NUM_SENTINELS))]

    # T5Tokenizer installs the "$A </s>" / "$A </s> $B </s>" post-processor:
    # T5ForSequenceClassification pools at the eos token and raises if a row
    # has none.
    tok = T5Tokenizer(vocab=pieces, extra_ids=T5_NUM_SENTINELS, model_max_length=256)
    tok.save_pretrained(out)

    config = T5Config(
        vocab_size=len(tok),
        d_model=32,
        d_ff=64,
        d_kv=16,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        # transformers v5 has no default; without it a forward with labels fails.
        decoder_start_token_id=tok.pad_token_id,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    T5ForConditionalGeneration(config).save_pretrained(out)
    return out


def build_all(root: str | Path) -> dict[str, Path]:
    """Build the three tiny checkpoints under root/{bert,gpt2,t5}."""
    import torch

    torch.manual_seed(0)  # the same tiny weights in every session: thresholds hold run to run
    root = Path(root)
    return {
        "bert": build_tiny_bert(root / "bert"),
        "gpt2": build_tiny_gpt2(root / "gpt2"),
        "t5": build_tiny_t5(root / "t5"),
    }
