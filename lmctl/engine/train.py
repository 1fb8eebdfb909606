"""The one Accelerate training loop: every task, pretraining and finetuning alike.

Shape follows accelerate's `gradient_accumulation.py` example: `accelerator.accumulate`,
steps counted on `sync_gradients`, totals recomputed after `prepare()`; its steps are named as
in torchtune's recipes (`Recipe`: setup, train, finish). What differs between tasks reaches
this file only through the `Task` interface.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import signal
import time
from pathlib import Path

import torch

from lmctl import families
from lmctl.engine import batching, trackers
from lmctl.engine.infer import run_inference
from lmctl.config import metric_key
from lmctl.errors import UserError
from lmctl.models import save_pretrained
from lmctl.rundir import RunLog, write_json


def make_accelerator(training, output_dir: Path | None = None):
    """`output_dir`: a training run's directory, where its trackers (training.report_to) write."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    # split_batches: `batch_size` is the global batch, whatever the process count.
    return Accelerator(
        mixed_precision=training.mixed_precision,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        log_with=(trackers.make(training.report_to, output_dir) or None) if output_dir is not None else None,
    )


def check_batch_size(accelerator, training) -> None:
    for key in ("batch_size", "eval_batch_size"):
        value = getattr(training, key)
        if value and value % accelerator.num_processes:
            raise UserError(
                f"training.{key}={value} does not divide over {accelerator.num_processes} processes; "
                f"use a multiple of {accelerator.num_processes}"
            )


def _optimizer(model, training, device_type: str):
    named = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
    # Depth 0 is the embeddings, i + 1 transformer layer i (T5's encoder and decoder layer i alike),
    # the top the final norms and the task head: the family table knows where each lives.
    family = families.for_model_type(getattr(model.config, "model_type", None))
    depths, top = family.layer_depths([name for name, _ in named])
    groups: dict[tuple[float, bool], dict] = {}  # one group per (rate, decayed): two when the decay is 1
    for name, param in named:
        # No weight decay on biases and LayerNorm weights, as in BERT and run_glue.
        decays = not (param.ndim < 2 or "norm" in name.lower())
        # Layer-wise decay (ULMFiT's discriminative rates): each layer below the top learns
        # `layer_lr_decay` times slower than the one above, so pretrained lower layers move least.
        lr = training.learning_rate * training.layer_lr_decay ** (top - depths[name])
        group = groups.setdefault((lr, decays), {"params": [], "lr": lr,
                                                 "weight_decay": training.weight_decay if decays else 0.0})
        group["params"].append(param)
    # Fused AdamW measured ~15% faster on this CPU; TPUs and other devices lack the kernel.
    fused = device_type in ("cpu", "cuda")
    return torch.optim.AdamW(list(groups.values()), lr=training.learning_rate,
                             betas=(training.adam_beta1, training.adam_beta2),
                             eps=training.adam_epsilon, fused=fused)


def save_model(accelerator, model, tokenizer, output_dir: Path) -> None:
    """Write the model and tokenizer in Hugging Face format; files land by rename."""
    state_dict = accelerator.get_state_dict(model)  # collective under FSDP/ZeRO-3: every rank calls it
    if accelerator.is_main_process:
        tmp = output_dir / ".model-tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save_pretrained(accelerator.unwrap_model(model), tmp, state_dict)
        tokenizer.save_pretrained(tmp)
        for f in tmp.iterdir():
            f.replace(output_dir / f.name)
        tmp.rmdir()
    accelerator.wait_for_everyone()


def _best_metric(t, task, eval_sets) -> tuple[str, bool]:
    """The metric that picks the kept model (default: the task's main metric on the first
    evaluation set), and whether higher is better."""
    first = next(iter(eval_sets))
    name = t.metric_for_best or metric_key(first, task.main_metric)
    if t.greater_is_better is not None:
        return name, t.greater_is_better
    # Each metric's own direction, as the task declares it: `metric_for_best: loss` on a
    # classification task keeps the lowest loss, not the highest (as transformers' Trainer).
    return name, task.greater_is_better(name)


