"""Multi-label text classification: any number of labels per row, single texts or pairs.

Labels: a JSON list per row (`["joy", "love"]`, or ids `[3, 15]`), or text split on
`data.label_separator` ("3,15" in a CSV/TSV cell, which is read as text so that "27" stays the
string "27" beside "3,15"); `[]` is a row with none of the labels (a missing cell is an error, so a
forgotten value is never read as "no labels"). Ints and digit strings index `data.label_names`
when it is given (GoEmotions' ids), names match by name; without label_names the names are the
labels seen in train, sorted (numerically when they are all digits).

The model is the family's `*ForSequenceClassification` head with `problem_type:
multi_label_classification`: one sigmoid per label, binary cross-entropy. A label is predicted
where its score reaches its threshold: `training.threshold` for every label, or with `tune` each
label's own, chosen on the first validation set at each evaluation to maximise that label's F1
(`tune_thresholds`). The thresholds are the model's: `lmctl_thresholds` in its config.json, beside
`id2label`, written when the kept model is saved (Task.tune), so evaluate, predict, an ONNX export
and serve all apply the same numbers, through the one function that decides (`decide`), with
`training.min_labels` (`--min-labels`): a row with fewer labels past their thresholds gets its
highest-scoring other labels until it has that many.
"""

from __future__ import annotations

import copy
import json
import math
import re

import numpy as np

from lmctl.errors import UserError
from lmctl.tasks.base import Task, reject
from lmctl.tasks.classification import collate_padded, column_texts, encode_texts, head_config, logits_step

THRESHOLDS_KEY = "lmctl_thresholds"
"""Where a model's config.json keeps its per-label thresholds."""
GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)
"""The thresholds `tune` tries for each label: 0.05 to 0.95 in steps of 0.01."""
AVERAGES = ("micro_f1", "macro_f1", "micro_precision", "micro_recall", "macro_precision", "macro_recall",
            "subset_accuracy")
PER_LABEL = ("f1", "precision", "recall")


