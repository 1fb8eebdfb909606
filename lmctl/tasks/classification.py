"""Sequence classification: single texts or text pairs, class labels or float scores.

Labels decide the problem: ints or strings → classes (cross-entropy, accuracy/F1/MCC),
floats → regression (one output, MSE, Pearson/Spearman). Label names travel in the
model's config (`id2label`), so a reloaded model predicts "positive", not 1.
All three families use their `AutoModelForSequenceClassification` head; for T5 that is
`T5ForSequenceClassification` (a linear head on the decoder's final eos state), not
label words generated as text.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lmctl.errors import UserError
from lmctl.tasks.base import Task, check_column_values_are_text, count_truncated, map_batches, reject, report_truncation


class ClassificationTask(Task):
    name = "text-classification"
    auto_class = "AutoModelForSequenceClassification"

    def __init__(self, cfg, console):
        self.cfg = cfg
        self.console = console
        self.text_column = cfg.data.text_column
        self.pair_column = cfg.data.text_pair_column
        self.label_column = cfg.data.label_column
        self.max_length = cfg.training.max_length
        self.regression = False
        self.label_names: list[str] = []
        self._label_to_id: dict[Any, int] = {}

    # ---- metadata ---------------------------------------------------------------
    @property
    def main_metric(self) -> str:
        return "pearson" if self.regression else "accuracy"

    higher_is_better = ("accuracy", "f1", "precision", "recall", "matthews_correlation", "f1_macro", "f1_micro",
                        "f1_weighted", "precision_macro", "recall_macro", "pearson", "spearman")
    lower_is_better = ("loss", "mse")
    label_keys = ("data.label_column",)
    # The soft-target loss compares class (or score) logits with the teacher's: lmctl.distill.
    distills = True

    @property
    def soft_targets(self) -> str:
        return "score" if self.regression else "classes"

    # A decoder classifier pools its states; `model.pooling` picks how (lmctl.models.POOLING_KEY).
    chooses_pooling = True
    onnx_outputs = ("logits",)
    light_inputs = True

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The keys `compute_metrics` reports, known once the model is loaded (gates are checked before inference)."""
        if self.regression:
            return ("pearson", "spearman", "mse", "loss")
        names = ("accuracy", "f1", "precision", "recall", "matthews_correlation", "loss")
        if len(self.label_names) > 2:
            names += ("f1_macro", "f1_micro", "f1_weighted", "precision_macro", "recall_macro")
        return names

    def columns(self, with_labels: bool) -> dict[str, str | None]:
        cols = {"data.text_column": self.text_column, "data.text_pair_column": self.pair_column}
        if with_labels:
            cols["data.label_column"] = self.label_column
        return cols

    # ---- labels -----------------------------------------------------------------
    def fit(self, train) -> None:
        values = train[self.label_column]
        source = f"data.train_file column '{self.label_column}'"
        kinds = set()
        for i, v in enumerate(values):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                raise reject(source, i, "missing label; fill or remove that row")
            kinds.add("str" if isinstance(v, str) else "float" if isinstance(v, float) else "int")
        if "str" in kinds and len(kinds) > 1:
            raise UserError(f"{source}: mixes text and numeric labels; use one kind for every row")
        self.regression = kinds == {"float"} or kinds == {"float", "int"}
        if self.regression:
            self.label_names = []
            return
        seen = sorted(set(values), key=lambda v: (isinstance(v, str), v))
        names = self.cfg.data.label_names
        if names:
            if kinds == {"int"}:
                bad = [v for v in seen if not 0 <= v < len(names)]
                if bad:
                    raise UserError(f"data.label_names: has {len(names)} names but labels include {bad[0]}; "
                                    "int labels index into label_names")
                self.label_names = list(names)
                self._label_to_id = {i: i for i in range(len(names))}
            else:
                missing = [v for v in seen if v not in names]
                if missing:
                    raise UserError(f"data.label_names: label '{missing[0]}' of the train data is not listed; add it")
                self.label_names = list(names)
                self._label_to_id = {n: i for i, n in enumerate(names)}
        else:
            if len(seen) < 2:
                raise UserError(f"{source}: only one label value ({seen[0]!r}); classification needs at least two")
            self.label_names = [str(v) for v in seen]
            self._label_to_id = {v: i for i, v in enumerate(seen)}
        # Named labels also accept their string form, so evaluation files may spell ints as text.
        self._label_to_id.update({str(k): i for k, i in list(self._label_to_id.items())})
        self._label_to_id.update({n: i for i, n in enumerate(self.label_names)})

    def _model_kwargs(self) -> dict:
        if self.regression:
            return head_config(self.cfg, ["score"], "regression")
        return head_config(self.cfg, self.label_names, "single_label_classification")

    # ---- models -----------------------------------------------------------------
    def build_model(self, name_or_path: str | None, tokenizer):
        from lmctl.models import build_model

        return build_model(self.auto_class, self.cfg.model, name_or_path, tokenizer, self.max_length,
                           **self._model_kwargs())

    def load_model(self, path: str, tokenizer, source: str):
        from lmctl.models import load_model

        model = load_model(self.auto_class, path, tokenizer, key=source, allow_pickle=self.cfg.model.allow_pickle_weights)
        cfg = model.config
        self.regression = cfg.problem_type == "regression" or cfg.num_labels == 1
        if not self.regression:
            self.label_names = [cfg.id2label[i] for i in range(cfg.num_labels)]
            self._label_to_id = {n: i for i, n in enumerate(self.label_names)}
            # Ints in an evaluation file match labels that were ints at training time: by name
            # ("0", "1" when names were learnt from the data), else as indices into label_names.
            self._label_to_id.update({int(n): i for n, i in list(self._label_to_id.items()) if n.lstrip("-").isdigit()})
            if self.cfg.data.label_names:
                for i in range(len(self.label_names)):
                    self._label_to_id.setdefault(i, i)
        return model

    # ---- data -------------------------------------------------------------------
    def texts(self, ds):
        """The raw text a tokenizer trained for this task should see."""
        return column_texts(ds, self.text_column, self.pair_column)

    def encode(self, ds, split: str, source: str):
        def labels(batch):
            raw = batch[self.label_column]
            return [float(v) for v in raw] if self.regression else [self._label_to_id[v] for v in raw]

        with_labels = split != "predict"
        return encode_texts(ds, self.tokenizer, self.text_column, self.pair_column, self.max_length, source,
                            self.console, labels if with_labels else None,
                            (lambda: self._check_labels(ds, source)) if with_labels else None)

    def _check_labels(self, ds, source: str) -> None:
        for i, v in enumerate(ds[self.label_column]):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                raise reject(source, i, f"missing label in column '{self.label_column}'; fill or remove that row")
            if self.regression:
                if isinstance(v, str):
                    raise reject(source, i, f"label {v!r} is text but the model predicts a number (regression)")
            elif v not in self._label_to_id:
                raise reject(source, i, f"label {v!r} was not seen in training; known labels: "
                                        f"{', '.join(self.label_names)}")

    def collate(self, features: list[dict]) -> dict:
        return collate_padded(self.tokenizer, features)

    predict_modes = ("classify",)
    mode = "classify"

    # ---- evaluation and prediction ------------------------------------------------
    def eval_step(self, model, batch) -> dict:
        return logits_step(model, batch)

    def compute_metrics(self, outputs: dict, encoded=None) -> dict[str, float]:
        from lmctl import metrics

        logits, labels = np.asarray(outputs["logits"]), np.asarray(outputs["labels"])
        if self.regression:
            preds = logits.reshape(-1)
            result = metrics.regression_metrics(preds.tolist(), labels.astype(float).tolist())
            result["loss"] = float(np.mean((preds - labels) ** 2))
            return result
        preds = logits.argmax(-1)
        result = metrics.classification_metrics(preds.tolist(), labels.astype(int).tolist(), len(self.label_names))
        log_probs = logits - _logsumexp(logits)
        result["loss"] = float(-log_probs[np.arange(len(labels)), labels.astype(int)].mean())
        return result

    def confusion(self, outputs: dict) -> tuple[list[str], np.ndarray] | None:
        """Rows: true label, columns: predicted label."""
        if self.regression:
            return None
        from sklearn.metrics import confusion_matrix

        preds = np.asarray(outputs["logits"]).argmax(-1)
        labels = np.asarray(outputs["labels"]).astype(int)
        return self.label_names, confusion_matrix(labels, preds, labels=list(range(len(self.label_names))))

    explains = True

    def explanation_inputs(self, ds, outputs: dict):
        logits = np.asarray(outputs["logits"])
        # Regression has one output; classes: the predicted label's logit.
        targets = [0] * len(logits) if self.regression else logits.argmax(-1).tolist()
        return ds[self.text_column], ds[self.pair_column] if self.pair_column else None, targets

    def predict_records(self, outputs: dict, encoded=None) -> list[dict]:
        logits = np.asarray(outputs["logits"])
        if self.regression:
            return [{"value": float(v)} for v in logits.reshape(-1)]
        probs = np.exp(logits - _logsumexp(logits))
        records = []
        for row in probs:
            best = int(row.argmax())
            records.append({
                "label": self.label_names[best],
                "score": round(float(row[best]), 6),
                "scores": {n: round(float(p), 6) for n, p in zip(self.label_names, row)},
            })
        return records


