"""Tokenizers trained for from-scratch models (lmctl.tokenizer_training) are real tokenizers.

Each family's tokenizer, trained on English and on Chinese, must reload with
AutoTokenizer after save_pretrained, stay within the requested vocabulary, put its
special tokens where the family's models expect them, and tokenize unseen text
sensibly (few or no [UNK]s, exact round trips where the format promises them).
"""

from __future__ import annotations

import csv
import random
import unicodedata

import pytest

from helpers import SHARED_DATA
from tiny_models import FIXTURE_CORPUS
from lmctl.errors import UserError
from lmctl.tokenizer_training import train_tokenizer

ZH_FILE = SHARED_DATA / "zh" / "chnsenticorp" / "train.tsv"
T5_SENTINELS = 100  # <extra_id_0> ... <extra_id_99>, as in T5's own vocabulary
VISIBLE_ASCII = {chr(c) for c in range(33, 127)}  # printable ASCII but the space: always in a Unigram alphabet


def _english(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    subjects = ["The cat", "A dog", "My teacher", "The old farmer", "Our neighbour", "The pilot", "Her brother"]
    verbs = ["watched", "painted", "carried", "found", "cooked", "repaired", "borrowed", "cleaned"]
    objects = ["the movie", "a wooden chair", "the red bicycle", "an old map", "the garden", "a heavy box"]
    tails = ["yesterday.", "in the morning.", "at the station!", "near the river?", "again, slowly.", "for 3 days."]
    return [f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} {rng.choice(tails)}" for _ in range(n)]


# The tiny-model corpus adds vocabulary variety: with it the trained WordPiece vocabulary
# fills its budget, so the ##-continuations added after training have to fit inside it.
EN_TRAIN = FIXTURE_CORPUS + _english(400, 0)
EN_HELD_OUT = _english(50, 1)


def _reload(tok, tmp_path):
    from transformers import AutoTokenizer

    tok.save_pretrained(tmp_path)
    return AutoTokenizer.from_pretrained(tmp_path)


def _unk_rate(tok, texts) -> float:
    ids = [i for t in texts for i in tok(t, add_special_tokens=False)["input_ids"]]
    assert ids
    return sum(i == tok.unk_token_id for i in ids) / len(ids)


# ---- English ---------------------------------------------------------------------------

@pytest.mark.parametrize("vocab_size", [300, 1000])
def test_bert_wordpiece(tmp_path, vocab_size):
    tok = _reload(train_tokenizer("bert", EN_TRAIN, vocab_size=vocab_size, min_frequency=2), tmp_path)
    assert type(tok).__name__.startswith("BertTokenizer")
    assert len(tok) <= vocab_size
    for name, token in (("pad", "[PAD]"), ("unk", "[UNK]"), ("cls", "[CLS]"), ("sep", "[SEP]"), ("mask", "[MASK]")):
        assert getattr(tok, f"{name}_token") == token
    ids = tok("The cat found the red bicycle.")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    pair = tok("The cat.", "A dog.")["input_ids"]
    assert pair.count(tok.sep_token_id) == 2 and pair[0] == tok.cls_token_id
    # [MASK] in text is one token (fill-mask inputs rely on it), even though the tokenizer lowercases.
    masked = tok.tokenize("The [MASK] watched the movie.")
    assert masked.count("[MASK]") == 1 and masked[0] == "the"
    assert _unk_rate(tok, EN_HELD_OUT) == 0.0
    # A word never seen in training still splits into pieces, not one [UNK].
    assert tok.unk_token not in tok.tokenize("Zyxwvut quokkas")
    assert tok.decode(tok("the cat watched the movie.")["input_ids"], skip_special_tokens=True) == \
        "the cat watched the movie."


@pytest.mark.parametrize("vocab_size", [300, 1000])
def test_gpt2_byte_level_bpe(tmp_path, vocab_size):
    tok = _reload(train_tokenizer("gpt2", EN_TRAIN, vocab_size=vocab_size, min_frequency=2), tmp_path)
    assert len(tok) <= vocab_size
    assert tok.eos_token == tok.bos_token == tok.pad_token == "<|endoftext|>"
    assert tok.eos_token_id == tok.bos_token_id == tok.pad_token_id
    if vocab_size >= 1000:  # room for merges: common words are single tokens, not spelt out byte by byte
        assert len(tok("The cat watched the movie")["input_ids"]) <= 6
    for text in EN_HELD_OUT + ["Ünïcödé ☃ and émojis 🎉, tabs\tand  double spaces"]:
        assert tok.decode(tok(text)["input_ids"]) == text


@pytest.mark.parametrize("vocab_size", [300, 1000])
def test_t5_unigram(tmp_path, vocab_size):
    tok = _reload(train_tokenizer("t5", EN_TRAIN, vocab_size=vocab_size, min_frequency=2), tmp_path)
    assert len(tok) <= vocab_size
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert (tok.pad_token, tok.eos_token, tok.unk_token) == ("<pad>", "</s>", "<unk>")
    sentinels = [f"<extra_id_{i}>" for i in range(T5_SENTINELS)]
    ids = tok.convert_tokens_to_ids(sentinels)
    assert tok.unk_token_id not in ids and len(set(ids)) == T5_SENTINELS
    # T5's layout: sentinels last, <extra_id_0> the highest id.
    assert ids == list(range(len(tok) - 1, len(tok) - 1 - T5_SENTINELS, -1))
    for s, i in zip(sentinels[:3] + sentinels[-1:], ids[:3] + ids[-1:]):
        assert tok(f"a {s} b", add_special_tokens=False)["input_ids"].count(i) == 1
        assert tok.convert_ids_to_tokens(tok(s, add_special_tokens=False)["input_ids"]) in ([s], ["▁", s])
    enc = tok("The cat found the red bicycle.")["input_ids"]
    assert enc[-1] == tok.eos_token_id  # T5 appends eos, no bos
    assert _unk_rate(tok, EN_HELD_OUT) == 0.0
    assert tok.decode(enc, skip_special_tokens=True) == "The cat found the red bicycle."


def test_empty_and_blank_texts_are_ignored():
    a = train_tokenizer("gpt2", EN_TRAIN, vocab_size=300, min_frequency=2)
    b = train_tokenizer("gpt2", EN_TRAIN + ["", "   ", "\n"], vocab_size=300, min_frequency=2)
    assert a.get_vocab() == b.get_vocab()


# ---- Chinese ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chinese() -> tuple[list[str], list[str]]:
    """ChnSentiCorp reviews: 400 to train on, 60 held out."""
    if not ZH_FILE.is_file():
        pytest.skip(f"Chinese sample data not found at {ZH_FILE} (set LMCTL_SHARED_DATA)")
    with ZH_FILE.open(encoding="utf-8") as f:
        rows = [r["text_a"] for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if r.get("text_a")]
    assert len(rows) >= 460
    return rows[:400], rows[400:460]


def _is_cjk(ch: str) -> bool:
    return "CJK" in unicodedata.name(ch, "")


def test_bert_chinese_is_one_token_per_character(chinese, tmp_path):
    train, held_out = chinese
    tok = _reload(train_tokenizer("bert", train, vocab_size=4000, min_frequency=2), tmp_path)
    assert len(tok) <= 4000
    assert _unk_rate(tok, held_out) < 0.05
    for text in held_out:
        for token in tok.tokenize(text):
            piece = token.removeprefix("##")
            if any(_is_cjk(ch) for ch in piece):
                # bert-base-chinese style: a CJK character never merges with anything.
                assert len(piece) == 1 and not token.startswith("##"), (token, text)
    cjk_run = "这本书居然成了孩子的最爱"
    assert tok.tokenize(cjk_run) == list(cjk_run)


def test_gpt2_chinese_round_trips_with_no_unknowns(chinese, tmp_path):
    train, held_out = chinese
    tok = _reload(train_tokenizer("gpt2", train, vocab_size=2000, min_frequency=2), tmp_path)
    assert len(tok) <= 2000
    for text in held_out + ["罕见字：龘靐齉，和 English 混合。"]:
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids  # (unk is <|endoftext|>: plain text never produces it)
        assert tok.decode(ids) == text
    # Byte-level BPE learns multi-byte Chinese characters as single tokens when frequent.
    assert len(tok("的")["input_ids"]) == 1


def test_t5_chinese(chinese, tmp_path):
    train, held_out = chinese
    tok = _reload(train_tokenizer("t5", train, vocab_size=4000, min_frequency=2), tmp_path)
    assert len(tok) <= 4000
    assert _unk_rate(tok, held_out) < 0.05
    assert tok.convert_tokens_to_ids("<extra_id_0>") == len(tok) - 1
    text = "这本书居然成了孩子的最爱"
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text


def test_t5_vocabulary_smaller_than_the_alphabet_is_a_clear_error(chinese):
    # 400 reviews hold ~2,100 distinct characters; Unigram must keep every one.
    train, _ = chinese
    with pytest.raises(UserError, match="vocab_size"):
        train_tokenizer("t5", train, vocab_size=1000, min_frequency=2)


@pytest.mark.parametrize("family", ["bert", "gpt2", "t5"])
def test_requested_size_is_respected_when_tight(chinese, family):
    # A budget not far above what the alphabet needs: the ##-continuations (BERT) and the
    # characters the Unigram trainer appends past its budget (T5) must still fit in it.
    train, _ = chinese
    vocab_size = len({ch for t in train for ch in t if not ch.isspace()}) + 250
    tok = train_tokenizer(family, train, vocab_size=vocab_size, min_frequency=2)
    assert len(tok) <= vocab_size


def test_t5_smallest_possible_vocabulary_is_exact(chinese):
    # Every character + the "▁" marker + pad/eos/unk + 100 sentinels is the least a Unigram vocabulary
    # can be; at that size the result is exactly that size, one below is a clear error (not a silent overshoot).
    train, held_out = chinese
    smallest = len({ch for t in train for ch in t if not ch.isspace()} | VISIBLE_ASCII) + 1 + 3 + T5_SENTINELS
    tok = train_tokenizer("t5", train, vocab_size=smallest, min_frequency=2)
    assert len(tok) == smallest
    assert _unk_rate(tok, held_out) < 0.05
    with pytest.raises(UserError, match=f"vocab_size={smallest - 1}"):
        train_tokenizer("t5", train, vocab_size=smallest - 1, min_frequency=2)


_SAME_IDS_SCRIPT = """
import hashlib, json, sys
from lmctl.tokenizer_training import train_tokenizer
tok = train_tokenizer(sys.argv[1], json.load(sys.stdin), 600, 2)
print(hashlib.sha256(json.dumps(sorted(tok.get_vocab().items())).encode()).hexdigest())
"""


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_same_corpus_gives_the_same_ids_in_every_process(family):
    # The trainers number pieces (and order Unigram's unused characters) in hash-map order, which
    # changes from process to process; a seeded from-scratch run must still get the same ids.
    import json
    import subprocess
    import sys

    corpus = json.dumps(EN_TRAIN)  # handed over on stdin: the child imports no test module
    hashes = {subprocess.run([sys.executable, "-c", _SAME_IDS_SCRIPT, family], input=corpus, check=True,
                             capture_output=True, text=True).stdout.strip() for _ in range(4)}
    assert len(hashes) == 1
