"""The glue each command calls: config → data + model + task → engine → run directory.

Order matters for the user: everything that can be checked without loading a model
(config, files, columns, labels, output directory) is checked first, so a bad input
fails in a second and leaves every existing file alone.
"""

from __future__ import annotations

import json
from pathlib import Path

from lmctl import config as config_lib
from lmctl.console import Console
from lmctl.errors import UserError
from lmctl.rundir import check_output_dir, environment, prepare_output_dir, write_json


def make_task(cfg, console):
    from lmctl.tasks import get_task_class

    return get_task_class(cfg.task)(cfg, console)


def text_columns(task, with_labels: bool = False) -> tuple[str, ...]:
    """The columns a task reads as text: kept as strings when files are parsed (a CSV target of
    digits is still text to generate), and the inputs echoed by predict. Labels and SQuAD
    answers keep their parsed types."""
    return tuple(c for key, c in task.columns(with_labels).items()
                 if c and key not in ("data.label_column", "data.answers_column"))


def _quiet_libraries() -> None:
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from datasets.utils.logging import disable_progress_bar, set_verbosity_error
    from transformers.utils import logging as hf_logging

    disable_progress_bar()
    set_verbosity_error()  # e.g. "couldn't be hashed" notes about our in-memory map functions
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*sequence length is longer than the specified maximum.*")


PRETRAIN_TASKS = ("masked-lm", "causal-lm", "span-corruption")


def finetune(cfg, overwrite: bool = False, console: Console | None = None, resume: str | None = None) -> dict:
    """`lmctl finetune`: adapt a checkpoint (or a from-scratch baseline) to a task."""
    if cfg.task == "span-corruption":
        raise UserError("task 'span-corruption' is a pretraining objective; run it with `lmctl pretrain`")
    return train(cfg, overwrite, console, resume)


def pretrain(cfg, overwrite: bool = False, console: Console | None = None, resume: str | None = None) -> dict:
    """`lmctl pretrain`: a language-modelling objective, from scratch or continued from a checkpoint."""
    if cfg.task not in PRETRAIN_TASKS:
        raise UserError(f"task '{cfg.task}' is not a pretraining objective; use one of {', '.join(PRETRAIN_TASKS)} "
                        "(or run `lmctl finetune`)")
    return train(cfg, overwrite, console, resume)


def train(cfg, overwrite: bool = False, console: Console | None = None, resume: str | None = None) -> dict:
    """Train for `cfg.task` on `cfg.data`; returns final metrics. The same path for every task.

    `resume`: "latest" (the newest whole checkpoint in output_dir) or a checkpoint folder.
    """
    console = console or Console()
    from lmctl import data, models

    resume_from = None
    if resume:
        from lmctl.engine.checkpoint import find_resume_checkpoint

        if overwrite:
            raise UserError("--resume continues the run in output_dir; it cannot be combined with --overwrite")
        resume_from = find_resume_checkpoint(Path(cfg.output_dir), None if resume == "latest" else resume, console)
        _check_same_config(cfg, Path(cfg.output_dir) / "config.yaml", console)
    else:
        check_output_dir(cfg.output_dir, overwrite)
    if cfg.model.from_scratch is None:
        name = models.resolve(cfg.model.name_or_path)
    else:
        name = None
        if cfg.model.tokenizer:
            models.resolve(cfg.model.tokenizer, key="model.tokenizer")
    task = make_task(cfg, console)
    _quiet_libraries()
    splits, fingerprints = data.load_splits(cfg, text_columns(task, with_labels=True))
    for split, ds in splits.items():
        data.check_columns(ds, task.columns(with_labels=True), f"{split} data ({_source(cfg, split)})")
    task.fit(splits["train"])
    # A misspelt metric_for_best would otherwise fail at the first evaluation, after the model
    # loaded and the output directory was replaced.
    names = getattr(task, "metric_names", None)
    best = cfg.training.metric_for_best
    if best and names and best not in names:
        raise UserError(f"training.metric_for_best: '{best}' is not reported by task '{cfg.task}'; "
                        f"choose one of {', '.join(sorted(names))}")

    from accelerate.utils import set_seed

    from lmctl.engine.train import check_batch_size, make_accelerator, train as train_loop

    accelerator = make_accelerator(cfg.training)
    check_batch_size(accelerator, cfg.training)
    set_seed(cfg.training.seed)
    out = Path(cfg.output_dir)
    tokenizer = _tokenizer_for_training(cfg, task, splits["train"], name, console, accelerator,
                                        out if resume_from else None)
    with accelerator.main_process_first():
        train_enc = task.encode(splits["train"], tokenizer, "train", _source(cfg, "train"))
        eval_enc = task.encode(splits["validation"], tokenizer, "eval", _source(cfg, "validation"))
    model = task.build_model(name, tokenizer)
    console.log(f"model: {type(model).__name__}, {models.count_parameters(model) / 1e6:.2f}M parameters"
                f"{' (from scratch)' if name is None else ' from ' + name}")

    if accelerator.is_main_process:
        if resume_from is None:
            prepare_output_dir(out, overwrite)
            (out / "config.yaml").write_text(config_lib.dump(cfg), encoding="utf-8")
            write_json(out / "data.json", fingerprints)
            if cfg.model.from_scratch and not cfg.model.tokenizer:
                tokenizer.save_pretrained(out)  # the trained vocabulary, for --resume (see below)
        else:
            _truncate_log(out / "train_log.jsonl", resume_from)
        write_json(out / "environment.json", environment(accelerator))
    accelerator.wait_for_everyone()
    metrics = train_loop(cfg, task, model, tokenizer, train_enc, eval_enc, out, console, accelerator, resume_from)
    console.log(f"run directory: {out}")
    return metrics


