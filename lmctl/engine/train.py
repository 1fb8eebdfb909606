"""The one Accelerate training loop: every task, pretraining and finetuning alike.

Shape follows accelerate's `gradient_accumulation.py` example: `accelerator.accumulate`,
steps counted on `sync_gradients`, totals recomputed after `prepare()`. What differs
between tasks reaches this file only through the `Task` interface.
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
from lmctl.engine import trackers
from lmctl.engine.batching import reseed, train_dataloader
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
          resume_from: Path | None = None, loss_fn=None) -> dict:
    """Train `model` on `train_enc`, evaluating on each of `eval_sets` (set name, or None for the one
    unnamed set → encoded data); returns final metrics. The kept model is in `output_dir`.
    `loss_fn(model, batch)`: the training loss when it is not the model's own (distillation)."""
    trackers.start(accelerator, cfg, output_dir)
    try:
        return _train(cfg, task, model, tokenizer, train_enc, eval_sets, output_dir, console, accelerator, resume_from,
                      loss_fn or (lambda model, batch: model(**batch).loss))
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


def _train(cfg, task, model, tokenizer, train_enc, eval_sets: dict, output_dir: Path, console, accelerator,
           resume_from: Path | None, loss_fn) -> dict:
    from lmctl.engine.checkpoint import load_trainer_state, save_checkpoint

    t = cfg.training
    run_log = RunLog(output_dir / "train_log.jsonl", enabled=accelerator.is_main_process)

    def log(record: dict) -> None:
        run_log.write(record)
        trackers.log(accelerator, record)

    train_loader, sampler = train_dataloader(train_enc, task.collate, t.batch_size, t.group_by_length, t.seed,
                                             t.dataloader_num_workers)
    optimizer = _optimizer(model, t, accelerator.device.type)

    from transformers import get_scheduler

    steps_per_epoch = _steps_per_epoch(train_loader, t)
    max_steps = t.max_steps or math.ceil(t.num_epochs * steps_per_epoch)
    warmup = t.warmup_steps or math.ceil(t.warmup_ratio * max_steps)
    lr_scheduler = get_scheduler(t.lr_scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=max_steps)
    model, optimizer, train_loader, lr_scheduler = accelerator.prepare(model, optimizer, train_loader, lr_scheduler)
    # Lengths can change after prepare() (sharding): recompute the totals from the prepared loader.
    steps_per_epoch = _steps_per_epoch(train_loader, t)
    # A stream has no length: read it again until max_steps (config validation requires it).
    streamed = _num_batches(train_loader) is None
    num_epochs = 10**9 if streamed else math.ceil(max_steps / steps_per_epoch)

    st = TrainState()
    if resume_from is not None:
        accelerator.load_state(str(resume_from))  # model, optimizer, scheduler, every RNG
        st = TrainState(**load_trainer_state(resume_from))
        console.log(f"resumed from {resume_from} (step {st.completed_steps}, epoch {st.epoch}, "
                    f"batch {st.batches_in_epoch})")
    best_metric, greater = _best_metric(t, task, eval_sets)

    def evaluate(epoch: float) -> bool:
        """Evaluate, keep the model if it is the best so far; True means stop early."""
        step = st.completed_steps
        metrics = {}
        for eval_set, encoded in eval_sets.items():
            outputs = run_inference(accelerator, model, task, encoded, t.eval_batch)
            metrics.update({metric_key(eval_set, k): float(v) for k, v in task.compute_metrics(outputs, encoded).items()})
        improved = st.update_best(best_metric, greater, metrics, step)
        st.last_eval_step, st.last_metrics = step, metrics
        log({"step": step, "epoch": round(epoch, 4), **{f"eval_{k}": v for k, v in metrics.items()}})
        shown = "  ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
        console.log(f"eval step {step}: {shown}{'  (best)' if improved else ''}")
        if improved and t.save_best:
            save_model(accelerator, model, tokenizer, output_dir)
        return t.early_stopping_patience is not None and st.bad_evals >= t.early_stopping_patience

    def checkpoint() -> Path:
        return save_checkpoint(accelerator, output_dir, st.completed_steps, dataclasses.asdict(st), t.save_total_limit)

    examples = "streamed" if streamed else len(train_enc)
    console.log(f"training: {examples} examples, {max_steps} steps ({'streamed' if streamed else num_epochs} epoch(s)), "
                f"batch {t.batch_size} x {t.gradient_accumulation_steps} accumulation, "
                f"{accelerator.num_processes} process(es) on {accelerator.device.type}")
    stop = False
    model.train()
    with console.progress(max_steps, "train") as bar, _StopSignals() as signals:
        bar.update(st.completed_steps)
        for epoch in range(st.epoch, num_epochs):
            if stop or st.completed_steps >= max_steps:
                break
            if epoch != st.epoch:
                st.epoch, st.batches_in_epoch = epoch, 0
            reseed(sampler, t.seed, epoch)
            loader = train_loader
            if st.batches_in_epoch:  # resuming mid-epoch: the same order, minus what was already seen
                loader = accelerator.skip_first_batches(train_loader, st.batches_in_epoch)
            step_start = time.perf_counter()
            batches_seen = 0
            for batch in loader:
                batches_seen += 1
                with accelerator.accumulate(model):
                    loss = loss_fn(model, batch)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and t.max_grad_norm:
                        accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                    optimizer.step()
                    lr_scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                st.batches_in_epoch += 1
                first = batch["input_ids"] if "input_ids" in batch else next(iter(batch.values()))
                mask = batch.get("attention_mask")
                n_tokens = mask.sum() if mask is not None else first.numel()
                # One small all-reduce a micro-batch keeps every counter global and every rank in step,
                # including the decision to stop on a signal.
                stats = torch.stack([loss.detach().float(), torch.tensor(float(first.shape[0]), device=loss.device),
                                     n_tokens.float() if torch.is_tensor(n_tokens) else torch.tensor(float(n_tokens), device=loss.device),
                                     torch.tensor(float(signals.signum), device=loss.device)])
                loss_sum, n_samples, n_tok, sig = accelerator.reduce(stats, reduction="sum").tolist()
                st.samples += int(n_samples)
                st.tokens += int(n_tok)
                st.interval_loss += loss_sum / accelerator.num_processes
                st.interval_batches += 1
                st.interval_samples += int(n_samples)
                if not math.isfinite(loss_sum):
                    raise UserError(
                        f"training diverged: loss is {loss_sum} at step {st.completed_steps + 1}; lower "
                        "training.learning_rate or set training.max_grad_norm (the last saved model and "
                        "checkpoints are kept)"
                    )
                if not accelerator.sync_gradients:
                    continue
                st.completed_steps += 1
                elapsed = time.perf_counter() - step_start
                st.train_seconds += elapsed
                st.interval_seconds += elapsed
                step = st.completed_steps
                if step % t.logging_steps == 0 or step == max_steps:
                    st.last_loss = st.interval_loss / st.interval_batches
                    rate = st.interval_samples / max(st.interval_seconds, 1e-9)
                    lr = max(lr_scheduler.get_last_lr())  # the top rate, under layer_lr_decay
                    log({"step": step, "epoch": round(step / steps_per_epoch, 4), "loss": st.last_loss,
                         "lr": lr, "samples_per_second": round(rate, 2)})
                    bar.update(step, {"loss": st.last_loss, "lr": lr, "samples/s": round(rate, 1)})
                    st.interval_loss, st.interval_batches, st.interval_samples, st.interval_seconds = 0.0, 0, 0, 0.0
                else:
                    bar.update(step)
                if t.eval_strategy == "steps" and step % t.eval_steps == 0:
                    stop = evaluate(step / steps_per_epoch)
                if sig:
                    path = checkpoint()
                    raise Interrupted(step, path, signals.signum or int(signal.SIGTERM))
                if t.save_steps and step % t.save_steps == 0 and step < max_steps:
                    checkpoint()
                if stop or step >= max_steps:
                    break
                step_start = time.perf_counter()
            if stop or st.completed_steps >= max_steps or batches_seen == 0:
                break
            if t.eval_strategy == "epoch":
                stop = evaluate(epoch + 1)
    if stop:
        console.log(f"early stopping: no improvement in {t.early_stopping_patience} evaluations")
    # The last step may fall between evaluations: judge the final model too.
    if t.eval_strategy != "no" and not stop and st.last_eval_step != st.completed_steps:
        evaluate(st.completed_steps / steps_per_epoch)
    if not (t.save_best and st.best_step is not None):
        save_model(accelerator, model, tokenizer, output_dir)

    kept = st.best_metrics if t.save_best and st.best_metrics else st.last_metrics
    result = {f"eval_{k}": v for k, v in kept.items()}
    result.update(
        best_step=st.best_step,
        best_metric=best_metric if st.best_step is not None else None,
        completed_steps=st.completed_steps,
        train_loss=st.last_loss,
        train_seconds=round(st.train_seconds, 3),
        train_samples=st.samples,
        train_samples_per_second=round(st.samples / max(st.train_seconds, 1e-9), 2),
        train_tokens_per_second=round(st.tokens / max(st.train_seconds, 1e-9), 2),
        parameters=sum(p.numel() for p in model.parameters()),
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
    )
    if accelerator.is_main_process:
        write_json(output_dir / "metrics.json", result)
    return result


def _num_batches(loader) -> int | None:
    try:
        return len(loader)
    except TypeError:  # an IterableDataset (streamed corpus)
        return None


def _steps_per_epoch(loader, t) -> int:
    batches = _num_batches(loader)
    return t.max_steps if batches is None else max(1, math.ceil(batches / t.gradient_accumulation_steps))
