"""Token classification (NER, tagging): one tag per word, read from the word's first sub-token.

A row is a sentence: its words and, to train and evaluate, one tag per word (CoNLL files, which
lmctl.data reads as columns `tokens` and `tags`, or JSON lines {"tokens": [...], "tags": [...]}).
predict also takes plain text, split into words by `split_words` with each word's character offsets
kept, so its entities are spans of the text as given.

Each word is tokenized on its own, with the space that comes before it in running text: GPT-2's
byte-level BPE marks a word start with that space ("Ġword"), while WordPiece and SentencePiece drop
or add it themselves, so every family sees a word as it sees it inside a sentence. The first
sub-token carries the word's tag (the first that holds a character of the word: not a bare '▁' or
'Ġ' word-start piece); the others are left out of the loss (-100), or with
`tagging.label_all_tokens` the later ones carry it too (B- turned I-, as run_ner does).

A sentence longer than training.max_length is cut, between words, into windows that share about
`tagging.stride` tokens with the next. Each word is read from the one window where it has the most
context on both sides (BERT's rule for SQuAD's windows), so every word gets exactly one tag. The
mapping back (sentence, word, position) travels in the encoded rows, as question answering's does.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import numpy as np

from lmctl.errors import UserError
from lmctl.tasks.base import Task, check_column_values_are_text, reject, share

# What the model's forward takes; the bookkeeping columns stay behind in the encoded rows.
_MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")
_IOB2 = re.compile(r"[BI]-.+")
_METRICS = ("f1", "precision", "recall")


# ---- words ----------------------------------------------------------------------------------------
def _is_cjk(ch: str) -> bool:
    """A Chinese character (BERT's ranges) or Japanese kana: a word of its own, as text has no spaces there."""
    cp = ord(ch)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F or 0x3040 <= cp <= 0x30FF)


def split_words(text: str) -> list[tuple[int, int]]:
    """The (start, end) character offsets of the words of plain text: whitespace separates words;
    each punctuation mark or symbol (Unicode categories P and S), Chinese character and kana is a word
    of its own; letters, digits and marks in a row make one word ("Blackburn's" is three words)."""
    spans, start = [], None
    for i, ch in enumerate(text):
        alone = not ch.isspace() and (_is_cjk(ch) or unicodedata.category(ch)[0] in "PS")
        if start is not None and (ch.isspace() or alone):
            spans.append((start, i))
            start = None
        if alone:
            spans.append((i, i + 1))
        elif start is None and not ch.isspace():
            start = i
    if start is not None:
        spans.append((start, len(text)))
    return spans