# What every sequence classifier shares (multi_label.py calls these too): its texts, their encoding,
# padding and the forward pass that yields logits.
def column_texts(ds, text_column: str, pair_column: str | None):
    """The texts of both columns of a single-text or pair task, for a tokenizer to train on."""
    for column in (text_column, pair_column):
        if column:
            yield from ds[column]


def head_config(cfg, names: list[str], problem_type: str, **extra) -> dict:
    """The config values a sequence-classification head is built with: one output per name, the
    names (`id2label`), the problem type, a decoder's pooling (model.pooling) and `extra` task state
    the model keeps in its config."""
    from lmctl.models import POOLING_KEY

    kwargs = dict(num_labels=len(names), problem_type=problem_type, id2label=dict(enumerate(names)),
                  label2id={n: i for i, n in enumerate(names)}, **extra)
    if cfg.model.pooling:
        kwargs[POOLING_KEY] = cfg.model.pooling
    return kwargs


def encode_texts(ds, tokenizer, text_column: str, pair_column: str | None, max_length: int, source: str, console,
                 labels=None, check_labels=None):
    """Texts (or pairs) → token ids cut at `max_length`, `length`, and where `labels` is None (predict)
    `truncated`; `labels(batch) → one label value per row` adds `labels` (training and evaluation),
    after `check_labels()` (raising the bad row's RowError) once the text columns passed theirs.
    Rows cut at `max_length` are reported on `console`."""
    check_column_values_are_text(ds, text_column, source)
    check_column_values_are_text(ds, pair_column, source)
    if check_labels is not None:
        check_labels()

    def tokenize(batch):
        texts = batch[text_column]
        pairs = batch[pair_column] if pair_column else None
        full = tokenizer(texts, pairs, truncation=False, verbose=False)["input_ids"]
        enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)
        enc["num_tokens"] = [len(ids) for ids in full]
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        if labels is None:  # predict's records say which rows were cut
            enc["truncated"] = [n > max_length for n in enc["num_tokens"]]
        else:
            enc["labels"] = labels(batch)
        return enc

    encoded = map_batches(ds, tokenize, remove_columns=ds.column_names, desc=None)
    report_truncation(console, count_truncated(encoded, max_length), len(encoded), max_length, source)
    return encoded.remove_columns(["num_tokens"])


def collate_padded(tokenizer, features: list[dict]) -> dict:
    """Encoded rows padded to the batch's longest, as tensors."""
    # Made per batch (a dataclass that holds the tokenizer: nothing to build once), so binding
    # imports no transformers: an ONNX export predicts without it (Task.light_inputs).
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer)(features)


def logits_step(model, batch) -> dict:
    """The classifier's logits (and the batch's labels, where it has them) for each row."""
    labels = batch.pop("labels", None)
    logits = model(**batch).logits.float()
    out = {"logits": logits}
    if labels is not None:
        out["labels"] = labels
    return out


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    return m + np.log(np.exp(x - m).sum(-1, keepdims=True))
