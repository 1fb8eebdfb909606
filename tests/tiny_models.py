"""Tiny BERT / GPT-2 / T5 checkpoints built from config, for fast offline tests.

Each builder trains a tokenizer (WordPiece, byte-level BPE, Unigram) on a small
generated corpus with lmctl's own trainer, the one `from_scratch` runs use (it
wraps it in the family's ``transformers`` tokenizer class), and saves a
randomly initialised model next to it. The resulting directory loads with the
``Auto*`` classes exactly like a hub checkpoint, with no network access.

Plain functions only: the test suite wraps them in fixtures.
"""

from __future__ import annotations

import random
from pathlib import Path

__all__ = [
    "ADJECTIVES",
    "ADVERBS",
    "FIXTURE_CORPUS",
    "OBJECTS",
    "PLACES",
    "SUBJECTS",
    "VERBS",
    "build_all",
    "build_tiny_bert",
    "build_tiny_gpt2",
    "build_tiny_t5",
    "make_corpus",
    "T5_NUM_SENTINELS",
]

# Small enough that building all three models takes about a second, large
# enough that common English words are whole tokens rather than characters.
_VOCAB_SIZE = 500
T5_NUM_SENTINELS = 20

SUBJECTS = [
    "the cat", "a dog", "my neighbour", "the old farmer", "our teacher",
    "the young pilot", "a tired student", "the chef", "my sister", "the band",
    "a small child", "the committee", "her brother", "the engineer", "a stranger",
]
VERBS = [
    "watched", "painted", "carried", "found", "cooked", "repaired", "sold",
    "described", "ignored", "borrowed", "cleaned", "opened", "liked", "hated",
    "reviewed",
]
OBJECTS = [
    "the movie", "a wooden chair", "the red bicycle", "an old map", "the garden",
    "a loaf of bread", "the broken window", "a new phone", "the letter",
    "the kitchen", "a heavy box", "the restaurant menu", "a blue kite",
]
ADJECTIVES = [
    "quiet", "bright", "slow", "happy", "strange", "cold", "warm", "noisy",
    "careful", "lazy", "brilliant", "boring", "terrible", "great", "gentle",
]
ADVERBS = [
    "quickly", "slowly", "carefully", "yesterday", "again", "today",
    "without a word", "in the morning", "after dinner", "at night",
]
PLACES = [
    "in the park", "at the station", "near the river", "in the city",
    "on the farm", "at school", "by the sea", "in the kitchen",
]


def make_corpus(n: int = 200, seed: int = 0) -> list[str]:
    """`n` distinct generated sentences over the word lists above."""
    # A fixed seed keeps the trained vocabularies (and so the token ids) stable
    # across runs and machines.
    rng = random.Random(seed)
    templates = [
        lambda: f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(ADVERBS)}.",
        lambda: f"{rng.choice(SUBJECTS)} was {rng.choice(ADJECTIVES)} {rng.choice(PLACES)}.",
        lambda: f"Why did {rng.choice(SUBJECTS)} say that {rng.choice(OBJECTS)} was {rng.choice(ADJECTIVES)}?",
        lambda: f"{rng.choice(OBJECTS)} is {rng.choice(ADJECTIVES)} and {rng.choice(ADJECTIVES)}, not {rng.choice(ADJECTIVES)}!",
        lambda: f"On day {rng.randint(1, 31)}, {rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.randint(2, 99)} things {rng.choice(PLACES)}.",
        lambda: f"I think {rng.choice(OBJECTS)} was {rng.choice(['really', 'very', 'not', 'quite'])} {rng.choice(ADJECTIVES)}.",
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


FIXTURE_CORPUS: list[str] = make_corpus()

def build_tiny_bert(out_dir: str | Path) -> Path:
    """Lower-cased WordPiece tokenizer + 2-layer BertForMaskedLM (hidden 32)."""
    from transformers import BertConfig, BertForMaskedLM

    from lmctl.tokenizer_training import train_wordpiece

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = train_wordpiece(FIXTURE_CORPUS, _VOCAB_SIZE, min_frequency=0, model_max_length=256)
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
    from transformers import GPT2Config, GPT2LMHeadModel

    from lmctl.tokenizer_training import train_byte_bpe

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # eos doubles as bos and pad (GPT2ForSequenceClassification needs a pad for batches > 1).
    tok = train_byte_bpe(FIXTURE_CORPUS, _VOCAB_SIZE, min_frequency=0, model_max_length=256)
    tok.save_pretrained(out)

    eos_id = tok.eos_token_id
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


def build_tiny_t5(out_dir: str | Path, feed_forward_proj: str = "relu") -> Path:
    """Unigram tokenizer with T5's id layout (sentinels last) + 2+2-layer T5ForConditionalGeneration.
    `feed_forward_proj="gated-gelu"`: T5 v1.1's gated feed-forward blocks (wi_0, wi_1 → wo)."""
    from transformers import T5Config, T5ForConditionalGeneration

    from lmctl.tokenizer_training import train_unigram

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = train_unigram(FIXTURE_CORPUS, _VOCAB_SIZE, min_frequency=1, model_max_length=256,
                        num_sentinels=T5_NUM_SENTINELS)
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
        feed_forward_proj=feed_forward_proj,
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
