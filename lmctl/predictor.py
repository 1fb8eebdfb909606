"""The inference API: a trained model loaded once; rows in, the records or metrics out.

    from lmctl import Predictor

    p = Predictor("runs/sst2")                        # a run directory, model directory or ONNX export
    p.predict(["a delight", "a bore"])                # [{"text": ..., "label": "positive", "score": ...}, ...]
    p.evaluate([{"sentence": "...", "label": 1}])     # {"accuracy": ..., "f1": ..., ...}

`lmctl predict` and `lmctl evaluate` are loops over a Predictor (reading files in chunks,
drawing progress, writing output); a server calls the same object. The task is bound to
the model's tokenizer and to one mode when the Predictor is made, and nothing a call does
changes it, so one Predictor serves one worker thread call after call.

A bad row raises `lmctl.errors.RowError`, whose `index` is the row's place (from 0) in the
rows given; every other bad input raises `UserError` with one line saying what to do.
"""

from __future__ import annotations

from typing import Any, Iterable

from lmctl.console import Console, quiet_libraries
from lmctl.errors import RowError, UserError


class Predictor:
    """A model loaded once for prediction and evaluation.

    `model`: a run directory, a model directory, an ONNX export (`lmctl export --format onnx`)
    or a hub id. `mode`: one of the task's predict modes (e.g. `generate` or `score` for a causal
    LM; default: the task's first). `config`/`overrides`/`task`: as `lmctl predict`'s --config,
    --set and --task (default: the run's own config.yaml). `cfg`: an already loaded config
    instead of those three. `key` names where `model` came from in error messages. `light`: False loads
    an ONNX export for the PyTorch loop even where it could predict without torch (`is_light`).
    """

    def __init__(self, model: str, mode: str | None = None, *, config: str | None = None,
                 overrides: Iterable[str] = (), task: str | None = None, batch_size: int | None = None,
                 max_tokens: int | None = None, console: Console | None = None, cfg=None, key: str = "model",
                 light: bool = True):
        from lmctl import config as config_lib
        from lmctl import models
        from lmctl.tasks import make_task

        self.cfg = cfg if cfg is not None else config_lib.config_for_model(model, config, list(overrides), task)
        self.console = console or Console()
        self.source = str(model)
        self.batch_size = batch_size or self.cfg.training.eval_batch
        self.max_tokens = max_tokens
        unbound = make_task(self.cfg, self.console)
        if mode is not None and mode not in unbound.predict_modes:
            raise UserError(f"mode {mode}: task '{self.cfg.task}' predicts with: {', '.join(unbound.predict_modes)}")
        path = models.resolve(str(model), key=key)
        # An ONNX export of a task that allows it predicts with no torch, transformers or datasets.
        self.light = light and is_light(unbound, path)
        if self.light:
            from lmctl.plain_tokenizer import PlainTokenizer

            self.tokenizer = PlainTokenizer(path, key)
        else:
            quiet_libraries()
            self.tokenizer = models.load_tokenizer(path, self.cfg.model.trust_remote_code, key=key)
        loaded = unbound.load_model(path, self.tokenizer, key)  # restores the task's labels from the model
        self.mode = mode or unbound.predict_modes[0]
        self.task = unbound.bind(self.tokenizer, self.mode)
        # Evaluation scores the model as training does (a language model's loss, not its generations).
        self.eval_task = unbound.bind(self.tokenizer)
        from lmctl import onnx_model

        self.backend = "onnx" if onnx_model.is_onnx(loaded) else "pytorch"
        self._torch_twin = None  # a light Predictor's evaluate runs on the PyTorch path (evaluate_table)
        if self.light:
            self.accelerator, self.model = None, loaded
            return
        from lmctl.engine.train import make_accelerator

        self.accelerator = make_accelerator(self.cfg.training)
        # An ONNX Runtime session has no parameters to place or wrap; its inputs go to the CPU.
        self.model = loaded if self.backend == "onnx" else self.accelerator.prepare(loaded)

    # ---- what the model reads and says -----------------------------------------------------
    def input_columns(self, with_labels: bool = False) -> list[str]:
        """The columns a row must have (the labels too for `evaluate`)."""
        return [c for c in self.task.columns(with_labels).values() if c]

    def info(self) -> dict[str, Any]:
        """What a client needs to know: task, mode, labels, family, lengths, backend."""
        config = getattr(self.model, "config", None)
        labels = getattr(self.task, "label_names", None)
        return {"model": self.source, "task": self.cfg.task, "mode": self.mode, "modes": list(self.task.predict_modes),
                "inputs": self.input_columns(), "labels": list(labels) if labels else None,
                "family": getattr(config, "model_type", None), "max_length": self.cfg.training.max_length,
                "backend": self.backend, "metrics": list(self.eval_task.metric_names)}

    # ---- rows from Python ----------------------------------------------------------------
    def predict(self, rows: Iterable[dict | str], explain_steps: int | None = None) -> list[dict]:
        """One record per row, as `lmctl predict` writes it (the input columns echoed, then the
        prediction), in the order `lmctl predict` writes them. Rows are dicts of the input columns,
        or plain strings for a task with one text column. `explain_steps`: add word attributions."""
        return self.predict_table(self._table(rows, with_labels=False), "rows", explain_steps=explain_steps)

    def evaluate(self, rows: Iterable[dict]) -> dict[str, float]:
        """The metrics `lmctl evaluate` reports, on labelled rows (dicts with the label columns too)."""
        return self.evaluate_table(self._table(rows, with_labels=True), "rows")["metrics"]

    def check_rows(self, rows: Iterable[dict | str], with_labels: bool = False) -> list[dict]:
        """The rows as dicts of exactly the columns the task reads, after the checks `predict` makes
        of a file's rows: a dict (or a plain string for a one-text task), every column there, text
        columns holding non-empty text. Raises `RowError` (source "rows") for the first bad row."""
        rows = list(rows)
        if not rows:
            raise UserError("no rows: give at least one row")
        columns = self.input_columns(with_labels)
        text = self.input_columns()
        records = []
        for i, row in enumerate(rows):
            if isinstance(row, str):
                if len(text) != 1 or with_labels:
                    raise RowError("rows", i + 1, f"a plain string, but this task reads the columns "
                                                  f"{', '.join(columns)}; give a dict")
                row = {text[0]: row}
            if not isinstance(row, dict):
                raise RowError("rows", i + 1, f"expected a dict of {', '.join(columns)}, got {type(row).__name__}")
            missing = [c for c in columns if c not in row]
            if missing:
                raise RowError("rows", i + 1, f"no '{missing[0]}'; every row needs {', '.join(columns)}",
                               column=missing[0])
            records.append({c: row[c] for c in columns})
        from lmctl.data import check_text

        words = {self.task.columns(with_labels)[key] for key in self.task.word_list_keys}
        for column in self.text_columns():
            if column in columns:  # a table's column built of mixed types would not even load
                check_text({column: [r[column] for r in records]}, column, "rows", words=column in words)
        return records

    def _table(self, rows: Iterable[dict | str], with_labels: bool):
        records = self.check_rows(rows, with_labels)
        # Plain columns where the task reads rows only through them (table.py); evaluation keeps a
        # datasets table (labels ride along with the PyTorch loop's batches).
        if self.task.light_inputs and not with_labels:
            from lmctl.table import Columns

            return Columns.from_list(records)
        from datasets import Dataset

        return Dataset.from_list(records)

    # ---- tables (what the commands' file loops call) --------------------------------------
    def predict_table(self, ds, source: str, progress=None, done: int = 0, explain_steps: int | None = None
                      ) -> list[dict]:
        """Records for a `datasets.Dataset` of input rows (`source` names it in errors). `progress`
        (a console bar counting the input's rows) and `done` (rows before `ds` in the whole input)
        serve a caller that predicts a long input in chunks."""
        task = self.task
        encoded, outputs = self._infer(task, ds, "predict", source, None if explain_steps else progress, done)
        records = task.predict_records(outputs, encoded)
        if "truncated" in encoded.column_names:  # rows cut at max_length say so (Task.encode)
            records = [{**r, "truncated": True} if cut else r for r, cut in zip(records, encoded["truncated"])]
        if explain_steps:
            explained = self._explain(ds, outputs, explain_steps, progress, done)
            records = [{**r, **e} for r, e in zip(records, explained)]
        # Echo the input text so each record stands on its own.
        columns = [c for c in self.text_columns() if c in ds.column_names]
        shown = ds.select_columns(columns)[:]  # column → values
        return task.arrange_predictions([{**{c: v[i] for c, v in shown.items()}, **r} for i, r in enumerate(records)])

    def evaluate_table(self, ds, source: str, progress=None) -> dict[str, Any]:
        """{examples, metrics[, confusion_matrix]} for a labelled `datasets.Dataset`."""
        if self.light:
            return self._pytorch_path().evaluate_table(ds, source, progress)
        task = self.eval_task
        encoded, outputs = self._infer(task, ds, "eval", source, progress)
        result = {"examples": task.count_examples(encoded),
                  "metrics": {k: float(v) for k, v in task.compute_metrics(outputs, encoded).items()}}
        matrix = task.confusion(outputs)
        if matrix is not None:
            names, values = matrix
            result["confusion_matrix"] = {"labels": names, "matrix": values.tolist()}
        return result

    def text_columns(self) -> tuple[str, ...]:
        """The input columns that are text: echoed in the records, kept as strings when files are read."""
        return self.task.text_columns()

    # ---- the work ------------------------------------------------------------------------
    def _infer(self, task, ds, split: str, source: str, progress, done: int = 0):
        encoded = task.encode(ds, split, source)
        counter = None if progress is None else ChunkProgress(progress, done, len(ds), len(encoded))
        if self.light:
            from lmctl.engine import light

            return encoded, light.run_inference(self.model, self.tokenizer, encoded, self.batch_size, counter,
                                                self.max_tokens)
        from lmctl.engine.infer import run_inference

        outputs = run_inference(self.accelerator, self.model, task, encoded, self.batch_size, counter, self.max_tokens)
        return encoded, outputs

    def _pytorch_path(self) -> "Predictor":
        """This export loaded for the PyTorch loop (evaluation: labels and metrics ride along with the
        batches there), once, on first use."""
        if self._torch_twin is None:
            self._torch_twin = Predictor(self.source, self.mode, cfg=self.cfg, batch_size=self.batch_size,
                                         max_tokens=self.max_tokens, console=self.console, light=False)
        return self._torch_twin

    def _explain(self, ds, outputs, steps: int, progress, done: int) -> list[dict]:
        from lmctl.explain import explain

        if not self.task.explains:
            raise UserError(f"task '{self.cfg.task}' has no explanation; explanations are for text-classification "
                            "models (single texts or pairs)")
        if self.backend == "onnx":
            raise UserError(f"{self.source} is an ONNX export, which has no gradients; explain with the run "
                            "directory it was exported from")
        texts, pairs, targets = self.task.explanation_inputs(ds, outputs)
        counter = None if progress is None else ChunkProgress(progress, done, len(ds), len(texts))
        return explain(self.accelerator.unwrap_model(self.model), self.tokenizer, texts, pairs, targets,
                       self.cfg.training.max_length, steps, progress=counter)


def is_light(task, path: str) -> bool:
    """Whether the model at `path` for `task` (a task or its class) predicts without torch: an ONNX export
    with its tokenizer.json, of a task whose predict encoding needs nothing more (`Task.light_inputs`)."""
    from lmctl import onnx_model
    from lmctl.plain_tokenizer import has_tokenizer_file

    return bool(task.light_inputs) and onnx_model.is_onnx_dir(path) and has_tokenizer_file(path)


class ChunkProgress:
    """One chunk's progress on a bar that counts the input's rows: inference counts what it runs
    (encoded features, several for a long QA context; texts explained) out of `count`."""

    def __init__(self, bar, done: int, rows: int, count: int):
        self.bar, self.done, self.rows, self.count = bar, done, rows, max(count, 1)

    def update(self, completed: int) -> None:
        self.bar.update(self.done + self.rows * completed // self.count)