class Interrupted(Exception):
    """SIGINT/SIGTERM during training: a checkpoint was saved at `step` in `path`."""

    def __init__(self, step: int, path: Path, signum: int):
        super().__init__(f"stopped by signal {signum} at step {step}; checkpoint saved in {path}")
        self.step, self.path, self.signum = step, path, signum


@dataclasses.dataclass
class TrainState:
    """Everything the loop counts; saved in each checkpoint so a resumed run continues exactly.

    Counters are global (summed over processes every step), so rank 0's copy is everyone's.
    """

    completed_steps: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0  # micro-batches of `epoch` already consumed
    train_seconds: float = 0.0
    samples: int = 0
    tokens: int = 0
    interval_loss: float = 0.0  # sum over micro-batches and processes of the mean batch loss
    interval_batches: int = 0
    interval_samples: int = 0
    interval_seconds: float = 0.0
    last_loss: float = float("nan")
    last_eval_step: int | None = None
    last_metrics: dict = dataclasses.field(default_factory=dict)
    best_value: float | None = None
    best_step: int | None = None
    best_metrics: dict | None = None
    bad_evals: int = 0

    def update_best(self, metric: str, greater: bool, metrics: dict, step: int) -> bool:
        if metric not in metrics:
            raise UserError(f"training.metric_for_best: '{metric}' is not reported by this task; "
                            f"choose one of {', '.join(sorted(metrics))}")
        value = metrics[metric]
        better = self.best_value is None or (value > self.best_value if greater else value < self.best_value)
        if better:
            self.best_value, self.best_step, self.best_metrics, self.bad_evals = value, step, metrics, 0
        else:
            self.bad_evals += 1
        return better


class _StopSignals:
    """Turns SIGINT/SIGTERM into a flag the loop checks at the next optimizer step."""

    def __init__(self):
        self.signum = 0
        self._previous = {}

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train(cfg, task, model, tokenizer, train_enc, eval_sets: dict, output_dir: Path, console, accelerator,
          resume_from: Path | None = None, loss_fn=None, on_evaluate=None) -> dict:
    """Train `model` on `train_enc`, evaluating on each of `eval_sets` (set name, or None for the one
    unnamed set → encoded data); returns final metrics. The kept model is in `output_dir`.
    `loss_fn(model, batch)`: the training loss when it is not the model's own (distillation).
    `on_evaluate(step, metrics) -> bool`: called after each evaluation (every process), True stops
    training there as early stopping does (a sweep's pruned trial)."""
    trackers.start(accelerator, cfg, output_dir)
    try:
        recipe = Recipe(cfg, task, model, tokenizer, output_dir, console, accelerator,
                        loss_fn or (lambda model, batch: model(**batch).loss), on_evaluate)
        recipe.setup(train_enc, eval_sets, resume_from)
        stopped_early = recipe.train()
        return recipe.finish(stopped_early)
    except torch.OutOfMemoryError:
        t = cfg.training
        per_device = t.batch_size // accelerator.num_processes
        raise UserError(
            f"out of {accelerator.device.type} memory with {per_device} examples per device "
            f"(training.batch_size={t.batch_size}, max_length={t.max_length}); halve training.batch_size and "
            f"double training.gradient_accumulation_steps (same global batch), or lower training.max_length"
        ) from None
    finally:
        trackers.finish(accelerator)


