"""Reranking: a cross-encoder scores (query, candidate) pairs; candidates are ranked per query.

Each row is one pair: the query (`data.text_column`), a candidate (`data.text_pair_column`) and
its relevance label (`data.label_column`): 0/1, or grades 0..G. Rows with the same
`data.query_id_column` value (default: the same query text) are one query's candidates.

The model is `AutoModelForSequenceClassification` with one output, trained pointwise with
binary cross-entropy on the label scaled to [0, 1] (label / G), as sentence-transformers'
CrossEncoder does; `problem_type: multi_label_classification` makes the model's own forward
compute exactly that loss. G travels in the model's config (`ranking_max_grade`), so evaluation
after a reload scales labels as training did. Metrics are ranking metrics over queries
(lmctl/metrics/ranking.py): MRR@k, nDCG@k, accuracy@1, plus the pointwise loss.
"""

from __future__ import annotations

import math

import numpy as np

from lmctl.errors import UserError
from lmctl.tasks.base import Task, check_column_values_are_text, count_truncated, map_batches, reject, report_truncation

_HINT = "reranking labels are relevance grades: 0 for not relevant, 1 (or a higher grade) for relevant"


class RerankingTask(Task):
    name = "reranking"
    auto_class = "AutoModelForSequenceClassification"  # one output: the pair's relevance logit
    # Cut-offs follow ranking.k (`_at_k`: see base.metric_direction). The query counts describe the
    # data, not the model; they are declared higher-is-better, as the name rule read them before.
    higher_is_better = ("mrr_at_k", "ndcg_at_k", "accuracy_at_1", "queries", "queries_without_relevant")
    lower_is_better = ("loss",)
    label_keys = ("data.label_column",)
    onnx_outputs = ("logits",)
    light_inputs = True
    predict_modes = ("rank",)
    mode = "rank"
    streams = False  # predictions are grouped by query over the whole input

    def __init__(self, cfg, console):
        self.cfg = cfg
        self.console = console
        self.query_column = cfg.data.text_column
        self.candidate_column = cfg.data.text_pair_column
        self.label_column = cfg.data.label_column
        self.query_id_column = cfg.data.query_id_column
        self.k = cfg.ranking.k
        self.max_length = cfg.training.max_length
        if not self.candidate_column:
            raise UserError("data.text_pair_column: task 'reranking' scores (query, candidate) pairs; set it to "
                            "the candidate column (data.text_column is the query)")
        self.max_grade: float | None = None

    # ---- metadata ---------------------------------------------------------------
    @property
    def main_metric(self) -> str:
        return f"ndcg_at_{self.k}"

    @property
    def metric_names(self) -> tuple[str, ...]:
        return (f"mrr_at_{self.k}", f"ndcg_at_{self.k}", "accuracy_at_1", "loss", "queries",
                "queries_without_relevant")

    def columns(self, with_labels: bool) -> dict[str, str | None]:
        cols = {"data.text_column": self.query_column, "data.text_pair_column": self.candidate_column,
                "data.query_id_column": self.query_id_column}
        if with_labels:
            cols["data.label_column"] = self.label_column
        return cols

    # ---- labels -----------------------------------------------------------------
    def fit(self, train) -> None:
        grades = self._grades(train, f"data.train_file column '{self.label_column}'")
        top = max(grades)
        if top <= 0:
            raise UserError(f"data.train_file column '{self.label_column}': every label is 0, so no candidate is "
                            f"relevant; {_HINT}")
        self.max_grade = float(top)

    def _grades(self, ds, source: str) -> list[float]:
        grades = []
        for i, v in enumerate(ds[self.label_column]):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                raise reject(source, i, f"missing label in column '{self.label_column}'; fill or remove that row")
            if isinstance(v, str):
                # One stray word in a CSV column makes every cell text: read the numbers, name the word.
                try:
                    v = float(v)
                except ValueError:
                    raise reject(source, i, f"label {v!r} is not a number; {_HINT}") from None
            if not isinstance(v, (int, float, np.number)) or math.isnan(v):
                raise reject(source, i, f"label {v!r} is not a number; {_HINT}")
            if v < 0:
                raise reject(source, i, f"label {v!r} is negative; {_HINT}")
            grades.append(float(v))
        return grades

    def _model_kwargs(self) -> dict:
        return dict(num_labels=1, problem_type="multi_label_classification", id2label={0: "relevance"},
                    label2id={"relevance": 0})

    # ---- models -----------------------------------------------------------------
    def build_model(self, name_or_path: str | None, tokenizer):
        from lmctl.models import build_model

        model = build_model(self.auto_class, self.cfg.model, name_or_path, tokenizer,
                            self.max_length, **self._model_kwargs())
        # Set on the built config: from_pretrained drops config kwargs that the checkpoint's config lacks.
        model.config.ranking_max_grade = self.max_grade
        return model

    def load_model(self, path: str, tokenizer, source: str):
        from lmctl.models import load_model

        model = load_model(self.auto_class, path, tokenizer, key=source,
                           allow_pickle=self.cfg.model.allow_pickle_weights)
        if model.config.num_labels != 1:
            raise UserError(f"{source}: {path} has {model.config.num_labels} outputs; a reranker gives one relevance "
                            "score per pair (train it with task: reranking)")
        # A cross-encoder trained elsewhere has no recorded grade: the evaluation file's top grade
        # (or 1 for binary labels) scales its labels for the loss.
        self.max_grade = getattr(model.config, "ranking_max_grade", None)
        return model

    # ---- data -------------------------------------------------------------------
    def texts(self, ds):
        """The raw text a tokenizer trained for this task should see."""
        yield from ds[self.query_column]
        yield from ds[self.candidate_column]

    def query_keys(self, ds, source: str) -> list:
        """The value that groups each row into its query: the query id, else the query text."""
        column = self.query_id_column or self.query_column
        keys = ds[column]
        for i, key in enumerate(keys):
            if key is None or (isinstance(key, float) and math.isnan(key)) or (isinstance(key, str) and not key.strip()):
                raise reject(source, i, f"empty query id in column '{column}'; fill or remove that row")
        return keys

    def encode(self, ds, split: str, source: str):
        with_labels = split != "predict"
        tokenizer = self.tokenizer
        check_column_values_are_text(ds, self.query_column, source)
        check_column_values_are_text(ds, self.candidate_column, source)
        keys = self.query_keys(ds, source)
        first_seen: dict = {}
        groups = [first_seen.setdefault(key, len(first_seen)) for key in keys]
        if with_labels:
            grades = self._grades(ds, source)
            # A model that does not record its top grade (not trained by lmctl) takes this file's.
            max_grade = self.max_grade if self.max_grade is not None else max(max(grades), 1.0)
            above = next((i for i, g in enumerate(grades) if g > max_grade), None)
            if above is not None:
                raise reject(source, above, f"label {grades[above]:g} is above the highest grade the model was "
                                            f"trained with ({max_grade:g}); use grades 0..{max_grade:g}")
            if split == "eval":
                self._report_unjudgeable(groups, grades, source)

        def tokenize(batch, indices):
            queries, candidates = batch[self.query_column], batch[self.candidate_column]
            full = tokenizer(queries, candidates, truncation=False, verbose=False)["input_ids"]
            enc = tokenizer(queries, candidates, truncation=True, max_length=self.max_length)
            enc["num_tokens"] = [len(ids) for ids in full]
            enc["length"] = [len(ids) for ids in enc["input_ids"]]
            enc["query_group"] = [groups[i] for i in indices]
            if not with_labels:  # predict's records say which rows were cut
                enc["truncated"] = [n > self.max_length for n in enc["num_tokens"]]
            if with_labels:
                enc["grade"] = [grades[i] for i in indices]
                enc["labels"] = [grades[i] / max_grade for i in indices]
            return enc

        encoded = map_batches(ds, tokenize, with_indices=True, remove_columns=ds.column_names, desc=None)
        report_truncation(self.console, count_truncated(encoded, self.max_length), len(encoded), self.max_length,
                          source)
        return encoded.remove_columns(["num_tokens"])

    def _report_unjudgeable(self, groups: list[int], grades: list[float], source: str) -> None:
        relevant = {g for g, grade in zip(groups, grades) if grade > 0}
        n_queries = len(set(groups))
        missing = n_queries - len(relevant)
        if missing:
            self.console.warn(f"{source}: {missing} of {n_queries} queries have no relevant candidate (label > 0); "
                              "they score 0 on every ranking metric")

    def collate(self, features: list[dict]) -> dict:
        # The collator is made per batch, as classification's is, so binding imports no transformers.
        from transformers import DataCollatorWithPadding

        for f in features:
            f.pop("query_group", None)
            f.pop("grade", None)
        batch = DataCollatorWithPadding(self.tokenizer)(features)
        if "labels" in batch:
            # One logit per pair: BCEWithLogitsLoss wants targets of the logits' shape (batch, 1).
            batch["labels"] = batch["labels"].float().view(-1, 1)
        return batch


    # ---- evaluation and prediction ------------------------------------------------
    def eval_step(self, model, batch) -> dict:
        batch.pop("labels", None)  # the loss is computed over all rows in compute_metrics
        return {"logits": model(**batch).logits.float().view(-1)}

    def compute_metrics(self, outputs: dict, encoded) -> dict[str, float]:
        from lmctl import metrics

        logits = np.asarray(outputs["logits"], dtype=float).reshape(-1)
        grades = np.asarray(encoded["grade"], dtype=float)
        # Ranking by logit, not sigmoid: a saturated sigmoid turns distinct scores into ties.
        result = metrics.ranking_metrics(logits, grades, encoded["query_group"], self.k)
        targets = np.asarray(encoded["labels"], dtype=float).reshape(-1)  # grades / the top grade
        # Binary cross-entropy with logits, in its numerically stable form (as torch computes it).
        bce = np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits)))
        result["loss"] = float(bce.mean())
        return result

    def predict_records(self, outputs: dict, encoded) -> list[dict]:
        logits = np.asarray(outputs["logits"], dtype=float).reshape(-1)
        groups = np.asarray(encoded["query_group"])
        # By query, then score descending; lexsort is stable, so equal scores keep their input order.
        order = np.lexsort((-logits, groups))
        in_order = groups[order]
        ranks = np.empty(len(logits), dtype=int)
        ranks[order] = np.arange(len(order)) - np.searchsorted(in_order, in_order, side="left") + 1
        scores = np.exp(-np.logaddexp(0.0, -logits))  # sigmoid, without overflow for large |logit|
        return [{"score": round(float(s), 6), "rank": int(r)} for s, r in zip(scores, ranks)]

    def arrange_predictions(self, rows: list[dict]) -> list[dict]:
        """Queries in order of first appearance, each query's candidates best first."""
        column = self.query_id_column or self.query_column
        first_seen: dict = {}
        for row in rows:
            first_seen.setdefault(row[column], len(first_seen))
        return sorted(rows, key=lambda r: (first_seen[r[column]], r["rank"]))