class MultiLabelTask(Task):
    name = "multi-label-classification"
    auto_class = "AutoModelForSequenceClassification"
    main_metric = "macro_f1"
    # "f1", "precision" and "recall" stand for the per-label scores (`<label>_f1`, ...).
    higher_is_better = AVERAGES + PER_LABEL
    lower_is_better = ("loss",)
    distills = True
    soft_targets = "labels"  # one sigmoid per label: lmctl.distill's per-label soft targets
    chooses_pooling = True  # a decoder classifier pools as text-classification's (lmctl.models.POOLING_KEY)
    onnx_outputs = ("logits",)
    light_inputs = True
    predict_modes = ("classify",)
    mode = "classify"

    def __init__(self, cfg, console):
        self.cfg = cfg
        self.console = console
        self.text_column = cfg.data.text_column
        self.pair_column = cfg.data.text_pair_column
        self.label_column = cfg.data.label_column
        self.separator = cfg.data.label_separator
        self.max_length = cfg.training.max_length
        self.min_labels = cfg.training.min_labels
        self.label_names: list[str] = []
        self.thresholds = np.zeros(0)
        self._label_to_id: dict[str, int] = {}

    @classmethod
    def check_config(cls, cfg) -> None:
        if cfg.training.threshold == "tune" and cfg.training.eval_strategy == "no":
            raise ValueError("training.threshold: 'tune' chooses each label's threshold at each evaluation, but "
                             "training.eval_strategy is 'no'; give a number (e.g. 0.5) or evaluate")

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The keys `compute_metrics` reports, known once the labels are (gates are checked before inference)."""
        return AVERAGES + tuple(f"{key}_{m}" for key in metric_keys(self.label_names) for m in PER_LABEL) + ("loss",)

    def columns(self, with_labels: bool) -> dict[str, str | None]:
        cols = {"data.text_column": self.text_column, "data.text_pair_column": self.pair_column}
        if with_labels:
            # Not a label key: read as text, so a CSV cell "27" is not an int beside "3,15" (JSON lists stay lists).
            cols["data.label_column"] = self.label_column
        return cols

    # ---- labels -----------------------------------------------------------------
    def _labels(self, value, source: str, row: int) -> list[str]:
        try:
            return parse_labels(value, self.separator)
        except ValueError as exc:
            raise reject(source, row, f"column '{self.label_column}': {exc}") from None

    def fit(self, train) -> None:
        from lmctl.data import source_name

        source = source_name(self.cfg, "train")
        rows = [self._labels(v, source, i) for i, v in enumerate(train[self.label_column])]
        seen = {label for labels in rows for label in labels}
        if not seen:
            raise UserError(f"{source}: no row has a label in column '{self.label_column}'; multi-label "
                            "classification needs labelled rows")
        given = self.cfg.data.label_names
        self.label_names = list(given) if given else sorted(seen, key=_label_order(seen))
        self._label_to_id = label_index(self.label_names, by_position=bool(given))
        missing = sorted(seen - set(self._label_to_id), key=_label_order(seen))
        if missing:
            raise UserError(f"data.label_names: label '{missing[0]}' of the train data is neither listed nor a "
                            f"position in the list (0 to {len(given) - 1}); add it")
        threshold = self.cfg.training.threshold
        self.thresholds = np.full(len(self.label_names), 0.5 if threshold == "tune" else threshold)
        counts = np.zeros(len(self.label_names))
        for labels in rows:
            counts[[self._label_to_id[label] for label in set(labels)]] += 1
        self.prior_logits = prior_logits(counts, len(rows))

    # ---- models -----------------------------------------------------------------
    def build_model(self, name_or_path: str | None, tokenizer):
        from lmctl.models import build_model

        head = head_config(self.cfg, self.label_names, "multi_label_classification",
                           **{THRESHOLDS_KEY: self.thresholds.tolist()})
        return build_model(self.auto_class, self.cfg.model, name_or_path, tokenizer, self.max_length,
                           init_new=self._start_at_priors, **head)

    def _start_at_priors(self, model, new) -> None:
        """A new head starts out predicting each label's frequency in train: its output bias is the
        log-odds of that frequency (the prior initialisation of Lin et al., 2017, "Focal Loss").
        From zero, every sigmoid starts at 0.5 against labels that are mostly 0, and the first
        steps' large, input-independent gradient drags the whole network toward "no label": on
        GoEmotions (28 labels, 1.2 a row) all-MiniLM-L6-v2 at lr 1e-4 collapsed to one output for
        every input (docs/benchmarks.md#multi-label-goemotions). A head without a bias (GPT-2's
        `score`) or one the checkpoint already has is left as it is."""
        import torch

        heads = [(n, m) for n, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and m.out_features == len(self.label_names)]
        if not heads:
            return
        name, head = heads[-1]  # the output layer is the last one registered
        if head.bias is not None and new(f"{name}.bias"):
            with torch.no_grad():
                head.bias.copy_(torch.as_tensor(self.prior_logits))

    def load_model(self, path: str, tokenizer, source: str):
        from lmctl.models import load_model

        model = load_model(self.auto_class, path, tokenizer, key=source,
                           allow_pickle=self.cfg.model.allow_pickle_weights)
        config = model.config
        if config.problem_type not in (None, "multi_label_classification"):
            raise UserError(f"{source}: {path} was trained for {config.problem_type}, not multi-label classification; "
                            "evaluate it with its own task")
        self.label_names = [config.id2label[i] for i in range(config.num_labels)]
        self._label_to_id = label_index(self.label_names, by_position=bool(self.cfg.data.label_names))
        stored = getattr(config, THRESHOLDS_KEY, None)
        if stored is None:  # a checkpoint trained elsewhere: the config's threshold for every label
            threshold = self.cfg.training.threshold
            stored = [0.5 if threshold == "tune" else threshold] * len(self.label_names)
        if len(stored) != len(self.label_names):
            raise UserError(f"{source}: {path}/config.json has {len(stored)} {THRESHOLDS_KEY} for "
                            f"{len(self.label_names)} labels; export or train the model again")
        self.thresholds = np.asarray(stored, dtype=float)
        return model

    # ---- data -------------------------------------------------------------------
    def texts(self, ds):
        """The raw text a tokenizer trained for this task should see."""
        return column_texts(ds, self.text_column, self.pair_column)

    def encode(self, ds, split: str, source: str):
        n = len(self.label_names)

        def labels(batch):
            rows = [self._labels(v, source, 0) for v in batch[self.label_column]]  # checked: no error left
            return [_multi_hot([self._label_to_id[label] for label in row], n) for row in rows]

        with_labels = split != "predict"
        return encode_texts(ds, self.tokenizer, self.text_column, self.pair_column, self.max_length, source,
                            self.console, labels if with_labels else None,
                            (lambda: self._check_labels(ds, source)) if with_labels else None)

    def _check_labels(self, ds, source: str) -> None:
        for i, value in enumerate(ds[self.label_column]):
            for label in self._labels(value, source, i):
                if label not in self._label_to_id:
                    raise reject(source, i, f"label {label!r} was not seen in training; known labels: "
                                            f"{', '.join(self.label_names)}")

    def collate(self, features: list[dict]) -> dict:
        return collate_padded(self.tokenizer, features)

    # ---- evaluation and prediction ------------------------------------------------
    def eval_step(self, model, batch) -> dict:
        return logits_step(model, batch)

    def label_sets(self, logits) -> np.ndarray:
        """Rows × labels, True where the label is predicted: this task's thresholds and min_labels."""
        return decide(sigmoid(np.asarray(logits, dtype=np.float64)), self.thresholds, self.min_labels)

    def tune(self, outputs: dict, encoded) -> tuple[dict, "MultiLabelTask"]:
        if self.cfg.training.threshold != "tune":
            return {}, self
        logits = np.asarray(outputs["logits"], dtype=np.float64)
        tuned = copy.copy(self)
        tuned.thresholds = tune_thresholds(sigmoid(logits), np.asarray(outputs["labels"]) > 0.5)
        return {THRESHOLDS_KEY: tuned.thresholds.tolist()}, tuned

    def compute_metrics(self, outputs: dict, encoded=None) -> dict[str, float]:
        from lmctl import metrics

        logits = np.asarray(outputs["logits"], dtype=np.float64)
        truth = np.asarray(outputs["labels"]) > 0.5
        scores = metrics.load("multi_label").compute(predictions=self.label_sets(logits).astype(np.int8).tolist(),
                                                     references=truth.astype(np.int8).tolist())
        result = {name: float(scores[name]) for name in AVERAGES}
        for j, key in enumerate(metric_keys(self.label_names)):
            result.update({f"{key}_{m}": float(scores[m][j]) for m in PER_LABEL})
        # Binary cross-entropy with logits, averaged over rows and labels (BCEWithLogitsLoss), written stably.
        result["loss"] = float(np.mean(np.logaddexp(0, logits) - logits * truth))
        return result

    def predict_records(self, outputs: dict, encoded=None) -> list[dict]:
        logits = np.asarray(outputs["logits"], dtype=np.float64)
        probs, chosen = sigmoid(logits), self.label_sets(logits)
        records = []
        for p, keep in zip(probs, chosen):
            order = np.argsort(-p, kind="stable")  # the labels, highest score first
            records.append({"labels": [self.label_names[j] for j in order if keep[j]],
                            "scores": {n: round(float(s), 6) for n, s in zip(self.label_names, p)}})
        return records


