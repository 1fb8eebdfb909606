"""The interface every task implements, and the small helpers tasks share.

The engine knows nothing about labels, answers or generation: it trains on whatever
`encode` produced, asks `eval_step` for per-example tensors, and hands the gathered,
input-ordered arrays back to `compute_metrics` / `predict_records`.

A task's life has two stages. Unbound (`Task(cfg, console)`), it names its columns, learns
what the training data defines (`fit`) or a trained model records (`load_model`), and gives
the texts a tokenizer is trained on. `bind(tokenizer, mode)` then returns a bound copy that
encodes, collates, runs and decodes with that tokenizer in that mode; nothing a later call
does changes a bound task, so one can serve a worker thread call after call.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Iterable, Protocol

from lmctl.errors import RowError


class Task(Protocol):
    """Every hook the engine and run.py call, with its default where one makes sense.

    Tasks subclass this Protocol explicitly to inherit the defaults (PEP 544); everything
    they share beyond that is composition (lm_common's helpers), not a base class.
    """

    name: str
    """The registry key (`task:` in a config)."""
    auto_class: str
    """The transformers `Auto*` class whose head the task trains (its family's class: lmctl.families)."""
    main_metric: str
    """The metric that picks the kept model unless training.metric_for_best says otherwise."""
    metric_names: tuple[str, ...]
    """The keys `compute_metrics` reports (checked against gates and metric_for_best up front)."""
    higher_is_better: tuple[str, ...] = ()
    lower_is_better: tuple[str, ...] = ()
    """The direction of every metric the task can report (`greater_is_better` reads them): training's
    kept model, `compare`'s ranking and its regression gate all take it from here."""
    predict_modes: tuple[str, ...]
    """What `predict` can do with this task; the first is the default."""
    mode: str
    """What the task does: one of `predict_modes` once bound for prediction, else its training and
    evaluation behaviour (the class default). Fixed by `bind`."""
    tokenizer: Any = None
    """The tokenizer of a bound task (None before `bind`)."""
    explains: bool = False
    """Whether predict can explain this task's outputs (attributions to the input words)."""
    streams: bool = True
    """Whether predict may read its input in chunks: False where `arrange_predictions` orders rows
    across the whole input (reranking gathers each query's candidates), which is then read whole."""

    # What the command layer and config validation ask of the class, before any model or data loads.
    pretraining: bool = False
    """A language-modelling objective `lmctl pretrain` runs (and the only kind that reads a stream)."""
    finetunes: bool = True
    """Whether `lmctl finetune` runs it (span corruption is a pretraining objective only)."""
    distills: bool = False
    """Whether a config may add a `distill` section (the loss needs the task's logits and labels). Such a
    task says what its logits are in `soft_targets`: "classes" (one softmax), "labels" (a sigmoid each)
    or "score" (a regression value), which picks lmctl.distill's soft-target loss."""
    chooses_pooling: bool = False
    """Whether `model.pooling` means anything for this task (a decoder classifier's pooled state)."""
    label_keys: tuple[str, ...] = ()
    """Config keys, among `columns`, of columns that are not text (labels, SQuAD answers): they keep
    their parsed types when a file is read; every other column is read as text."""
    word_list_keys: tuple[str, ...] = ()
    """Config keys, among the text columns, whose cells may hold a list of words (text split into words
    already: CoNLL's tokens) instead of a string; row checks (`data.check_text`) accept either there."""
    config_defaults: dict[str, Any] = {}
    """Dotted config key → this task's default where the user left the key out (QA's 384-token windows)."""
    onnx_outputs: tuple[str, ...] = ()
    """The model outputs an ONNX export carries, the only ones `eval_step` reads (empty: not exportable)."""
    light_inputs: bool = False
    """Whether `encode(ds, "predict", ...)` and `predict_records` need no more than an ONNX export carries
    without torch: `tokenizer(texts, pairs, truncation=..., max_length=...)` (lmctl.plain_tokenizer),
    rows through `lmctl.table.Columns`' API, numpy outputs. Such a task predicts from an ONNX export with
    no torch, transformers or datasets imported (lmctl.engine.light); `bind` must not import them either."""

    @classmethod
    def check_config(cls, cfg) -> None:
        """Rules on a validated config that only this task has; raise ValueError with the one-line
        message (naming the key) that the user sees. Called by config validation, so it must not
        load anything."""

    @classmethod
    def greater_is_better(cls, metric: str) -> bool:
        """Whether a higher `metric` is better: `metric` as the task reports it, or as logs and
        metrics.json name it (`eval_` and an evaluation set's name in front)."""
        declared = metric_direction(cls, metric)
        if declared is not None:
            return declared
        # A metric the task does not report (a distilled run's teacher_agreement) falls back to the
        # name rule: the one place a direction is still guessed.
        from lmctl.metrics import greater_is_better_by_name

        return greater_is_better_by_name(metric)

    def __init__(self, cfg, console) -> None: ...

    def columns(self, with_labels: bool) -> dict[str, str | None]:
        """Config key → column name the task reads (None: not used)."""
        ...

    def text_columns(self, with_labels: bool = False) -> tuple[str, ...]:
        """The columns read as text: kept as strings when files are parsed (a CSV target of digits is
        still text to generate), and the inputs predict echoes. Those under `label_keys` keep their types."""
        return tuple(c for key, c in self.columns(with_labels).items() if c and key not in self.label_keys)

    def texts(self, ds) -> Iterable[str]:
        """The raw text a tokenizer trained for this task should see."""
        ...

    def fit(self, train) -> None:
        """Learn what the training data defines (e.g. the label set) before the model is built."""

    def build_model(self, name_or_path: str | None, tokenizer):
        """The model to train: the task's head on a checkpoint, or from scratch (cfg.model.from_scratch)."""
        ...

    def load_model(self, path: str, tokenizer, source: str):
        """A trained model for evaluate/predict; restores task state saved in its config. `source`
        names where the path came from in error messages."""
        ...

    def bind(self, tokenizer, mode: str | None = None) -> "Task":
        """A copy of this task bound to `tokenizer` and `mode` (one of `predict_modes`; None: training
        and evaluation), the task that encode/collate/eval_step/compute_metrics/predict_records are
        called on. Labels learnt by `fit` or `load_model` come along; the copy never changes after."""
        bound = copy.copy(self)
        bound.tokenizer = tokenizer
        if mode is not None:
            bound.mode = mode
        bound.on_bind()
        return bound

    def on_bind(self) -> None:
        """What a bound task derives from its tokenizer once (a collator, sentinel ids); checks that
        the tokenizer suits the task (a mask token for masked-lm) raise here, before any data is encoded."""

    def encode(self, ds, split: str, source: str):
        """Raw rows → model features plus a `length` column; split is 'train', 'eval' or 'predict'. Bound tasks only.
        A task that cuts inputs at a length adds, for 'predict', a `truncated` column (one bool per row,
        rows and features one to one): the rows whose record says `"truncated": true`."""
        ...

    def collate(self, features: list[dict]) -> dict:
        """Training batches: pad (and, for pretraining objectives, corrupt) encoded examples. Bound tasks only."""
        ...

    def eval_collate(self, features: list[dict]) -> dict:
        """Evaluation/prediction batches; any randomness is seeded so scores are repeatable."""
        return self.collate(features)

    def eval_step(self, model, batch) -> dict[str, Any]:
        """Per-example tensors (first dim = batch) that metrics or predictions need."""
        ...

    def compute_metrics(self, outputs: dict[str, Any], encoded) -> dict[str, float]:
        """Gathered, input-ordered outputs of `eval_step` → metrics (plain floats)."""
        ...

    def tune(self, outputs: dict[str, Any], encoded) -> tuple[dict[str, Any], "Task"]:
        """What the task chooses on the first evaluation set's outputs at each evaluation during
        training (multi-label's per-label thresholds): (model-config values, the task that applies
        them). The engine writes the values into the model's config, so the kept model's config.json
        holds those of its own evaluation, and scores every set of that evaluation with the returned
        task. Default: nothing to choose."""
        return {}, self

    def predict_records(self, outputs: dict[str, Any], encoded) -> list[dict]:
        """Gathered outputs → one JSON-able record per input row, in input order."""
        ...

    def count_examples(self, encoded) -> int:
        """Input rows behind `encoded` (a task that splits a row into several features counts rows)."""
        return len(encoded)

    def confusion(self, outputs: dict[str, Any]):
        """(label names, matrix with true labels as rows) for classification; None where it means nothing."""
        return None

    def explanation_inputs(self, ds, outputs: dict[str, Any]) -> tuple[list[str], list[str] | None, list[int]]:
        """For explanations (tasks with `explains`): the texts, the pair texts (None: single
        texts) and, per row, the index of the model output to explain (the predicted label)."""
        raise NotImplementedError(f"task '{self.name}' has no explanation")

    def arrange_predictions(self, rows: list[dict]) -> list[dict]:
        """Predict's output order, from input-ordered records with their inputs echoed (default: as is)."""
        return rows


def metric_direction(task_class, metric: str) -> bool | None:
    """The direction `task_class` declares for `metric` (True: higher is better), None where it
    declares none. An evaluation set's name may come first (`dev_f1`); the longest declared name
    that ends `metric` wins, so `dev_f1_macro` is `f1_macro`, not `macro`. A declared `_at_k` stands
    for any cut-off (`ndcg_at_k` covers `ndcg_at_10`: ranking.k is a config value)."""
    name = metric.removeprefix("eval_")
    names = (name, re.sub(r"_at_\d+$", "_at_k", name))
    best = None
    for declared, higher in [(m, True) for m in task_class.higher_is_better] + \
                            [(m, False) for m in task_class.lower_is_better]:
        if any(n == declared or n.endswith("_" + declared) for n in names) and \
                (best is None or len(declared) > len(best[0])):
            best = (declared, higher)
    return None if best is None else best[1]


def count_truncated(ds, max_length: int) -> int:
    """Examples whose untruncated token count exceeded `max_length` (column `num_tokens`)."""
    return sum(1 for n in ds["num_tokens"] if n > max_length)


def report_truncation(console, n: int, total: int, max_length: int, source: str, key: str = "max_length") -> None:
    # Long inputs are never cut silently: a user comparing runs must know.
    # `key` names the limit (e.g. max_target_length for seq2seq targets).
    console.warn_count(n, total, lambda n, total: f"{source}: {n} of {total} examples ({share(n, total)}) are "
                                                  f"longer than {key}={max_length} tokens and were truncated")


def share(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "0%"


def check_column_values_are_text(ds, column: str | None, source: str, words: bool = False) -> None:
    if column is None:
        return
    from lmctl.data import check_text

    check_text(ds, column, source, words)


def map_batches(ds, fn, **kwargs):
    """`ds.map(fn, batched=True, **kwargs)`, without hashing `fn` for a table held in memory.
    datasets fingerprints a transform by pickling it whole (a closure over a tokenizer: ~0.15 s a
    call) to name a cache file, which an in-memory table never writes; a server predicting a few
    rows per call paid 0.7 s a request for it (measured on MiniLM, 5 maps a call)."""
    if getattr(ds, "cache_files", None) == []:  # in memory (a streamed or file-backed table keeps its caching)
        from datasets.fingerprint import generate_random_fingerprint

        kwargs["new_fingerprint"] = generate_random_fingerprint()
    return ds.map(fn, batched=True, **kwargs)


def reject(source: str, row: int, message: str) -> RowError:
    """The error for row `row` (counted from 0) of `source`."""
    return RowError(source, row + 1, message)
