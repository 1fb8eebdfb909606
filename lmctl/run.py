"""The glue each command calls: config → data → model → task → engine → run directory.

Order matters for the user: everything that can be checked without loading a model
(config, files, columns, labels, output directory) is checked first, so a bad input
fails in a second and leaves every existing file alone. This is the command layer:
messages that name a command-line flag are made here, not in the layers below.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Protocol

from lmctl import adapters, distill
from lmctl import config as config_lib
from lmctl.console import Console, is_main_process, quiet_libraries
from lmctl.data import CHUNK_ROWS
from lmctl.engine import trackers
from lmctl.errors import UserError
from lmctl.rundir import check_output_dir, environment, prepare_output_dir, run_lock, truncate_log, write_json
from lmctl.tasks import get_task_class, make_task, names_where


@contextmanager
def flag(name: str):
    """Errors from below, about the value of a command-line flag, name that flag."""
    try:
        yield
    except UserError as exc:
        raise UserError(f"{name}: {exc}") from None


def finetune(cfg, overwrite: bool = False, console: Console | None = None, resume: str | None = None,
             on_evaluate=None) -> dict:
    """`lmctl finetune`: adapt a checkpoint (or a from-scratch baseline) to a task."""
    if not get_task_class(cfg.task).finetunes:
        raise UserError(f"task '{cfg.task}' is a pretraining objective; run it with `lmctl pretrain`")
    return train(cfg, overwrite, console, resume, on_evaluate)


def pretrain(cfg, overwrite: bool = False, console: Console | None = None, resume: str | None = None,
             on_evaluate=None) -> dict:
    """`lmctl pretrain`: a language-modelling objective, from scratch or continued from a checkpoint."""
    if not get_task_class(cfg.task).pretraining:
        raise UserError(f"task '{cfg.task}' is not a pretraining objective; use one of "
                        f"{', '.join(names_where('pretraining'))} (or run `lmctl finetune`)")
    return train(cfg, overwrite, console, resume, on_evaluate)


def train(cfg, overwrite: bool = False, console: Console | None = None, resume: str | None = None,
          on_evaluate=None) -> dict:
    """Train for `cfg.task` on `cfg.data`; returns final metrics. The same path for every task.

    `resume`: "latest" (the newest whole checkpoint in output_dir) or a checkpoint folder.
    `on_evaluate(step, metrics) -> bool`: told each evaluation's metrics; True stops training there,
    as early stopping does, with the kept model and metrics.json written (a sweep prunes trials so).
    """
    console = console or Console()
    # Rank 0 holds the run directory's lock for the whole run; the other ranks follow rank 0.
    with run_lock(cfg.output_dir, console) if is_main_process() else nullcontext():
        return _train(cfg, overwrite, console, resume, on_evaluate)


class TrainingPlugin(Protocol):
    """A piece of training that plugs into the recipe (distillation: `distill.Distillation`). `_train`
    asks every plugin of the run at each step, in the order of these hooks; a run without plugins
    is a plain one. Plugins implement this structurally (no base class)."""

    def check(self) -> None:
        """Up front, before any data is read: what the plugin needs exists (a teacher)."""

    def fit(self, task, fingerprints: dict) -> None:
        """After the task learnt from the train data: load and check what the plugin needs against
        the task (the teacher's labels); add the fingerprints of files it reads to data.json's."""

    def prepare(self, task, train_rows, train_enc, accelerator):
        """The training features (from the bound task) with what the plugin adds (teacher outputs)."""

    def describe(self, model_name: str | None) -> str:
        """One console line on what the plugin does in this run."""

    def build_model(self, task, tokenizer):
        """The model to train, where the plugin builds it (a student from a teacher's layers); None: the task's."""

    def loss_fn(self, task):
        """The training loss `(model, batch) → loss` where it is not the model's own; None: the model's."""

    def report(self, task, tokenizer, eval_rows: dict, eval_sets: dict, out: Path, accelerator) -> dict:
        """After training, metrics.json's extra entries (the teacher's scores, its agreement with the student)."""


def _train(cfg, overwrite: bool, console: Console, resume: str | None, on_evaluate=None) -> dict:
    """The training recipe, in steps: checks → data → accelerator → features → model → run directory →
    the engine's loop → plugin reports → curves. Each step asks the run's plugins (`TrainingPlugin`)."""
    out = Path(cfg.output_dir)
    plugins = _plugins(cfg, console)
    resume_from, name = _check_up_front(cfg, overwrite, console, resume, plugins)
    task, splits, fingerprints = _setup_data(cfg, console, plugins)
    accelerator = _setup_accelerator(cfg, out)
    task, tokenizer, train_enc, eval_sets = _setup_features(cfg, task, splits, name, accelerator, console,
                                                            resume_from, plugins)
    model = _setup_model(cfg, task, tokenizer, name, console, plugins)
    if accelerator.is_main_process:
        _start_run_dir(cfg, out, overwrite, fingerprints, tokenizer, resume_from)
        write_json(out / "environment.json", environment(accelerator))
    accelerator.wait_for_everyone()

    from lmctl.engine.train import train as train_loop

    loss_fn = _one_answer([p.loss_fn(task) for p in plugins], "training loss")
    metrics = train_loop(cfg, task, model, tokenizer, train_enc, eval_sets, out, console, accelerator, resume_from,
                         loss_fn, on_evaluate)
    metrics = _plugin_reports(plugins, task, tokenizer, splits["eval"], eval_sets, out, metrics, accelerator)
    if accelerator.is_main_process:
        from lmctl.plots import write_curves

        write_curves(out)
    console.log(f"run directory: {out}")
    return metrics


def _plugins(cfg, console) -> list[TrainingPlugin]:
    """What this run plugs into the recipe: distillation when the config has a distill section."""
    return [distill.Distillation(cfg, make_task, console)] if cfg.distill else []


def _one_answer(answers: list, what: str):
    """The one plugin answer that is not None (None: no plugin gives one)."""
    given = [a for a in answers if a is not None]
    if len(given) > 1:
        raise RuntimeError(f"{len(given)} training plugins each give the {what}; at most one may")
    return given[0] if given else None


def _check_up_front(cfg, overwrite: bool, console, resume: str | None, plugins) -> tuple[Path | None, str | None]:
    """(checkpoint to resume from, checkpoint the model starts from), checked before any data is read:
    a bad flag, output directory, teacher or model path fails in a second."""
    resume_from = _resume_checkpoint(cfg, resume, overwrite, console) if resume else None
    if resume_from is None:
        check_output_dir(cfg.output_dir, overwrite)
    for plugin in plugins:
        plugin.check()
    name = _checkpoint_name(cfg)
    trackers.check_installed(cfg.training.report_to)
    return resume_from, name


def _setup_data(cfg, console, plugins):
    """(unbound task, splits, data fingerprints): the data read and checked, and what the task (and
    each plugin) learns from it before a model exists."""
    from lmctl import data

    task = make_task(cfg, console)
    quiet_libraries()
    splits, fingerprints = data.load_splits(cfg, task.text_columns(with_labels=True))
    columns = task.columns(with_labels=True)
    data.check_columns(splits["train"], columns, f"train data ({data.source_name(cfg, 'train')})")
    for eval_set, ds in splits["eval"].items():
        data.check_columns(ds, columns, f"validation data ({data.source_name(cfg, 'validation', eval_set)})")
    task.fit(splits["train"])
    for plugin in plugins:
        plugin.fit(task, fingerprints)
    # A misspelt metric_for_best would otherwise fail at the first evaluation, after the model
    # loaded and the output directory was replaced.
    best = cfg.training.metric_for_best
    names = [config_lib.metric_key(s, m) for s in splits["eval"] for m in task.metric_names]
    if best and best not in names:
        raise UserError(f"training.metric_for_best: '{best}' is not reported by task '{cfg.task}'; "
                        f"choose one of {', '.join(sorted(names))}")
    return task, splits, fingerprints


def reported_metrics(cfg, console: Console) -> tuple[list[str], str]:
    """(the metrics a run of `cfg` reports at each evaluation, as metrics.json names them after `eval_`;
    the one it keeps its model by): the data read and checked as training reads it, no model loaded.
    A sweep checks its metric so, before any trial trains."""
    task, splits, _ = _setup_data(cfg, console, [])
    names = [config_lib.metric_key(s, m) for s in splits["eval"] for m in task.metric_names]
    return names, cfg.training.metric_for_best or config_lib.metric_key(next(iter(splits["eval"])), task.main_metric)


def _setup_accelerator(cfg, out: Path):
    """The run's Accelerator (its trackers write in `out`), after the batch sizes were checked; seeds set."""
    from accelerate.utils import set_seed

    from lmctl.engine.train import check_batch_size, make_accelerator

    accelerator = make_accelerator(cfg.training, out)
    check_batch_size(accelerator, cfg.training)
    set_seed(cfg.training.seed)
    return accelerator


def _setup_features(cfg, task, splits, name: str | None, accelerator, console, resume_from: Path | None, plugins):
    """(bound task, tokenizer, training features, evaluation sets' features): the run's tokenizer
    (loaded, or trained and saved), the task bound to it, the data encoded, then each plugin's additions."""
    from lmctl import data
    from lmctl.tokenizer_training import tokenizer_for_run

    tokenizer = tokenizer_for_run(cfg, task.texts(splits["train"]), name, console, accelerator,
                                  Path(cfg.output_dir) if resume_from else None)
    task = task.bind(tokenizer)
    with accelerator.main_process_first():
        train_enc = task.encode(splits["train"], "train", data.source_name(cfg, "train"))
        eval_sets = {eval_set: task.encode(ds, "eval", data.source_name(cfg, "validation", eval_set))
                     for eval_set, ds in splits["eval"].items()}
    for plugin in plugins:
        train_enc = plugin.prepare(task, splits["train"], train_enc, accelerator)
    return task, tokenizer, train_enc, eval_sets


def _setup_model(cfg, task, tokenizer, name: str | None, console, plugins):
    """The model to train: a plugin's (a student from a teacher's layers) or the task's head on `name`
    (None: from scratch); described on the console."""
    from lmctl import models

    for plugin in plugins:
        console.log(plugin.describe(name))
    model = _one_answer([p.build_model(task, tokenizer) for p in plugins], "model")
    if model is None:
        model = task.build_model(name, tokenizer)
    source = (f" from layers {cfg.model.from_teacher.layers} of {name}" if cfg.model.from_teacher
              else " (from scratch)" if name is None else " from " + name)
    console.log(f"model: {type(model).__name__}, {models.count_parameters(model) / 1e6:.2f}M parameters{source}")
    if adapters.is_adapted(model):
        console.log(adapters.describe(model))
    return model


def _plugin_reports(plugins, task, tokenizer, eval_rows: dict, eval_sets: dict, out: Path, metrics: dict,
                    accelerator) -> dict:
    """metrics.json gains what each plugin reports after training (a teacher's scores and agreement)."""
    for plugin in plugins:
        metrics = {**metrics, **plugin.report(task, tokenizer, eval_rows, eval_sets, out, accelerator)}
        if accelerator.is_main_process:
            write_json(out / "metrics.json", metrics)
    return metrics


def _resume_checkpoint(cfg, resume: str, overwrite: bool, console) -> Path:
    from lmctl.engine.checkpoint import find_resume_checkpoint

    if overwrite:
        raise UserError("--resume continues the run in output_dir; it cannot be combined with --overwrite")
    with flag("--resume" if resume == "latest" else "--resume-from"):
        checkpoint = find_resume_checkpoint(Path(cfg.output_dir), None if resume == "latest" else resume, console)
    with flag("--resume"):
        config_lib.check_same_config(cfg, Path(cfg.output_dir) / "config.yaml")
    return checkpoint


def _checkpoint_name(cfg) -> str | None:
    """The checkpoint a run starts from (the teacher for a student built from its layers; None: from
    scratch), checked before any data is read."""
    from lmctl import models

    if cfg.model.from_teacher:
        return models.resolve(cfg.distill.teacher, key=distill.KEY)
    if cfg.model.from_scratch is None:
        return models.resolve(cfg.model.name_or_path)
    if cfg.model.tokenizer:
        models.resolve(cfg.model.tokenizer, key="model.tokenizer")
    return None


def _start_run_dir(cfg, out: Path, overwrite: bool, fingerprints: dict, tokenizer, resume_from: Path | None) -> None:
    """A new run writes its config, data fingerprints (and trained vocabulary); a resumed one drops
    the log lines its checkpoint does not cover."""
    if resume_from is not None:
        from lmctl.engine.checkpoint import load_trainer_state

        truncate_log(out / "train_log.jsonl", load_trainer_state(resume_from)["completed_steps"])
        return
    prepare_output_dir(out, overwrite)
    (out / "config.yaml").write_text(config_lib.dump(cfg), encoding="utf-8")
    write_json(out / "data.json", fingerprints)
    if cfg.model.from_scratch and not cfg.model.tokenizer:
        tokenizer.save_pretrained(out)  # the trained vocabulary: a resumed run reads it back


def check_gates(gates, names) -> None:
    unknown = [g for g in gates if g not in names]
    if unknown:
        raise UserError(f"--fail-under: unknown metric '{unknown[0]}'; this task reports: {', '.join(sorted(names))}")


def _predictor(cfg, model_dir: str, console: Console, batch_size: int | None, max_tokens: int | None,
               mode: str | None = None):
    """The Predictor of `model_dir`, after the checks that need no model."""
    from lmctl.predictor import Predictor, is_light

    if max_tokens and not is_light(get_task_class(cfg.task), model_dir):  # the torch-free loop is one process
        from accelerate import PartialState

        if PartialState().num_processes > 1:
            raise UserError("--max-tokens: batches under a token budget differ in size, and Accelerate splits each "
                            "batch between processes; run on one process (without `accelerate launch`)")
    return Predictor(model_dir, mode, cfg=cfg, batch_size=batch_size, max_tokens=max_tokens, console=console,
                     key="--model")


def _check_model_then_columns(cfg, task, model_dir: str, tables, with_labels: bool) -> None:
    """The model path first (a missing run directory also means a missing config.yaml, and the
    default columns that replace it would blame the data instead), then every table's columns."""
    from lmctl import data, models

    models.resolve(model_dir, key="--model")
    for ds, source in tables:
        data.check_columns(ds, task.columns(with_labels=with_labels), source)


def evaluate(cfg, model_dir: str, data_files: list[str] | None, batch_size: int | None, console: Console,
             gates=(), max_tokens: int | None = None) -> list[dict]:
    """Score a trained model on each labelled file (default: the config's validation files); one
    result per file: metrics, plus a confusion matrix where the task has one."""
    from lmctl import data

    files = list(data_files or []) or list(cfg.data.eval_files().values()) or \
        ([cfg.data.test_file] if cfg.data.test_file else [])
    if not files:
        raise UserError("evaluate: no data; pass --data FILE (or a config with data.validation_file)")
    task = make_task(cfg, console)
    # Every file is read before the model loads: a bad one costs a second, not a model load.
    tables = [(data.read_table(f, "--data", task.text_columns(with_labels=True)), f) for f in files]
    _check_model_then_columns(cfg, task, model_dir, tables, with_labels=True)
    predictor = _predictor(cfg, model_dir, console, batch_size, max_tokens)
    # A misspelt --fail-under metric fails before inference (the metric names are known once the model loaded).
    check_gates(gates, predictor.eval_task.metric_names)
    results = []
    for ds, data_file in tables:
        with console.progress(len(ds), "evaluate", unit="rows") as bar:
            result = predictor.evaluate_table(ds, data_file, bar)
        check_gates(gates, result["metrics"])
        results.append({"model": str(model_dir), "data": str(data_file), **result})
    return results


def predict(cfg, model_dir: str, input_file: str, batch_size: int | None, console: Console,
            mode: str | None = None, explain_steps: int | None = None, chunk_rows: int = CHUNK_ROWS,
            max_tokens: int | None = None) -> Iterator[dict]:
    """Predict for every row of `input_file` ('-' for stdin); yields records in input order, chunk
    by chunk (`chunk_rows` rows read, encoded and run at a time), so memory stays flat whatever the
    size of the input. A task that orders rows across the input (`streams` False) reads it whole.
    `explain_steps`: add word attributions (Integrated Gradients with that many steps).
    `max_tokens`: a budget of padded tokens per batch besides the batch size."""
    import itertools

    from lmctl import data
    task = make_task(cfg, console)
    if mode and mode not in task.predict_modes:
        raise UserError(f"--mode {mode}: task '{cfg.task}' predicts with: {', '.join(task.predict_modes)}")
    if explain_steps and not task.explains:
        raise UserError(f"--explain: task '{cfg.task}' has no explanation; explanations are for "
                        "text-classification models (single texts or pairs)")
    from lmctl.predictor import is_light

    columns = task.text_columns()
    source = "stdin" if input_file == "-" else input_file
    plain = is_light(task, model_dir)  # an ONNX export that predicts without torch reads without pandas too
    chunks = data.read_chunks(input_file, "--input", columns, chunk_rows if task.streams else None, plain)
    try:
        first = next(chunks)  # read and checked before the model loads: a bad file costs a second
    except data.NoRows as exc:
        from lmctl import models

        models.resolve(model_dir, key="--model")  # a wrong model path is still an error
        console.warn(f"{exc}; no predictions written")
        return
    _check_model_then_columns(cfg, task, model_dir, [(first, source)], with_labels=False)
    predictor = _predictor(cfg, model_dir, console, batch_size, max_tokens, mode)
    if explain_steps and predictor.backend == "onnx":
        raise UserError(f"--explain: {model_dir} is an ONNX export, which has no gradients; explain with the run "
                        "directory it was exported from")
    done = 0
    with console.summed_counts(), console.progress(data.count_rows(input_file, "--input"), "predict", unit="rows") as bar:
        for ds in itertools.chain([first], chunks):
            data.check_columns(ds, task.columns(with_labels=False), source)  # a folder's later files
            with data.rows_from(done):
                yield from predictor.predict_table(ds, source, bar, done, explain_steps)
            done += len(ds)


def _load_for_writing(cfg, model_dir: str, merge: bool, console: Console, command: str):
    """(task, tokenizer, PyTorch model) of `model_dir` for a command that writes a new model
    directory from it (export, prune); a LoRA adapter is merged when `merge`."""
    from lmctl import models, onnx_model

    task = make_task(cfg, console)
    path = models.resolve(model_dir, key="--model")
    if onnx_model.is_onnx_dir(path):
        raise UserError(f"--model: {model_dir} is an ONNX export already; {command} from the run directory")
    quiet_libraries()
    tokenizer = models.load_tokenizer(path, cfg.model.trust_remote_code, key="--model")
    model = task.load_model(path, tokenizer, "--model")
    task = task.bind(tokenizer)
    if adapters.is_adapted(model):
        if not merge:
            raise UserError(f"--model: {model_dir} holds a LoRA adapter; pass --merge to fold it into the base "
                            "model's weights")
        model = adapters.merge(model)
    return task, tokenizer, model


def _write_model_dir(cfg, output: str, overwrite: bool, tokenizer, write) -> Path:
    """A model directory that serves on its own: `write(staging)` puts the model there, then the
    tokenizer and a config.yaml pointing at OUTPUT. Staged beside OUTPUT and moved in only when
    all went well: a failure (an export failing its own check) leaves OUTPUT as it was."""
    import shutil
    import tempfile

    Path(output).parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".lmctl-", dir=Path(output).parent))
    try:
        write(staging)
        tokenizer.save_pretrained(staging)
        saved = cfg.model_copy(deep=True)
        saved.model.peft, saved.model.name_or_path, saved.output_dir = None, str(output), str(output)
        saved.distill = None  # the teacher stays behind: the directory serves on its own
        (staging / "config.yaml").write_text(config_lib.dump(saved), encoding="utf-8")
        out = prepare_output_dir(output, overwrite)
        for f in staging.iterdir():
            f.replace(out / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def export(cfg, model_dir: str, output: str, merge: bool, overwrite: bool, console: Console,
           fmt: str = "transformers", quantize: str | None = None) -> Path:
    """`lmctl export`: the model of `model_dir` as a plain transformers directory (a LoRA adapter
    merged into its base with --merge) or as ONNX (int8 with quantize), with its tokenizer and a
    config.yaml for evaluate/predict. The ONNX model is checked against PyTorch before it is written.
    A mean-pooled classifier is refused in transformers format: a plain from_pretrained would not
    pool its way."""
    from lmctl import models, onnx_model

    onnx = fmt == "onnx"
    if onnx:
        with flag("--quantize"):
            onnx_model.check_scheme(quantize)
        onnx_model.check_installed()
    elif quantize:
        raise UserError(f"--quantize {quantize}: quantized models are ONNX; drop --format transformers")
    check_output_dir(output, overwrite, key="--output")
    task, tokenizer, model = _load_for_writing(cfg, model_dir, merge or onnx, console, "export")
    if onnx:
        with flag("--format onnx"):
            onnx_model.check_exportable(task, model.config, names_where("onnx_outputs"))
    elif models.rebound_pooling(model):
        # Transformers' classes pool their own way and custom code needs trust_remote_code: the
        # saved model would reload without a word and score differently. ONNX traces the pooling.
        raise UserError(f"--format transformers: {model_dir} pools its tokens' states by "
                        f"{models.rebound_pooling(model)} (model.pooling), which a plain from_pretrained cannot "
                        "rebuild (it would pool the last token); export with --format onnx, whose graph carries "
                        "the pooling, or give lmctl the run directory itself")

    def write(staging: Path) -> None:
        if not onnx:
            model.save_pretrained(staging, safe_serialization=True)
            return
        with flag(f"--quantize {quantize}" if quantize else "--format onnx"):
            manifest = onnx_model.export(model, task, _sample_batches(cfg, task, tokenizer), staging, quantize,
                                         console)
        model.config.save_pretrained(staging)  # the labels, for evaluate/predict
        check = manifest["check"]
        agreement = "" if check["label_agreement"] is None else f", labels agree {100 * check['label_agreement']:.1f}%"
        console.log(f"onnx{' ' + quantize if quantize else ''}: exported in {manifest['export_seconds']}s; "
                    f"checked on {check['rows']} rows against PyTorch: max difference "
                    f"{check['max_abs_diff']:.2g}{agreement}")

    out = _write_model_dir(cfg, output, overwrite, tokenizer, write)
    console.log(f"exported {type(model).__name__} to {out}{' as ONNX' if onnx else ''}"
                f"{' (' + quantize + ')' if quantize else ''}")
    return out


def prune(cfg, model_dir: str, output: str, keep_layers: int | None, ffn: float | None, data_file: str | None,
          rows: int, merge: bool, overwrite: bool, console: Console) -> dict:
    """`lmctl prune`: fewer layers and/or narrower feed-forward blocks, chosen on labelled rows
    (--data, else the run's training file); OUTPUT is a plain checkpoint plus prune.json."""
    from lmctl import data
    from lmctl import prune as pruning

    if keep_layers is None and ffn is None:
        raise UserError("prune: nothing to do; give --layers N (layers to keep) and/or --ffn SHARE (feed-forward "
                        "width to keep, e.g. 0.5)")
    if ffn is not None:
        with flag("--ffn"):
            pruning.check_share(ffn)
    source = data_file or cfg.data.train_file or next(iter(cfg.data.eval_files().values()), None)
    if not source:
        raise UserError("prune: no labelled data to score importance on; pass --data FILE")
    check_output_dir(output, overwrite, key="--output")
    task = make_task(cfg, console)
    key = "--data" if data_file else "data.train_file" if cfg.data.train_file else "data.validation_file"
    ds = data.read_table(source, key, task.text_columns(with_labels=True))
    data.check_columns(ds, task.columns(with_labels=True), source)
    task, tokenizer, model = _load_for_writing(cfg, model_dir, merge, console, "prune")
    pruning.check(model, "--model")
    if keep_layers is not None:
        with flag("--layers"):
            pruning.check_layers(model, keep_layers)
    if ffn is not None:
        with flag("--ffn"):
            pruning.check_layout(model)
    ds = ds.shuffle(seed=cfg.training.seed).select(range(min(rows, len(ds))))
    from lmctl.models import count_parameters

    before = count_parameters(model)
    pruned, report = pruning.prune(model, importance_batches(task, ds, cfg.training.eval_batch), keep_layers, ffn,
                                   console)
    report.update(rows=len(ds), data=str(source), parameters=[before, count_parameters(pruned)])

    def write(staging: Path) -> None:
        pruned.save_pretrained(staging, safe_serialization=True)
        write_json(staging / "prune.json", report)

    out = _write_model_dir(cfg, output, overwrite, tokenizer, write)
    console.log(f"pruned {before / 1e6:.2f}M → {report['parameters'][1] / 1e6:.2f}M parameters; loss on {len(ds)} "
                f"rows {report['loss_before']:.4f} → {report['loss_after']:.4f}; finetune or distil it to recover "
                f"({out})")
    return report


def importance_batches(task, rows, batch_size: int) -> list[dict]:
    """Labelled rows as collated batches (`task` bound): the loss prune's importance scores differentiate."""
    from lmctl.engine.batching import collated_batches

    return collated_batches(task.encode(rows, "eval", "importance data"), task.eval_collate, batch_size)


# Rows an export is checked on when the run's validation data is not at hand.
SAMPLE_TEXTS = ["A short sentence.", "The film was a delight from start to finish, and the cast shines.",
                "Nothing here worked for me", "Is this the right way to the station?",
                "Prices rose by 3% in the second quarter.", "ok", "I would not watch it again, not even for free.",
                "The committee will meet on Tuesday to discuss the new budget and the plans for next year."]


def _sample_batches(cfg, task, tokenizer, rows: int = 64, batch_size: int = 16) -> list[dict]:
    """Model-input batches of up to `rows` rows of the run's validation data (else SAMPLE_TEXTS),
    collated as evaluate/predict collate them: what an export is checked on."""
    from datasets import Dataset

    from lmctl import data
    from lmctl.engine.batching import collated_batches

    columns = [c for c in task.columns(with_labels=False).values() if c]
    files = list(cfg.data.eval_files().values())
    ds, source = None, "sample texts"
    if files and Path(files[0]).is_file():
        table = data.read_table(files[0], "data.validation_file", task.text_columns())
        if all(c in table.column_names for c in columns):
            ds, source = table.select(range(min(rows, len(table)))), files[0]
    if ds is None:
        ds = Dataset.from_dict({c: SAMPLE_TEXTS for c in columns})
    return collated_batches(task.encode(ds, "predict", source), task.eval_collate, batch_size)