class Recipe:
    """One training run in named steps, in the shape of torchtune's recipes: `setup` (data,
    optimizer, scheduler, `accelerator.prepare`, resume), `train` (epochs of `train_step`s, with
    evaluation, checkpoints and logging on each optimizer step), `finish` (final evaluation, the
    kept model, metrics.json). Everything it counts lives in `st`, the state a checkpoint saves."""

    def __init__(self, cfg, task, model, tokenizer, output_dir: Path, console, accelerator, loss_fn,
                 on_evaluate=None):
        self.cfg, self.t = cfg, cfg.training
        self.task, self.model, self.tokenizer = task, model, tokenizer
        self.output_dir, self.console, self.accelerator, self.loss_fn = output_dir, console, accelerator, loss_fn
        self.run_log = RunLog(output_dir / "train_log.jsonl", enabled=accelerator.is_main_process)
        self.st = TrainState()
        self.stop = False  # early stopping: set by an evaluation, read at the next step or epoch
        self.on_evaluate, self.stopped_by_caller = on_evaluate, False

    # -- setup ---------------------------------------------------------------------------------

    def setup(self, train_enc, eval_sets: dict, resume_from: Path | None) -> None:
        self._setup_data(train_enc, eval_sets)
        self.optimizer = _optimizer(self.model, self.t, self.accelerator.device.type)
        self._setup_lr_scheduler()
        self._prepare()
        if resume_from is not None:
            self._resume(resume_from)
        self.best_metric, self.greater = _best_metric(self.t, self.task, eval_sets)

    def _setup_data(self, train_enc, eval_sets: dict) -> None:
        t = self.t
        self.train_dataloader, self.sampler = batching.train_dataloader(
            train_enc, self.task.collate, t.batch_size, t.group_by_length, t.seed, t.dataloader_num_workers)
        self.eval_sets = eval_sets
        self.num_examples = len(train_enc) if _num_batches(self.train_dataloader) is not None else None

    def _setup_lr_scheduler(self) -> None:
        from transformers import get_scheduler

        t = self.t
        self.max_steps = t.max_steps or math.ceil(t.num_epochs * _steps_per_epoch(self.train_dataloader, t))
        warmup = t.warmup_steps or math.ceil(t.warmup_ratio * self.max_steps)
        self.lr_scheduler = get_scheduler(t.lr_scheduler, self.optimizer, num_warmup_steps=warmup,
                                          num_training_steps=self.max_steps)

    def _prepare(self) -> None:
        self.model, self.optimizer, self.train_dataloader, self.lr_scheduler = self.accelerator.prepare(
            self.model, self.optimizer, self.train_dataloader, self.lr_scheduler)
        # Lengths can change after prepare() (sharding): recompute the totals from the prepared loader.
        self.steps_per_epoch = _steps_per_epoch(self.train_dataloader, self.t)
        # A stream has no length: read it again until max_steps (config validation requires it).
        self.streamed = _num_batches(self.train_dataloader) is None
        self.num_epochs = 10**9 if self.streamed else math.ceil(self.max_steps / self.steps_per_epoch)

    def _resume(self, resume_from: Path) -> None:
        from lmctl.engine.checkpoint import load_trainer_state

        self.accelerator.load_state(str(resume_from))  # model, optimizer, scheduler, every RNG
        self.st = st = TrainState(**load_trainer_state(resume_from))
        self.console.log(f"resumed from {resume_from} (step {st.completed_steps}, epoch {st.epoch}, "
                         f"batch {st.batches_in_epoch})")

    # -- the loop ------------------------------------------------------------------------------

    def train(self) -> bool:
        """Epochs until max_steps, an early stop or a signal (Interrupted); True: stopped early."""
        t, st = self.t, self.st
        examples = "streamed" if self.streamed else self.num_examples
        self.console.log(f"training: {examples} examples, {self.max_steps} steps "
                         f"({'streamed' if self.streamed else self.num_epochs} epoch(s)), "
                         f"batch {t.batch_size} x {t.gradient_accumulation_steps} accumulation, "
                         f"{self.accelerator.num_processes} process(es) on {self.accelerator.device.type}")
        self.model.train()
        with self.console.progress(self.max_steps, "train") as bar, _StopSignals() as signals:
            bar.update(st.completed_steps)
            for epoch in range(st.epoch, self.num_epochs):
                if self.stop or st.completed_steps >= self.max_steps:
                    break
                if not self._train_epoch(epoch, bar, signals):
                    break
                if t.eval_strategy == "epoch":
                    self.stop = self.evaluate(epoch + 1)
        return self.stop

    def _train_epoch(self, epoch: int, bar, signals) -> bool:
        """One pass over the training data (the rest of it when resuming mid-epoch); False: training
        ends here (early stop, max_steps, or an empty stream)."""
        st = self.st
        if epoch != st.epoch:
            st.epoch, st.batches_in_epoch = epoch, 0
        batching.reseed(self.sampler, self.t.seed, epoch)
        loader = self.train_dataloader
        if st.batches_in_epoch:  # resuming mid-epoch: the same order, minus what was already seen
            loader = self.accelerator.skip_first_batches(self.train_dataloader, st.batches_in_epoch)
        step_start = time.perf_counter()
        batches_seen = 0
        for batch in loader:
            batches_seen += 1
            loss = self.train_step(batch)
            st.batches_in_epoch += 1
            sig = self._count(batch, loss, signals)
            if not self.accelerator.sync_gradients:
                continue
            if self._end_of_step(time.perf_counter() - step_start, bar, sig, signals):
                break
            step_start = time.perf_counter()
        return not (self.stop or st.completed_steps >= self.max_steps or batches_seen == 0)

    def train_step(self, batch):
        """Forward and backward on one micro-batch; the optimizer steps when accumulation syncs."""
        accelerator = self.accelerator
        with accelerator.accumulate(self.model):
            loss = self.loss_fn(self.model, batch)
            accelerator.backward(loss)
            if accelerator.sync_gradients and self.t.max_grad_norm:
                accelerator.clip_grad_norm_(self.model.parameters(), self.t.max_grad_norm)
            self.optimizer.step()
            self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return loss

    def _count(self, batch, loss, signals) -> float:
        """Add a micro-batch to the global counters; returns the signal sum over processes (0: none)."""
        st = self.st
        first = batch["input_ids"] if "input_ids" in batch else next(iter(batch.values()))
        mask = batch.get("attention_mask")
        n_tokens = mask.sum() if mask is not None else first.numel()
        # One small all-reduce a micro-batch keeps every counter global and every rank in step,
        # including the decision to stop on a signal.
        stats = torch.stack([loss.detach().float(), torch.tensor(float(first.shape[0]), device=loss.device),
                             n_tokens.float() if torch.is_tensor(n_tokens) else torch.tensor(float(n_tokens), device=loss.device),
                             torch.tensor(float(signals.signum), device=loss.device)])
        loss_sum, n_samples, n_tok, sig = self.accelerator.reduce(stats, reduction="sum").tolist()
        st.samples += int(n_samples)
        st.tokens += int(n_tok)
        st.interval_loss += loss_sum / self.accelerator.num_processes
        st.interval_batches += 1
        st.interval_samples += int(n_samples)
        if not math.isfinite(loss_sum):
            raise UserError(
                f"training diverged: loss is {loss_sum} at step {st.completed_steps + 1}; lower "
                "training.learning_rate or set training.max_grad_norm (the last saved model and "
                "checkpoints are kept)"
            )
        return sig

    def _end_of_step(self, elapsed: float, bar, sig: float, signals) -> bool:
        """After an optimizer step: count it, log, evaluate, checkpoint (and stop on a signal);
        True: leave the epoch (early stop or max_steps)."""
        t, st = self.t, self.st
        st.completed_steps += 1
        st.train_seconds += elapsed
        st.interval_seconds += elapsed
        step = st.completed_steps
        if step % t.logging_steps == 0 or step == self.max_steps:
            self._log_interval(step, bar)
        else:
            bar.update(step)
        if t.eval_strategy == "steps" and step % t.eval_steps == 0:
            self.stop = self.evaluate(step / self.steps_per_epoch)
        if sig:
            path = self.save_checkpoint()
            raise Interrupted(step, path, signals.signum or int(signal.SIGTERM))
        if t.save_steps and step % t.save_steps == 0 and step < self.max_steps:
            self.save_checkpoint()
        return self.stop or step >= self.max_steps

    def _log_interval(self, step: int, bar) -> None:
        """The mean loss, top learning rate and throughput since the last logged step."""
        st = self.st
        st.last_loss = st.interval_loss / st.interval_batches
        rate = st.interval_samples / max(st.interval_seconds, 1e-9)
        lr = max(self.lr_scheduler.get_last_lr())  # the top rate, under layer_lr_decay
        self.log({"step": step, "epoch": round(step / self.steps_per_epoch, 4), "loss": st.last_loss,
                  "lr": lr, "samples_per_second": round(rate, 2)})
        bar.update(step, {"loss": st.last_loss, "lr": lr, "samples/s": round(rate, 1)})
        st.interval_loss, st.interval_batches, st.interval_samples, st.interval_seconds = 0.0, 0, 0, 0.0

    def log(self, record: dict) -> None:
        self.run_log.write(record)
        trackers.log(self.accelerator, record)

    # -- evaluate and save ---------------------------------------------------------------------

    def evaluate(self, epoch: float) -> bool:
        """Evaluate, keep the model if it is the best so far; True means stop early."""
        t, st = self.t, self.st
        step = st.completed_steps
        metrics = {}
        scorer = self.task
        for i, (eval_set, encoded) in enumerate(self.eval_sets.items()):
            outputs = run_inference(self.accelerator, self.model, self.task, encoded, t.eval_batch)
            if i == 0:  # what the task chooses here (multi-label thresholds) belongs to this model: saved with it
                stored, scorer = self.task.tune(outputs, encoded)
                self.accelerator.unwrap_model(self.model).config.update(stored)
            metrics.update({metric_key(eval_set, k): float(v)
                            for k, v in scorer.compute_metrics(outputs, encoded).items()})
        improved = st.update_best(self.best_metric, self.greater, metrics, step)
        st.last_eval_step, st.last_metrics = step, metrics
        self.log({"step": step, "epoch": round(epoch, 4), **{f"eval_{k}": v for k, v in metrics.items()}})
        shown = "  ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
        self.console.log(f"eval step {step}: {shown}{'  (best)' if improved else ''}")
        if improved and t.save_best:
            save_model(self.accelerator, self.model, self.tokenizer, self.output_dir)
        if self.on_evaluate is not None and self.on_evaluate(step, dict(metrics)):
            self.stopped_by_caller = True
            return True
        return t.early_stopping_patience is not None and st.bad_evals >= t.early_stopping_patience

    def save_checkpoint(self) -> Path:
        from lmctl.engine.checkpoint import save_checkpoint

        return save_checkpoint(self.accelerator, self.output_dir, self.st.completed_steps,
                               dataclasses.asdict(self.st), self.t.save_total_limit)

    def finish(self, stopped_early: bool) -> dict:
        """Judge the final model, save it unless the best one is kept, write metrics.json."""
        t, st = self.t, self.st
        if self.stopped_by_caller:
            self.console.log(f"stopped at step {st.completed_steps}: on_evaluate asked to (a pruned sweep trial)")
        elif stopped_early:
            self.console.log(f"early stopping: no improvement in {t.early_stopping_patience} evaluations")
        # The last step may fall between evaluations: judge the final model too.
        if t.eval_strategy != "no" and not stopped_early and st.last_eval_step != st.completed_steps:
            self.evaluate(st.completed_steps / self.steps_per_epoch)
        if not (t.save_best and st.best_step is not None):
            save_model(self.accelerator, self.model, self.tokenizer, self.output_dir)
        result = self._result()
        if self.accelerator.is_main_process:
            write_json(self.output_dir / "metrics.json", result)
        return result

    def _result(self) -> dict:
        """metrics.json: the kept model's evaluation, where it was kept, and the run's throughput."""
        t, st, model = self.t, self.st, self.model
        kept = st.best_metrics if t.save_best and st.best_metrics else st.last_metrics
        result = {f"eval_{k}": v for k, v in kept.items()}
        result.update(
            best_step=st.best_step,
            best_metric=self.best_metric if st.best_step is not None else None,
            completed_steps=st.completed_steps,
            train_loss=st.last_loss,
            train_seconds=round(st.train_seconds, 3),
            train_samples=st.samples,
            train_samples_per_second=round(st.samples / max(st.train_seconds, 1e-9), 2),
            train_tokens_per_second=round(st.tokens / max(st.train_seconds, 1e-9), 2),
            parameters=sum(p.numel() for p in model.parameters()),
            trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        )
        return result


def _num_batches(loader) -> int | None:
    try:
        return len(loader)
    except TypeError:  # an IterableDataset (streamed corpus)
        return None


def _steps_per_epoch(loader, t) -> int:
    batches = _num_batches(loader)
    return t.max_steps if batches is None else max(1, math.ceil(batches / t.gradient_accumulation_steps))