# ---- the pieces, as functions: what the task, distillation's agreement and tests call ----------
def parse_labels(value, separator: str) -> list[str]:
    """One row's labels as text: a list (JSON), a text cell split on `separator` (or holding a JSON
    list), or one int. ValueError says why a value cannot be read."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise ValueError("missing labels; write [] for a row with none of the labels, or fill or remove the row")
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError(f"cannot read {value!r} as a JSON list of labels") from None
        else:
            labels = [part.strip() for part in text.split(separator) if part.strip()]
            if not labels:
                raise ValueError(f"no label in {value!r}; write [] for a row with none of the labels")
            return labels
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_one_label(v, value) for v in value]
    return [_one_label(value, value)]


def _one_label(value, cell) -> str:
    if isinstance(value, float) and value.is_integer():  # pandas turns an int column with a gap into floats
        value = int(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise ValueError(f"cannot read {cell!r} as labels: give a list of label names or ids, or text such as "
                     "'joy,love'")


def _label_order(seen):
    """Sort key for label names learnt from the data: numerically when all are digits (ids 2 < 10)."""
    digits = all(s.isdigit() for s in seen)
    return (lambda s: int(s)) if digits else (lambda s: s)


def label_index(names: list[str], by_position: bool) -> dict[str, int]:
    """Label text → id: each name, and with `by_position` (data.label_names given) each id written as
    digits where no name is those digits."""
    index = {str(i): i for i in range(len(names))} if by_position else {}
    index.update({name: i for i, name in enumerate(names)})
    return index


def _multi_hot(ids: list[int], n: int) -> list[float]:
    row = [0.0] * n
    for i in ids:
        row[i] = 1.0
    return row


def metric_keys(names: list[str]) -> list[str]:
    """Each label's name as a metric-name part (`<key>_f1`): lower case, runs of anything but letters
    and digits as '_'; a key that another label (or an average: micro, macro) already has gets the
    label's id after it."""
    keys: list[str] = []
    for i, name in enumerate(names):
        key = re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or "label"
        if key in keys or key in ("micro", "macro"):
            key = f"{key}_{i}"
        keys.append(key)
    return keys