def _check_same_config(cfg, saved: Path, console) -> None:
    """A resumed run must be the same run: differing keys (other than the step budget) are refused."""
    if not saved.is_file():
        raise UserError(f"--resume: {saved} not found; output_dir does not hold an lmctl run")
    before = config_lib.read_yaml(saved)
    now = cfg.model_dump(mode="json")
    diffs = [f"{section}.{key}" for section, values in now.items() if isinstance(values, dict)
             for key, value in values.items()
             if before.get(section, {}).get(key) != value and f"{section}.{key}" not in
             ("training.max_steps", "training.num_epochs", "training.save_steps", "training.save_total_limit")]
    diffs += [k for k, v in now.items() if not isinstance(v, dict) and before.get(k) != v]
    if diffs:
        raise UserError(f"--resume: the config differs from the run's {saved} at {', '.join(diffs)}; "
                        "resume with the same config (only the step budget may change)")


def _truncate_log(path: Path, checkpoint: Path) -> None:
    """Drop log lines written after the checkpoint: the resumed run writes them again."""
    from lmctl.engine.checkpoint import load_trainer_state
    from lmctl.rundir import atomic_write_text

    if not path.is_file():
        return
    step = load_trainer_state(checkpoint)["completed_steps"]
    keep = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def _tokenizer_for_training(cfg, task, train_ds, name: str | None, console, accelerator, resumed_run: Path | None):
    """The checkpoint's tokenizer, or the configured one, or one trained on the corpus (from scratch)."""
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

        from lmctl.tokenizer_training import train_tokenizer

        spec, family = cfg.model.train_tokenizer, cfg.model.from_scratch.family
        start = time.perf_counter()
        texts = list(itertools.islice(task.texts(train_ds), spec.max_texts))
        tokenizer = train_tokenizer(family, texts, spec.vocab_size, spec.min_frequency, spec.lowercase,
                                    model_max_length=cfg.training.max_length)
        console.log(f"tokenizer: trained {type(tokenizer).__name__} on {len(texts)} texts, vocab {len(tokenizer)} "
                    f"({time.perf_counter() - start:.1f}s)")
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        tokenizer = broadcast_object_list([tokenizer])[0]
    return tokenizer


def _source(cfg, split: str) -> str:
    if split == "train":
        return cfg.data.train_file or f"{cfg.data.dataset_name}[train]"
    return cfg.data.validation_file or f"validation split of {cfg.data.train_file or cfg.data.dataset_name}"


def config_for_model(model_dir: str, config_path: str | None, overrides: list[str], task: str | None) -> "config_lib.Config":
    """The config an evaluate/predict run uses: an explicit one, else the run directory's own."""
    run_config = Path(model_dir) / "config.yaml"
    if config_path:
        raw = config_lib.read_yaml(config_path)
    elif run_config.is_file():
        raw = config_lib.read_yaml(run_config)
    else:
        raw = {}
    if task:
        raw["task"] = task
    if "task" not in raw:
        raw["task"] = "text-classification"
    model = raw.setdefault("model", {})
    model["name_or_path"] = model_dir
    model.pop("from_scratch", None)  # a trained run is a checkpoint now
    config_lib.apply_overrides(raw, overrides)
    return config_lib.validate(raw, config_path or str(run_config))


