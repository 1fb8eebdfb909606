"""Train a tokenizer on a corpus for a from-scratch model, in the family's own format.

The family table (lmctl.families) names the algorithm (a key of TRAINERS), the special
tokens and the `transformers` tokenizer class: WordPiece for BERT, byte-level BPE for
GPT-2 (and RoBERTa-like families, whose class adds <s> ... </s>), Unigram with
`<extra_id_N>` sentinels for T5. The saved directory reloads with `AutoTokenizer` like
any hub checkpoint. CJK text: BERT's normaliser puts spaces around every CJK character
(per-character tokens, as bert-base-chinese does); byte-level BPE can encode any string;
Unigram learns characters and frequent words and gets every character seen in training.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from pathlib import Path
from typing import Iterable

from lmctl.families import BERT, FAMILIES, GPT2, T5, Family
_ASCII = list(string.ascii_letters + string.digits + string.punctuation)


def _model_json(tok) -> dict:
    return json.loads(tok.to_str())["model"]


def _frequent_chars(texts: list[str], min_count: int = 1) -> list[str]:
    counts = Counter(ch for t in texts for ch in t if not ch.isspace())
    return [c for c, n in counts.items() if n >= min_count]


def _specials(family: Family) -> list[str]:
    """The family's special tokens in id order, each once."""
    return list(dict.fromkeys(family.special_tokens.values()))


def _tokenizer_class(family: Family):
    import transformers

    return getattr(transformers, family.tokenizer_class)


def train_wordpiece(texts: list[str], vocab_size: int, min_frequency: int, lowercase: bool = True,
                    model_max_length: int = 512, family: Family = BERT):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    raw = Tokenizer(models.WordPiece(unk_token=family.special_tokens["unk_token"]))
    raw.normalizer = normalizers.BertNormalizer(lowercase=lowercase, handle_chinese_chars=True)
    raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    alphabet = [c.lower() if lowercase else c for c in _ASCII + _frequent_chars(texts)]
    specials = _specials(family)
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
        special_tokens=specials, initial_alphabet=sorted(set(alphabet)),
    )
    raw.train_from_iterator(texts, trainer=trainer)
    vocab = dict(_model_json(raw)["vocab"])
    # WordPiece only learns "##x" for characters it saw mid-word; without all ASCII
    # continuations an unseen word would collapse into a single [UNK].
    missing = [f"##{c}" for c in dict.fromkeys(c.lower() if lowercase else c for c in _ASCII) if f"##{c}" not in vocab]
    # Room for them inside vocab_size: drop the last-learnt (rarest) multi-character pieces. A WordPiece
    # vocabulary is a plain set (greedy longest match), so removing whole-word pieces leaves it valid.
    tokens = sorted(vocab, key=vocab.get)
    excess = len(tokens) + len(missing) - vocab_size
    if excess > 0:
        droppable = [t for t in reversed(tokens) if t not in specials and len(t.removeprefix("##")) > 1]
        dropped = set(droppable[:excess])
        tokens = [t for t in tokens if t not in dropped]
    # The trainer numbers pieces in hash-map order, which differs between processes: sorted ids make
    # the same set of pieces always the same vocabulary. (Its ties between merges of equal count are
    # broken the same way, so now and then a few boundary pieces differ; see the README.)
    rest = sorted(set(tokens + missing) - set(specials), key=lambda t: (t.startswith("##"), len(t), t))
    vocab = {t: i for i, t in enumerate(specials + rest)}
    return _tokenizer_class(family)(vocab=vocab, do_lower_case=lowercase, tokenize_chinese_chars=True,
                                    model_max_length=model_max_length, **family.special_tokens)


def train_byte_bpe(texts: list[str], vocab_size: int, min_frequency: int, model_max_length: int = 1024,
                   family: Family = GPT2):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=_specials(family), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte: any string is encodable
    )
    raw.train_from_iterator(texts, trainer=trainer)
    model = _model_json(raw)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return _tokenizer_class(family)(vocab=model["vocab"], merges=merges, model_max_length=model_max_length,
                                    **family.special_tokens)