def prior_logits(counts: np.ndarray, rows: int) -> np.ndarray:
    """The logit of each label's share of `rows` (`counts`: rows with the label), add-one smoothed so
    that a label no row has is rare, not impossible: a new head's starting bias."""
    frequencies = (np.asarray(counts, dtype=np.float64) + 1) / (rows + 2)
    return np.log(frequencies / (1 - frequencies))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x), without overflow for large |x|."""
    return np.exp(-np.logaddexp(0, -x))


def decide(probs: np.ndarray, thresholds: np.ndarray, min_labels: int = 0) -> np.ndarray:
    """Rows × labels, True where a label is predicted: its score reaches its threshold; a row with
    fewer than `min_labels` such labels also gets its highest-scoring other labels until it has that
    many (at most every label). What metrics and predict records both apply."""
    chosen = probs >= thresholds
    need = np.minimum(min_labels, probs.shape[-1]) - chosen.sum(-1)
    if min_labels and (need > 0).any():
        # Rank each row's unchosen labels by score (chosen ones last); add the first `need` of them.
        order = np.argsort(np.where(chosen, np.inf, -probs), axis=-1, kind="stable")
        rank = np.argsort(order, axis=-1)  # each label's place in its row's order
        chosen = chosen | (rank < need[:, None])
    return chosen


def tune_thresholds(probs: np.ndarray, truth: np.ndarray, default: float = 0.5) -> np.ndarray:
    """Each label's threshold from GRID that maximises its F1 on these rows (the middle one where
    several tie: a plateau's centre, not its edge); `default` for a label no row has (its F1 is 0 at
    any threshold)."""
    predicted = probs[:, :, None] >= GRID[None, None, :]  # rows × labels × grid
    tp = (predicted & truth[:, :, None]).sum(0)
    positives = truth.sum(0)[:, None]
    f1 = 2 * tp / np.maximum(predicted.sum(0) + positives, 1)
    thresholds = np.full(probs.shape[1], default)
    for j in np.flatnonzero(truth.any(0)):
        best = np.flatnonzero(f1[j] == f1[j].max())
        thresholds[j] = GRID[best[len(best) // 2]]
    return thresholds