def _infer(cfg, task, model_dir: str, ds, source: str, with_labels: bool, batch_size: int | None, console,
           description: str, mode: str | None = None, check=None):
    """Load the model in `model_dir`, encode `ds`, run it; outputs come back in input order."""
    from lmctl import data, models

    if not with_labels:
        if mode and mode not in task.predict_modes:
            raise UserError(f"--mode {mode}: task '{cfg.task}' predicts with: {', '.join(task.predict_modes)}")
        task.mode = mode or task.predict_modes[0]
    # The model first: a missing run directory also means a missing config.yaml, and the
    # default columns that replace it would blame the data instead.
    path = models.resolve(model_dir, key="--model")
    data.check_columns(ds, task.columns(with_labels=with_labels), source)
    _quiet_libraries()
    tokenizer = models.load_tokenizer(path, cfg.model.trust_remote_code, key="--model")
    model = task.load_model(path, tokenizer)
    if check is not None:
        check(task)
    encoded = task.encode(ds, tokenizer, "eval" if with_labels else "predict", source)

    from lmctl.engine.infer import run_inference
    from lmctl.engine.train import make_accelerator

    accelerator = make_accelerator(cfg.training)
    model = accelerator.prepare(model)
    batch_size = batch_size or cfg.training.eval_batch_size or 2 * cfg.training.batch_size
    with console.progress(len(encoded), description) as bar:
        outputs = run_inference(accelerator, model, task, encoded, batch_size, progress=bar)
    return encoded, outputs


def check_gates(gates, names) -> None:
    unknown = [g for g in gates if g not in names]
    if unknown:
        raise UserError(f"--fail-under: unknown metric '{unknown[0]}'; this task reports: {', '.join(sorted(names))}")


def evaluate(cfg, model_dir: str, data_file: str | None, batch_size: int | None, console: Console,
             gates=()) -> dict:
    """Score a trained model on a labelled file; returns metrics (plus a confusion matrix if any)."""
    from lmctl import data

    data_file = data_file or cfg.data.validation_file or cfg.data.test_file
    if not data_file:
        raise UserError("evaluate: no data; pass --data FILE (or a config with data.validation_file)")
    task = make_task(cfg, console)
    ds = data.read_table(data_file, "--data", text_columns(task, with_labels=True))
    # A misspelt --fail-under metric fails before inference when the task lists its metrics.
    def check(task):
        if getattr(task, "metric_names", None):
            check_gates(gates, task.metric_names)

    encoded, outputs = _infer(cfg, task, model_dir, ds, data_file, True, batch_size, console, "evaluate",
                              check=check)
    metrics = {k: float(v) for k, v in task.compute_metrics(outputs, encoded).items()}
    check_gates(gates, metrics)
    # A task whose rows split into several encoded rows (QA windows) counts its own examples.
    count = getattr(task, "count_examples", len)
    result = {"model": str(model_dir), "data": str(data_file), "examples": count(encoded), "metrics": metrics}
    confusion = getattr(task, "confusion", None)
    matrix = confusion(outputs) if confusion else None
    if matrix is not None:
        names, values = matrix
        result["confusion_matrix"] = {"labels": names, "matrix": values.tolist()}
    return result


def predict(cfg, model_dir: str, input_file: str, batch_size: int | None, console: Console,
            mode: str | None = None) -> list[dict]:
    """Predict for every row of `input_file` ('-' for stdin); records come back in input order."""
    from lmctl import data

    task = make_task(cfg, console)
    columns = text_columns(task)
    if input_file == "-":
        ds, source = _read_stdin(columns), "stdin"
    else:
        ds, source = data.read_table(input_file, "--input", columns), input_file
    encoded, outputs = _infer(cfg, task, model_dir, ds, source, False, batch_size, console, "predict", mode)
    records = task.predict_records(outputs, encoded)
    # Echo the input text so each line of the output stands on its own.
    shown = [c for c in columns if c in ds.column_names]
    rows = [{**{c: ds[i][c] for c in shown}, **r} for i, r in enumerate(records)]
    # A task may order its output otherwise (reranking: each query's candidates best first).
    arrange = getattr(task, "arrange_predictions", None)
    return arrange(rows) if arrange else rows


def _read_stdin(text_columns: tuple[str, ...]):
    """stdin: JSON lines if the first line is a JSON object, else one text per line."""
    import sys

    from datasets import Dataset

    lines = [line for line in sys.stdin.read().splitlines() if line.strip()]
    if not lines:
        raise UserError("stdin: no input lines; pipe one text (or JSON object) per line")
    if lines[0].lstrip().startswith("{"):
        try:
            rows = [json.loads(line) for line in lines]
        except json.JSONDecodeError as exc:
            raise UserError(f"stdin: line {exc.doc and lines.index(exc.doc) + 1}: not valid JSON; "
                            "send one JSON object per line or plain text") from None
        return Dataset.from_list(rows)
    return Dataset.from_dict({(text_columns[0] if text_columns else "text"): lines})
