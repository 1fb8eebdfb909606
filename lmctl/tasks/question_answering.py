"""Extractive question answering: the answer is a span of the context, found as a start and an end token.

A context longer than one window is split into overlapping windows (`qa.doc_stride` tokens shared
by neighbours), as in transformers' run_qa: each window is one encoded row. Training labels each
window with the answer's first and last token, or with the CLS token when the answer is not
wholly inside it. Evaluation and prediction gather a question's windows back together
(`extract_answers`): the best span over all of them, scored start logit + end logit, read out
of the context through the tokenizer's character offsets. The mapping a window needs for that
(its question, character offsets, context, gold answers) travels in the encoded rows, so scoring
uses nothing but the engine's outputs and the encoded data set, whatever order batches ran in.

SQuAD v2 (`qa.version_2_with_negative`): a question may have no answer; the model answers ""
when the CLS ("no answer") score beats the best span by more than `qa.null_score_diff_threshold`.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from lmctl.errors import RowError, UserError
from lmctl.tasks.base import Task, check_column_values_are_text, share

# What the model's forward takes; the bookkeeping columns stay behind in the encoded rows.
_MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions")


def extract_answers(contexts: list[str], feature_example, offsets, start_logits, end_logits, cls_index=None, *,
                    n_best: int = 20, max_answer_length: int = 30, allow_null: bool = False,
                    null_threshold: float = 0.0) -> list[dict]:
    """Windows' logits → one answer per example (utils_qa.postprocess_qa_predictions, compacted).

    `feature_example[f]` is the example window f belongs to; `offsets[f][t]` the (start, end)
    characters of token t in that example's context, or None for a token outside the context
    (question, special tokens), so a span can never cross into the question; logits may be longer
    than offsets (batch padding). The `n_best` start and end tokens of each window are paired;
    spans that end before they start or exceed `max_answer_length` tokens are dropped. Returns
    {"answer", "score", "start", "end"} per example in example order: `score` is the answer's
    softmax probability among the n-best spans (and "no answer"), `context[start:end] == answer`;
    start/end are None when there is no answer.
    """
    windows: list[list[int]] = [[] for _ in contexts]
    for f, e in enumerate(feature_example):
        windows[int(e)].append(f)
    results = []
    for e, features in enumerate(windows):
        spans: dict[tuple[int, int], float] = {}  # (start char, end char) → best score over windows
        null_score = math.inf
        for f in features:
            offs = offsets[f]
            starts = np.asarray(start_logits[f], dtype=np.float64)[:len(offs)]
            ends = np.asarray(end_logits[f], dtype=np.float64)[:len(offs)]
            cls = 0 if cls_index is None else int(cls_index[f])
            # The question's "no answer" score is its most confident window's (the lowest CLS score).
            null_score = min(null_score, starts[cls] + ends[cls])
            top_ends = np.argsort(ends)[::-1][:n_best]
            for s in np.argsort(starts)[::-1][:n_best]:
                if offs[s] is None:
                    continue
                for t in top_ends:
                    if offs[t] is None or t < s or t - s + 1 > max_answer_length:
                        continue
                    span, score = (int(offs[s][0]), int(offs[t][1])), float(starts[s] + ends[t])
                    if score > spans.get(span, -math.inf):
                        spans[span] = score
        best = sorted(spans.items(), key=lambda kv: -kv[1])[:n_best]
        scores = [score for _, score in best] + ([null_score] if allow_null else [])
        if not scores:
            results.append({"answer": "", "score": 0.0, "start": None, "end": None})
            continue
        probs = np.exp(np.asarray(scores) - max(scores))
        probs /= probs.sum()
        if best and not (allow_null and null_score - best[0][1] > null_threshold):
            (start, end), _ = best[0]
            results.append({"answer": contexts[e][start:end], "score": round(float(probs[0]), 6),
                            "start": start, "end": end})
        else:
            results.append({"answer": "", "score": round(float(probs[-1]), 6), "start": None, "end": None})
    return results


class QuestionAnsweringTask(Task):
    name = "question-answering"
    auto_class = "AutoModelForQuestionAnswering"
    main_metric = "f1"
    higher_is_better = ("exact_match", "f1")
    label_keys = ("data.answers_column",)
    # QA contexts are long: SQuAD's usual 384-token windows unless the user chose a length.
    config_defaults = {"training.max_length": 384}
    onnx_outputs = ("start_logits", "end_logits")
    metric_names = ("exact_match", "f1")
    predict_modes = ("extract",)
    mode = "extract"

    def __init__(self, cfg, console):
        self.cfg = cfg
        self.console = console
        self.question_column = cfg.data.question_column
        self.context_column = cfg.data.context_column
        self.answers_column = cfg.data.answers_column
        self.max_length = cfg.training.max_length
        self.qa = cfg.qa

    def columns(self, with_labels: bool) -> dict[str, str | None]:
        cols = {"data.question_column": self.question_column, "data.context_column": self.context_column}
        if with_labels:
            cols["data.answers_column"] = self.answers_column
        return cols

    def texts(self, ds):
        """Questions, then each distinct context once (SQuAD repeats a paragraph per question)."""
        yield from ds[self.question_column]
        yield from dict.fromkeys(ds[self.context_column])

    # ---- models -----------------------------------------------------------------
    def build_model(self, name_or_path: str | None, tokenizer):
        from lmctl.models import build_model

        return build_model(self.auto_class, self.cfg.model, name_or_path, tokenizer, self.max_length)

    def load_model(self, path: str, tokenizer, source: str):
        from lmctl.models import load_model

        return load_model(self.auto_class, path, tokenizer, key=source,
                          allow_pickle=self.cfg.model.allow_pickle_weights)

    # ---- data -------------------------------------------------------------------
    def encode(self, ds, split: str, source: str):
        """Rows → windows. Training windows carry start/end token labels; evaluation and prediction
        windows carry what `extract_answers` needs: `example`, `offsets`, `context`, `cls_index`
        (and the gold answer texts, when labelled)."""
        from datasets import Dataset

        tokenizer = self.tokenizer
        with_labels, train = split != "predict", split == "train"
        check_column_values_are_text(ds, self.question_column, source)
        check_column_values_are_text(ds, self.context_column, source)
        ids = [str(i) for i in ds["id"]] if "id" in ds.column_names else None
        contexts = list(ds[self.context_column])
        answers = self._read_answers(ds, contexts, ids, source) if with_labels else None
        questions = self._fit_questions([q.strip() for q in ds[self.question_column]], tokenizer, source)

        # Models that pad on the left (XLNet) read the context first; the question is never split.
        question_first = tokenizer.padding_side == "right"
        enc = tokenizer(questions if question_first else contexts, contexts if question_first else questions,
                        truncation="only_second" if question_first else "only_first", max_length=self.max_length,
                        stride=self.qa.doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True)
        context_seq = 1 if question_first else 0
        example = list(enc.pop("overflow_to_sample_mapping"))
        offset_rows = enc.pop("offset_mapping")
        rows: dict[str, list] = {k: list(v) for k, v in enc.items()}
        rows["length"] = [len(x) for x in rows["input_ids"]]
        cls_id = tokenizer.cls_token_id
        cls_index = [ids_.index(cls_id) if cls_id in ids_ else 0 for ids_ in rows["input_ids"]]
        offsets = [[list(o) if s == context_seq else None for o, s in zip(offs, enc.sequence_ids(f))]
                   for f, offs in enumerate(offset_rows)]
        self._report_windows(example, len(contexts), source)

        if train:
            rows["start_positions"], rows["end_positions"] = [], []
            answered = [False] * len(contexts)
            for f, e in enumerate(example):
                texts, starts = answers[e]
                start, end = cls_index[f], cls_index[f]
                if texts:  # training learns the first answer (SQuAD train has one per question)
                    start, end = _token_span(offsets[f], starts[0], starts[0] + len(texts[0]), cls_index[f])
                    answered[e] |= start != cls_index[f]
                rows["start_positions"].append(start)
                rows["end_positions"].append(end)
            lost = sum(1 for e, (texts, _) in enumerate(answers) if texts and not answered[e])
            if lost:
                self.console.warn(f"{source}: {lost} of {len(contexts)} answers are longer than the context part "
                                  f"of a window (training.max_length={self.max_length}) and fit in no window; "
                                  "those questions train as 'no answer'")
        else:
            rows.update(example=example, offsets=offsets, cls_index=cls_index,
                        context=[contexts[e] for e in example])
            if with_labels:
                rows["gold"] = [answers[e][0] for e in example]
            if ids is not None:
                rows["id"] = [ids[e] for e in example]
        return Dataset.from_dict(rows)

    def _read_answers(self, ds, contexts: list[str], ids, source: str) -> list[tuple[list[str], list[int]]]:
        """Each row's (texts, answer_starts), checked against its context."""
        col = self.answers_column
        shape = '{"text": [...], "answer_start": [...]}'
        out = []
        for i, (value, context) in enumerate(zip(ds[col], contexts)):
            def bad(message: str) -> RowError:
                # SQuAD files are nested: the question id finds the row faster than its number.
                return RowError(source, i + 1, message, f" (id {ids[i]})" if ids else "")

            if isinstance(value, str):  # csv: the cell holds the dict as JSON text
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    raise bad(f"column '{col}' holds {value[:60]!r}, which is not JSON; write {shape}") from None
            if not isinstance(value, dict) or "text" not in value or "answer_start" not in value:
                raise bad(f"column '{col}' must hold {shape}, not {str(value)[:60]!r}")
            texts, starts = value["text"], value["answer_start"]
            texts = list(texts) if isinstance(texts, (list, tuple, np.ndarray)) else [texts]
            starts = list(starts) if isinstance(starts, (list, tuple, np.ndarray)) else [starts]
            if len(texts) != len(starts):
                raise bad(f"{len(texts)} answer texts but {len(starts)} answer_start values; give one start per text")
            for text, start in zip(texts, starts):
                if not isinstance(text, str) or not text:
                    raise bad(f"empty answer text in column '{col}'; give the answer's words or remove the row")
                if not _is_offset(start):
                    raise bad(f"answer_start {start!r} is not a character offset (a whole number from 0)")
                start = int(start)
                if context[start:start + len(text)] != text:
                    found = context.find(text)
                    hint = f"; the text occurs at offset {found}" if found >= 0 else "; the text is not in the context"
                    raise bad(f"answer {text!r} is not at answer_start {start} of the context (it reads "
                              f"{context[start:start + len(text)]!r}){hint}; answer_start counts characters from 0")
            if not texts and not self.qa.version_2_with_negative:
                raise bad("no answer; for unanswerable questions (SQuAD v2) set qa.version_2_with_negative: true")
            out.append(([str(t) for t in texts], [int(s) for s in starts]))
        return out

    def _fit_questions(self, questions: list[str], tokenizer, source: str) -> list[str]:
        """Cut (and report) questions so each window keeps more than doc_stride context tokens: with
        fewer, windows could not move forward (the tokenizer refuses such a split)."""
        stride = self.qa.doc_stride
        room = self.max_length - tokenizer.num_special_tokens_to_add(pair=True)
        limit = room - stride - 1
        if limit < 1:
            raise UserError(f"qa.doc_stride: {stride} leaves no room for the question in windows of "
                            f"training.max_length={self.max_length} tokens; use a doc_stride below {room - 1} "
                            f"(e.g. {max(1, room // 3)})")
        enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
        out, cut = [], 0
        for q, ids, offs in zip(questions, enc["input_ids"], enc["offset_mapping"]):
            if len(ids) > limit:
                q, cut = q[:offs[limit - 1][1]], cut + 1
            out.append(q)
        self.console.warn_count(cut, len(questions), lambda n, total: (
            f"{source}: {n} of {total} questions ({share(n, total)}) are longer than {limit} tokens "
            "(training.max_length - qa.doc_stride - special tokens) and were cut to that length"))
        return out

    def _report_windows(self, example: list[int], total: int, source: str) -> None:
        # Not a truncation (every context token is in some window), but it is why a long context
        # can still be answered, and why there are more encoded rows than questions.
        multi = int((np.bincount(example, minlength=total) > 1).sum())
        if multi:
            self.console.log(f"{source}: {multi} of {total} question+context pairs did not fit in one window of "
                             f"{self.max_length} tokens and were split into overlapping windows "
                             f"({len(example)} windows in all, qa.doc_stride={self.qa.doc_stride})")

    def collate(self, features: list[dict]) -> dict:
        # Always pad on the right: logits position t must be token t of the window's offsets.
        return self.tokenizer.pad([{k: f[k] for k in _MODEL_KEYS if k in f} for f in features],
                                   padding=True, padding_side="right", return_tensors="pt")


    # ---- evaluation and prediction ------------------------------------------------
    def eval_step(self, model, batch) -> dict:
        batch = {k: v for k, v in batch.items() if k not in ("start_positions", "end_positions")}
        out = model(**batch)
        return {"start_logits": out.start_logits.float(), "end_logits": out.end_logits.float()}

    def _answers(self, outputs: dict[str, Any], encoded) -> tuple[list[dict], list[int]]:
        """One answer per example, and the first window of each example (its context, gold, id)."""
        example = encoded["example"]
        first = {}
        for f, e in enumerate(example):
            first.setdefault(e, f)
        firsts = [first[e] for e in range(len(first))]
        context_col = encoded["context"]
        contexts = [context_col[f] for f in firsts]
        answers = extract_answers(contexts, example, encoded["offsets"], outputs["start_logits"],
                                  outputs["end_logits"], encoded["cls_index"], n_best=self.qa.n_best,
                                  max_answer_length=self.qa.max_answer_length,
                                  allow_null=self.qa.version_2_with_negative,
                                  null_threshold=self.qa.null_score_diff_threshold)
        return answers, firsts

    def count_examples(self, encoded) -> int:
        """Questions, not windows: what `lmctl evaluate` reports as examples."""
        return len(set(encoded["example"]))

    def compute_metrics(self, outputs: dict[str, Any], encoded) -> dict[str, float]:
        from lmctl import metrics

        answers, firsts = self._answers(outputs, encoded)
        gold = encoded["gold"]
        scores = metrics.load("squad").compute(predictions=[a["answer"] for a in answers],
                                               references=[gold[f] for f in firsts])
        return {k: float(scores[k]) for k in self.metric_names}

    def predict_records(self, outputs: dict[str, Any], encoded) -> list[dict]:
        answers, firsts = self._answers(outputs, encoded)
        if "id" in encoded.column_names:
            ids = encoded["id"]
            return [{"id": ids[f], **a} for a, f in zip(answers, firsts)]
        return answers


def _is_offset(value) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            and float(value).is_integer() and value >= 0)


def _token_span(offsets: list, start_char: int, end_char: int, cls: int) -> tuple[int, int]:
    """The window's first and last tokens covering [start_char, end_char), or (cls, cls) when the
    answer is not wholly inside the window's part of the context."""
    ctx = [t for t, o in enumerate(offsets) if o is not None]
    if not ctx or offsets[ctx[0]][0] > start_char or offsets[ctx[-1]][1] < end_char:
        return cls, cls
    start = max(t for t in ctx if offsets[t][0] <= start_char)
    end = min(t for t in ctx if offsets[t][1] >= end_char)
    return start, end