def join_words(words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Words given as a list → (the text predict's entities point into, each word's offsets): one space
    between words, none between two Chinese words (a Chinese sentence reads without spaces)."""
    parts, spans, at = [], [], 0
    for i, word in enumerate(words):
        if i and not (all(map(_is_cjk, words[i - 1])) and all(map(_is_cjk, word))):
            parts.append(" ")
            at += 1
        spans.append((at, at + len(word)))
        parts.append(word)
        at += len(word)
    return "".join(parts), spans


# ---- tags and entities ----------------------------------------------------------------------------
def _prefix_and_type(tag: str) -> tuple[str, str]:
    # seqeval's reading (prefix first): 'B-PER' → ('B', 'PER'), 'O' → ('O', '_'), 'PER' → ('P', 'ER').
    return tag[0], tag[1:].split("-", 1)[-1] or "_"


def entity_spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """The entities of a tag sequence as (type, first word, last word), chunked as seqeval's default
    mode (conlleval) chunks them, so predict's spans are the entities its F1 counts: B- starts one, so
    does an I- after O or after another type; E-/S- (IOBES) end one. Written out, not imported:
    importing seqeval pulls in scikit-learn, a second on every predict and server start; a test holds
    it to seqeval's `get_entities`."""
    spans, begin, prev, prev_type = [], 0, "O", ""
    for i, tag in enumerate([*tags, "O"]):
        cur, cur_type = _prefix_and_type(tag)
        ends = (prev in "ES" or (prev in "BI" and cur in "BSO")
                or (prev not in "O." and prev_type != cur_type))
        starts = (cur in "BS" or (prev in "ESO" and cur in "EI")
                  or (cur not in "O." and prev_type != cur_type))
        if ends:
            spans.append((prev_type, begin, i - 1))
        if starts:
            begin = i
        prev, prev_type = cur, cur_type
    return spans


def not_iob2(tags: list[str]) -> list[int]:
    """Positions of tags outside IOB2: not O, B-TYPE or I-TYPE, or an I- tag that follows no B- or I-
    tag of its type."""
    bad, prev = [], "O"
    for i, tag in enumerate(tags):
        if tag != "O" and (not _IOB2.fullmatch(tag) or
                           (tag[0] == "I" and not (_IOB2.fullmatch(prev) and prev[2:] == tag[2:]))):
            bad.append(i)
        prev = tag
    return bad


def _tag_order(tag: str) -> tuple:
    """O first, then by type, B- before I-: the id order a model's config lists."""
    prefix, type_ = _prefix_and_type(tag)
    return tag != "O", type_, prefix, tag


# ---- windows --------------------------------------------------------------------------------------
def plan_windows(lengths: list[int], budget: int, stride: int) -> tuple[list[tuple[int, int]], list[int]]:
    """Windows over words of `lengths` sub-tokens: (first word, end word) pairs whose sub-tokens fit in
    `budget` (a longer word makes a window alone), each after the first starting where about `stride`
    tokens of the one before remain; and for each word the window it is read from, the one where it has
    the most context (the fewer tokens on its two sides), the first of equals."""
    n = len(lengths)
    windows, start = [], 0
    while True:
        end, used = start, 0
        while end < n and (end == start or used + lengths[end] <= budget):
            used += lengths[end]
            end += 1
        windows.append((start, end))
        if end >= n:
            break
        # Step back over `stride` tokens of this window, but always move on by one word at least.
        nxt, shared = end, 0
        while nxt - 1 > start and shared + lengths[nxt - 1] <= stride:
            nxt -= 1
            shared += lengths[nxt]
        start = nxt
    owner, best = [0] * n, [-1] * n
    for k, (start, end) in enumerate(windows):
        before, total = 0, sum(lengths[start:end])
        for w in range(start, end):
            context = min(before, total - before - lengths[w])
            if context > best[w]:
                best[w], owner[w] = context, k
            before += lengths[w]
    return windows, owner


class TokenClassificationTask(Task):
    name = "token-classification"
    auto_class = "AutoModelForTokenClassification"
    main_metric = "f1"
    # Per-type metrics are TYPE_f1, TYPE_precision, TYPE_recall; the strict ones strict_f1, ...: the
    # declared names end them, so their direction is declared too (base.metric_direction).
    higher_is_better = ("f1", "precision", "recall", "accuracy")
    lower_is_better = ("loss",)
    label_keys = ("data.label_column",)
    word_list_keys = ("data.text_column",)
    config_defaults = {"data.text_column": "tokens", "data.label_column": "tags"}
    onnx_outputs = ("logits",)
    predict_modes = ("tag",)
    mode = "tag"

    def __init__(self, cfg, console):
        self.cfg = cfg
        self.console = console
        self.words_column = cfg.data.text_column
        self.tags_column = cfg.data.label_column
        self.max_length = cfg.training.max_length
        self.label_all_tokens = cfg.tagging.label_all_tokens
        self.stride = cfg.tagging.stride if cfg.tagging.stride is not None else self.max_length // 4
        self.label_names: list[str] = []

    @classmethod
    def check_config(cls, cfg) -> None:
        stride, length = cfg.tagging.stride, cfg.training.max_length
        if stride is not None and 2 * stride >= length:
            raise ValueError(f"tagging.stride: {stride} tokens is half of training.max_length={length} or more, so "
                             f"windows would share more than they move on; use a stride below {(length + 1) // 2} "
                             f"(e.g. {max(1, length // 4)})")

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Known once the tags are (fit or load_model): gates and metric_for_best are checked against them."""
        per_type = tuple(f"{t}_{m}" for t in self.entity_types() for m in _METRICS)
        return (*_METRICS, "accuracy", *(f"strict_{m}" for m in _METRICS), "loss", *per_type)

    def entity_types(self) -> list[str]:
        """The entity types the tags name (PER of B-PER and I-PER), as seqeval reads them."""
        return sorted({_prefix_and_type(t)[1] for t in self.label_names if t != "O"})

    def columns(self, with_labels: bool) -> dict[str, str | None]:
        cols = {"data.text_column": self.words_column}
        if with_labels:
            cols["data.label_column"] = self.tags_column
        return cols

    def texts(self, ds):
        """The sentences as text, for a tokenizer trained on them."""
        for value in ds[self.words_column]:
            yield value if isinstance(value, str) else join_words(list(value))[0]

    # ---- labels -----------------------------------------------------------------
    def _tags(self, ds, source: str, names: list[str] | None) -> list[list[str]]:
        """Each row's tags as text; numbers index into `names` (data.label_names)."""
        column = self.tags_column
        out = []
        for i, value in enumerate(ds[column]):
            if not isinstance(value, (list, tuple)):
                raise reject(source, i, f"column '{column}' holds {value!r}, not a list of tags (one per word)")
            tags = []
            for tag in value:
                if isinstance(tag, str) and tag.strip():
                    tags.append(tag.strip())
                elif isinstance(tag, int) and not isinstance(tag, bool) and names and 0 <= tag < len(names):
                    tags.append(names[tag])
                else:
                    raise reject(source, i, f"tag {tag!r} in column '{column}' is not a tag; tags are text (B-PER, O),"
                                            " or numbers that index data.label_names")
            out.append(tags)
        return out

    def fit(self, train) -> None:
        source = f"data.train_file column '{self.tags_column}'"
        names = self.cfg.data.label_names
        seen = {t for tags in self._tags(train, source, names) for t in tags}
        if names:
            missing = sorted(seen - set(names))
            if missing:
                raise UserError(f"data.label_names: tag '{missing[0]}' of the train data is not listed; add it")
            self.label_names = list(names)
        elif len(seen) < 2:
            raise UserError(f"{source}: only one tag ({', '.join(map(repr, seen)) or 'none'}); token classification "
                            "needs at least two (O and an entity's tags)")
        else:
            self.label_names = sorted(seen, key=_tag_order)

    def _label_ids(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}

    # ---- models -----------------------------------------------------------------
    def build_model(self, name_or_path: str | None, tokenizer):
        from lmctl.models import build_model

        return build_model(self.auto_class, self.cfg.model, name_or_path, tokenizer, self.max_length,
                           num_labels=len(self.label_names), id2label=dict(enumerate(self.label_names)),
                           label2id=self._label_ids())

    def load_model(self, path: str, tokenizer, source: str):
        from lmctl.models import load_model

        model = load_model(self.auto_class, path, tokenizer, key=source,
                           allow_pickle=self.cfg.model.allow_pickle_weights)
        self.label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        return model

    # ---- data -------------------------------------------------------------------
    def on_bind(self) -> None:
        tokenizer = self.tokenizer
        if tokenizer is None:
            return
        # The special tokens around one word ([CLS] x [SEP], x </s>, or none): every window gets them.
        probe = tokenizer(["x"], is_split_into_words=True)
        ids, words = probe["input_ids"], probe.word_ids()
        first, last = words.index(0), len(words) - 1 - words[::-1].index(0)
        self._prefix, self._suffix = list(ids[:first]), list(ids[last + 1:])
        self._budget = self.max_length - len(self._prefix) - len(self._suffix)
        if self._budget < 1:
            raise UserError(f"training.max_length: {self.max_length} tokens leave no room for words beside the "
                            f"tokenizer's {len(self._prefix) + len(self._suffix)} special tokens; raise it")
        self._type_ids = "token_type_ids" in tokenizer.model_input_names
        unknown = tokenizer.unk_token_id
        self._unknown = [unknown if unknown is not None else tokenizer.pad_token_id]

    def _pieces(self, sentences: list[list[str]]) -> tuple[list[list[list[int]]], list[list[int]]]:
        """Each word's sub-token ids, and which of them carries its tag: the first that holds a character
        of the word. SentencePiece and byte-level BPE often start a rare word with a bare word-start piece
        ('▁' or 'Ġ' alone, the same token for every such word), which says nothing of the word: with the tag
        on it the tests' tiny T5 reached F1 0.19 in 6 epochs, with the tag on the next piece 0.77 (and a
        left-to-right GPT-2 would tag a word before seeing any of it). Words are tokenized once each, with
        the space before them; one the tokenizer turns into nothing (a control character) becomes the
        unknown token: it still gets a tag."""
        distinct = list(dict.fromkeys(w for words in sentences for w in words))
        ids = self.tokenizer([" " + w for w in distinct], add_special_tokens=False)["input_ids"] if distinct else []
        ids = [list(i) or self._unknown for i in ids]
        bare = {i for i in {word[0] for word in ids} if not self.tokenizer.decode([i]).strip()}
        table = {w: (i, int(len(i) > 1 and i[0] in bare)) for w, i in zip(distinct, ids)}
        return ([[table[w][0] for w in words] for words in sentences],
                [[table[w][1] for w in words] for words in sentences])

    def _sentences(self, ds, source: str) -> tuple[list[list[str]], list[str], list[list[tuple[int, int]]]]:
        """(words, text, each word's offsets in the text) per row: a list of words is joined into a text,
        a text is split into words."""
        check_column_values_are_text(ds, self.words_column, source, words=True)
        sentences, texts, offsets = [], [], []
        for value in ds[self.words_column]:
            if isinstance(value, str):
                text, spans = value, split_words(value)
                words = [text[a:b] for a, b in spans]
            else:
                words = [w.strip() for w in value]
                text, spans = join_words(words)
            sentences.append(words)
            texts.append(text)
            offsets.append(spans)
        return sentences, texts, offsets

    def encode(self, ds, split: str, source: str):
        """Rows → windows (one per sentence unless it is longer than max_length). Training windows carry
        `labels`; evaluation and prediction windows also what reading them back needs: `example` (the
        row), `word_index` and `word_pos` (the words read from this window and their tagged sub-token),
        `n_words`; evaluation the gold tags of those words, prediction the row's text, words and offsets
        (on the window that reads its first word)."""
        from datasets import Dataset

        with_labels, train = split != "predict", split == "train"
        sentences, texts, offsets = self._sentences(ds, source)
        tags = self._check_tags(ds, sentences, source) if with_labels else None
        label_ids = self._label_ids()
        # label_all_tokens: a word's later sub-tokens carry its tag with B- turned I- (run_ner's rule).
        inside = [label_ids.get("I-" + t[2:], i) if t.startswith("B-") else i for i, t in enumerate(self.label_names)]
        prefix, suffix, budget = self._prefix, self._suffix, self._budget
        rows: dict[str, list] = {k: [] for k in ("input_ids", "attention_mask", "length")}
        if self._type_ids:
            rows["token_type_ids"] = []
        if with_labels:
            rows["labels"] = []
        if not train:
            rows.update(example=[], word_index=[], word_pos=[], n_words=[])
            rows.update({"gold": []} if with_labels else {"text": [], "words": [], "offsets": []})
        split_rows = 0
        for e, (words, pieces, tagged) in enumerate(zip(sentences, *self._pieces(sentences))):
            lengths = [min(len(p), budget) for p in pieces]
            windows, owner = plan_windows(lengths, budget, self.stride)
            split_rows += len(windows) > 1
            for k, (start, end) in enumerate(windows):
                ids, firsts, ends = list(prefix), [], []  # per word: its tagged piece, the end of its pieces
                for w in range(start, end):
                    firsts.append(len(ids) + min(tagged[w], lengths[w] - 1))
                    ids.extend(pieces[w][:budget])  # a word longer than a window keeps its first pieces
                    ends.append(len(ids))
                ids.extend(suffix)
                rows["input_ids"].append(ids)
                rows["attention_mask"].append([1] * len(ids))
                rows["length"].append(len(ids))
                if self._type_ids:
                    rows["token_type_ids"].append([0] * len(ids))
                if with_labels:
                    labels = [-100] * len(ids)
                    for w, pos, stop in zip(range(start, end), firsts, ends):
                        tag = label_ids.get(tags[e][w])  # None: a tag the model does not know (evaluation)
                        if tag is None:
                            continue
                        labels[pos] = tag
                        if self.label_all_tokens:
                            labels[pos + 1:stop] = [inside[tag]] * (stop - pos - 1)
                    rows["labels"].append(labels)
                if train:
                    continue
                owned = [w for w in range(start, end) if owner[w] == k]
                rows["example"].append(e)
                rows["word_index"].append(owned)
                rows["word_pos"].append([firsts[w - start] for w in owned])
                rows["n_words"].append(len(words))
                if with_labels:
                    rows["gold"].append([tags[e][w] for w in owned])
                else:
                    reads_first = bool(owned) and owned[0] == 0
                    rows["text"].append(texts[e] if reads_first else "")
                    rows["words"].append(words if reads_first else [])
                    rows["offsets"].append([list(o) for o in offsets[e]] if reads_first else [])
        if split_rows:
            # Not a truncation (every word is in some window), but why there are more rows than sentences.
            self.console.log(f"{source}: {split_rows} of {len(sentences)} sentences did not fit in one window of "
                             f"{self.max_length} tokens and were split into overlapping windows "
                             f"({len(rows['input_ids'])} windows in all, tagging.stride={self.stride})")
        return Dataset.from_dict(rows)

    def _check_tags(self, ds, sentences: list[list[str]], source: str) -> list[list[str]]:
        """The rows' tags, one per word; tags outside IOB2 and tags the model does not know are counted
        in a warning (training never meets the latter: `fit` learnt its tags from the same rows)."""
        tags = self._tags(ds, source, self.cfg.data.label_names)
        for i, (words, row) in enumerate(zip(sentences, tags)):
            if len(words) != len(row):
                raise reject(source, i, f"{len(words)} words in column '{self.words_column}' but {len(row)} tags in "
                                        f"column '{self.tags_column}'; give one tag per word")
        total = sum(len(row) for row in tags)
        bad = [(i, row[j]) for i, row in enumerate(tags) for j in not_iob2(row)]
        if bad:
            row, tag = bad[0]
            self.console.warn_count(len(bad), total, lambda n, total: (
                f"{source}: {n} of {total} tags ({share(n, total)}) are not IOB2 (first: {tag!r} in row {row + 1}): "
                "tags are O, B-TYPE and I-TYPE, an I- after a B- or I- of its type; f1 chunks them as conlleval "
                "does, strict_f1 as IOB2 allows"))
        known = set(self.label_names)
        unknown = [t for row in tags for t in row if t not in known]
        if unknown:
            self.console.warn_count(len(unknown), total, lambda n, total: (
                f"{source}: {n} of {total} tags ({share(n, total)}) are not among the model's (first: "
                f"{unknown[0]!r}); it cannot predict them, so their entities count as missed"))
        return tags

    def collate(self, features: list[dict]) -> dict:
        import torch

        # Always pad on the right: position p of the logits must be token p of the window (word_pos).
        batch = self.tokenizer.pad([{k: f[k] for k in _MODEL_KEYS if k in f} for f in features],
                                   padding=True, padding_side="right", return_tensors="pt")
        if "labels" in features[0]:
            width = batch["input_ids"].shape[1]
            batch["labels"] = torch.tensor([f["labels"] + [-100] * (width - len(f["labels"])) for f in features])
        return batch

    # ---- evaluation and prediction ------------------------------------------------
    def eval_step(self, model, batch) -> dict:
        batch = {k: v for k, v in batch.items() if k != "labels"}
        return {"logits": model(**batch).logits.float()}

    def count_examples(self, encoded) -> int:
        """Sentences, not windows: what `lmctl evaluate` reports as examples."""
        return len(set(encoded["example"]))

    def _word_log_probs(self, outputs: dict[str, Any], encoded) -> list[np.ndarray]:
        """Per sentence, a (words, tags) array of log-probabilities, each word's row from the window
        that reads it; a word read by no window or by two is a bug, and raises."""
        examples, word_index, word_pos = encoded["example"][:], encoded["word_index"][:], encoded["word_pos"][:]
        n_words = encoded["n_words"][:]
        sentences: dict[int, np.ndarray] = {}
        reads: dict[int, np.ndarray] = {}
        for f, e in enumerate(examples):
            if e not in sentences:
                sentences[e] = np.zeros((n_words[f], len(self.label_names)))
                reads[e] = np.zeros(n_words[f], dtype=int)
            if not word_pos[f]:
                continue
            rows = np.asarray(outputs["logits"][f], dtype=np.float64)[word_pos[f]]
            top = rows.max(-1, keepdims=True)
            sentences[e][word_index[f]] = rows - top - np.log(np.exp(rows - top).sum(-1, keepdims=True))
            reads[e][word_index[f]] += 1
        for e, count in reads.items():
            if (count != 1).any():
                raise RuntimeError(f"sentence {e}: words read {count.tolist()} times; each must be read once")
        return [sentences[e] for e in sorted(sentences)]

    def compute_metrics(self, outputs: dict[str, Any], encoded) -> dict[str, float]:
        from lmctl import metrics

        log_probs = self._word_log_probs(outputs, encoded)
        gold: dict[int, list[str]] = {}
        for e, owned, tags in zip(encoded["example"][:], encoded["word_index"][:], encoded["gold"][:]):
            row = gold.setdefault(e, [""] * len(log_probs[e]))
            for w, tag in zip(owned, tags):
                row[w] = tag
        references = [gold[e] for e in range(len(log_probs))]
        predictions = [[self.label_names[i] for i in lp.argmax(-1)] for lp in log_probs]
        seqeval = metrics.load("seqeval")
        lenient = seqeval.compute(predictions=predictions, references=references)
        strict = seqeval.compute(predictions=predictions, references=references, mode="strict", scheme="IOB2")
        result = {m: lenient[f"overall_{m}"] for m in (*_METRICS, "accuracy")}
        result.update({f"strict_{m}": strict[f"overall_{m}"] for m in _METRICS})
        # A type with no entity in the data nor the predictions scores 0: its key is always there for gates.
        result.update({f"{t}_{m}": lenient.get(t, {}).get(m, 0.0) for t in self.entity_types() for m in _METRICS})
        ids = self._label_ids()
        losses = [-lp[w, ids[t]] for lp, tags in zip(log_probs, references) for w, t in enumerate(tags) if t in ids]
        result["loss"] = float(np.mean(losses)) if losses else 0.0
        return result

    def predict_records(self, outputs: dict[str, Any], encoded) -> list[dict]:
        """{"text", "tokens", "tags", "entities": [{"label", "start", "end", "text", "score"}]} per row:
        an entity's offsets are characters of the text (text[start:end] is its text), its score the mean
        probability of its words' tags."""
        log_probs = self._word_log_probs(outputs, encoded)
        first = {e: f for f, (e, owned) in enumerate(zip(encoded["example"][:], encoded["word_index"][:]))
                 if owned and owned[0] == 0}
        texts, words, offsets = encoded["text"][:], encoded["words"][:], encoded["offsets"][:]
        records = []
        for e, lp in enumerate(log_probs):
            f = first[e]
            text, spans = texts[f], offsets[f]
            tags = [self.label_names[i] for i in lp.argmax(-1)]
            scores = np.exp(lp.max(-1))
            entities = []
            for type_, a, b in entity_spans(tags):
                start, end = spans[a][0], spans[b][1]
                entities.append({"label": type_, "start": start, "end": end, "text": text[start:end],
                                 "score": round(float(scores[a:b + 1].mean()), 6)})
            records.append({"text": text, "tokens": list(words[f]), "tags": tags, "entities": entities})
        return records