def train_unigram(texts: list[str], vocab_size: int, min_frequency: int = 1, model_max_length: int = 512,
                  num_sentinels: int | None = None, family: Family = T5):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    num_sentinels = family.num_sentinels if num_sentinels is None else num_sentinels
    specials = _specials(family)
    raw = Tokenizer(models.Unigram())
    # The pre-tokenisation T5Tokenizer applies, so learnt pieces carry its "▁" word marker.
    raw.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
    ])
    trainer = trainers.UnigramTrainer(
        vocab_size=max(vocab_size - num_sentinels, 50), show_progress=False,
        unk_token=family.special_tokens["unk_token"], special_tokens=specials,
        initial_alphabet=sorted(set(_ASCII + _frequent_chars(texts, min_frequency))),
        max_piece_length=16,
    )
    def too_small():
        from lmctl.errors import UserError

        chars = len({ch for t in texts for ch in t if not ch.isspace()} | set(_ASCII)) + 1  # + the "▁" marker
        return UserError(
            f"model.train_tokenizer.vocab_size={vocab_size}: a Unigram ({family.name}) vocabulary keeps every "
            f"character of the corpus ({chars} distinct) plus {num_sentinels} sentinels and {len(specials)} special "
            f"tokens; set vocab_size to well above {chars + num_sentinels + len(specials)}, or train on fewer texts "
            "(model.train_tokenizer.max_texts)"
        )

    try:
        raw.train_from_iterator(texts, trainer=trainer)
    except Exception as exc:  # tokenizers raises a bare Exception
        if "not large enough to contain all chars" not in str(exc):
            raise
        raise too_small() from None
    pieces = [(p, float(s)) for p, s in _model_json(raw)["vocab"]]
    pieces = _order_character_ladders(pieces, len(specials))
    excess = len(pieces) - (vocab_size - num_sentinels)
    if excess > 0:
        droppable = sorted((i for i, (p, _) in enumerate(pieces) if i >= len(specials) and len(p) > 1),
                           key=lambda i: (pieces[i][1], pieces[i][0]))
        if len(droppable) < excess:
            raise too_small()
        dropped = set(droppable[:excess])
        pieces = [piece for i, piece in enumerate(pieces) if i not in dropped]
    # Scores differ between processes in the last bits (float sums in varying order) and pieces of equal
    # score come out in varying order; encoding depends only on the scores, so rounded scores with ties
    # ordered by the piece make the ids repeatable.
    n = len(specials)
    pieces = pieces[:n] + sorted(((p, round(s, 9)) for p, s in pieces[n:]), key=lambda p: (-p[1], p[0]))
    # T5 puts sentinels last, in reverse: <extra_id_0> is the highest id.
    pieces += [(family.sentinel.format(i), 0.0) for i in reversed(range(num_sentinels))]
    return _tokenizer_class(family)(vocab=pieces, extra_ids=num_sentinels, model_max_length=model_max_length,
                                    **family.special_tokens)


def _order_character_ladders(pieces: list[tuple[str, float]], first: int) -> list[tuple[str, float]]:
    """The Unigram trainer adds the characters that did not make the cut as a run of pieces, each
    1e-4 below the last, in hash-map order (different in every process): sort each such run by
    character, keeping its scores, so the same corpus gives the same ids."""
    def step(i: int) -> bool:
        (a, sa), (b, sb) = pieces[i], pieces[i + 1]
        return len(a) == 1 and len(b) == 1 and abs(sa - sb - 1e-4) < 1e-6

    out, i = list(pieces), first  # the special tokens come first
    while i < len(pieces) - 1:
        j = i
        while j < len(pieces) - 1 and step(j):
            j += 1
        if j > i:
            run = pieces[i:j + 1]
            out[i:j + 1] = [(p, s) for (p, _), (_, s) in zip(sorted(run), run)]
        i = j + 1
    return out


TRAINERS = {"wordpiece": train_wordpiece, "byte-bpe": train_byte_bpe, "unigram": train_unigram}


def train_tokenizer(family: str, texts: Iterable[str], vocab_size: int, min_frequency: int,
                    lowercase: bool = True, model_max_length: int = 512):
    """The tokenizer `family` trains (see lmctl.families), on the non-blank `texts`."""
    texts = [t for t in texts if t and t.strip()]
    spec = FAMILIES[family]
    trainer = TRAINERS[spec.tokenizer]
    if trainer is train_wordpiece:  # the only one that folds case: byte-level BPE and Unigram keep it
        return trainer(texts, vocab_size, min_frequency, lowercase, model_max_length, family=spec)
    return trainer(texts, vocab_size, min_frequency, model_max_length=model_max_length, family=spec)


def tokenizer_for_run(cfg, texts: Iterable[str], name: str | None, console, accelerator, resumed_run: Path | None):
    """A training run's tokenizer: the configured one, the checkpoint's, or one trained on `texts`
    (a from-scratch model without model.tokenizer)."""
    from lmctl import models

    if cfg.model.tokenizer or name:
        return models.load_tokenizer(cfg.model.tokenizer or name, cfg.model.trust_remote_code,
                                     key="model.tokenizer" if cfg.model.tokenizer else "model.name_or_path")
    # Training a tokenizer twice need not give the same ids (WordPiece breaks rare ties differently
    # from one process to the next), and the weights are indexed by the first one's ids: a resumed
    # run reads the run's own tokenizer back, and in a multi-process run only rank 0 trains it.
    if resumed_run is not None and (resumed_run / "tokenizer_config.json").is_file():
        console.log(f"tokenizer: the run's own, from {resumed_run}")
        return models.load_tokenizer(str(resumed_run), False, key="output_dir")
    tokenizer = None
    if accelerator.is_main_process:
        import itertools
        import time

        spec, family = cfg.model.train_tokenizer, cfg.model.from_scratch.family
        start = time.perf_counter()
        texts = list(itertools.islice(texts, spec.max_texts))
        tokenizer = train_tokenizer(family, texts, spec.vocab_size, spec.min_frequency, spec.lowercase,
                                    model_max_length=cfg.training.max_length)
        console.log(f"tokenizer: trained {type(tokenizer).__name__} on {len(texts)} texts, vocab {len(tokenizer)} "
                    f"({time.perf_counter() - start:.1f}s)")
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        tokenizer = broadcast_object_list([tokenizer])[0]
    return tokenizer
