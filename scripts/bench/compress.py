"""Benchmark: a finetuned teacher against its compressed forms, and transformers' pipeline, in one run.

Takes trained run directories (the teacher, a distilled student, optionally pruned models),
exports the teacher and the student to int8 ONNX (`lmctl export --quantize int8`) and, for
every model, measures: parameters, MB of model files on disk, `lmctl predict` rows/s on
--rows sentences of the training file as a whole process (start-up, loading and writing
included), dev accuracy (`lmctl evaluate`) and label agreement with the teacher's
predictions on those sentences. The peer is `transformers.pipeline("text-classification")`
on the teacher, timed after loading, called as by default (one text at a time) and batched. Prints the table and the ratios the targets name.
Run from the repository root:

    .venv/bin/python -m scripts.bench.compress --teacher runs/minilm-sst2 \\
        --student runs/minilm-sst2-distill --pruned runs/minilm-sst2-pruned

Results and method: docs/benchmarks.md ("Distillation, pruning and int8 ONNX").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from scripts.bench import common

PIPELINE_CHILD = """
import json, sys, time
from transformers import pipeline
model, inputs, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
texts = [line.rstrip("\\n") for line in open(inputs, encoding="utf-8")][1:]
clf = pipeline("text-classification", model=model, device=-1)
clf(texts[:8], batch_size=batch)  # warm-up, as a server would have done
start = time.perf_counter()
out = clf(texts, truncation=True, max_length=128)  # as called by default: one text at a time
default = time.perf_counter() - start
start = time.perf_counter()
clf(texts, batch_size=batch, truncation=True, max_length=128)
batched = time.perf_counter() - start
print(json.dumps({"seconds": default, "batched_seconds": batched, "labels": [o["label"] for o in out]}))
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True, help="the finetuned teacher's run directory")
    p.add_argument("--student", required=True, help="a distilled student's run directory")
    p.add_argument("--pruned", action="append", default=[], help="a pruned (and refinetuned) model; repeatable")
    p.add_argument("--data", default=str(common.SHARED_DATA / "sst2"), help="folder with train.tsv and dev.tsv")
    p.add_argument("--rows", type=int, default=4000, help="sentences predict is timed on (from train.tsv)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--output", default="runs/bench-compress/results.json")
    p.add_argument("--keep", action="store_true", help="keep the work folder (exports, predictions, logs)")
    args = p.parse_args()
    common.require_positive(p, args, ("rows", "batch_size"))
    return args


def model_files(path: Path) -> list[Path]:
    return [f for f in path.iterdir() if f.suffix == ".safetensors" or f.name.startswith("model.onnx")]


def parameters(path: Path) -> int:
    """Weights of the model's files (int8 ONNX counts its int8 weights: the same parameters, 1 byte each)."""
    if (path / "onnx.json").is_file():
        import numpy as np
        import onnx
        from onnx import numpy_helper

        graph = onnx.load(str(path / "model.onnx")).graph
        # Scales and zero points of quantized weights are one value each per channel: leave them out.
        return sum(int(np.prod(t.dims)) for t in graph.initializer
                   if len(t.dims) >= 1 and not t.name.endswith(("_scale", "_zero_point")) and
                   numpy_helper.to_array(t).size > 1)
    from safetensors import safe_open

    total = 0
    for f in model_files(path):
        with safe_open(str(f), "pt") as weights:
            for name in weights.keys():
                n = 1
                for d in weights.get_slice(name).get_shape():
                    n *= d
                total += n
    return total


def labels_of(predictions: Path) -> list[str]:
    return [json.loads(line)["label"] for line in predictions.read_text(encoding="utf-8").splitlines()]


def main() -> None:
    args = parse_args()
    import torch

    data = Path(args.data).resolve()
    for name in ("train.tsv", "dev.tsv"):
        if not (data / name).is_file():
            sys.exit(f"error: --data {data}: no {name} there (expected train.tsv and dev.tsv, columns sentence, label)")
    for run in [args.teacher, args.student, *args.pruned]:
        if not (Path(run) / "config.json").is_file():
            sys.exit(f"error: {run}: not a trained model directory (no config.json); train it first (see the docstring)")
    threads = args.threads or torch.get_num_threads()
    env = common.child_env(threads)
    info = common.environment(threads)
    common.print_environment(info)
    lmctl = [sys.executable, "-m", "lmctl"]

    rows = []
    with common.work_folder("lmctl-bench-compress-", args.keep) as work:
        texts = common.read_sentences(data, args.rows)
        sentences = common.write_sentences(work / "sentences.tsv", texts)

        models = [("teacher fp32", Path(args.teacher).resolve()), ("student fp32", Path(args.student).resolve())]
        for name, source in list(models):
            target = work / name.replace(" fp32", "-int8")
            common.run_child(f"export {name}", lmctl + ["export", "--model", str(source), "--output", str(target),
                                                        "--quantize", "int8"], env, work / f"export-{target.name}.log")
            models.append((name.replace("fp32", "int8 ONNX"), target))
        models += [(f"pruned {Path(p).name}", Path(p).resolve()) for p in args.pruned]

        for name, path in models:
            slug = name.replace(" ", "-")
            wall, preds = common.run_predict(name, path, sentences, work, env, args.batch_size)
            scores = work / f"{slug}.eval.json"
            common.run_child(f"evaluate {name}", lmctl + ["evaluate", "--model", str(path), "--data",
                                                          str(data / "dev.tsv"), "--output", str(scores)],
                             env, work / f"evaluate-{slug}.log")
            rows.append({"model": name, "path": str(path), "parameters": parameters(path),
                         "megabytes": sum(f.stat().st_size for f in model_files(path)) / 1e6,
                         "rows_per_second": len(texts) / wall, "predict_seconds": wall,
                         "dev_accuracy": json.loads(scores.read_text())["metrics"]["accuracy"],
                         "labels": labels_of(preds)})

        start = time.perf_counter()
        child = subprocess.run([sys.executable, "-c", PIPELINE_CHILD, str(Path(args.teacher).resolve()),
                                str(sentences), str(args.batch_size)], env=env, capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(f"error: the pipeline run failed:\n{child.stderr[-2000:]}")
        peer = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"[pipeline] {time.perf_counter() - start:.1f}s whole process, {peer['seconds']:.1f}s timed", flush=True)

    teacher = rows[0]
    reference = teacher["labels"]
    for r in rows:
        r["agreement"] = sum(a == b for a, b in zip(r.pop("labels"), reference)) / len(texts)
    # The pipeline names labels by the config's id2label, as lmctl does.
    pipeline_agreement = sum(a == b for a, b in zip(peer["labels"], reference)) / len(texts)
    pipeline_rate = len(texts) / peer["seconds"]
    batched_rate = len(texts) / peer["batched_seconds"]

    widths = (26, 11, 8, 10, 9, 10)
    print(f"\n== {len(texts)} sentences, {threads} threads")
    print(common.fmt_row(("model", "parameters", "MB", "rows/s", "dev acc", "agreement"), widths))
    for r in rows:
        print(common.fmt_row((r["model"], f"{r['parameters'] / 1e6:.2f}M", f"{r['megabytes']:.1f}",
                              f"{r['rows_per_second']:.0f}", f"{100 * r['dev_accuracy']:.2f}",
                              f"{100 * r['agreement']:.1f}%"), widths))
    print(common.fmt_row(("pipeline (teacher, timed)", "", "", f"{pipeline_rate:.0f}", "",
                          f"{100 * pipeline_agreement:.1f}%"), widths))
    print(common.fmt_row((f"pipeline, batch_size={args.batch_size}", "", "", f"{batched_rate:.0f}", "", ""), widths))

    by = {r["model"]: r for r in rows}
    ratios = {
        "teacher int8 / fp32 rows/s": by["teacher int8 ONNX"]["rows_per_second"] / teacher["rows_per_second"],
        "teacher int8 - fp32 accuracy (points)": 100 * (by["teacher int8 ONNX"]["dev_accuracy"] - teacher["dev_accuracy"]),
        "student int8 / student fp32 rows/s": by["student int8 ONNX"]["rows_per_second"] / by["student fp32"]["rows_per_second"],
        "student int8 - fp32 accuracy (points)": 100 * (by["student int8 ONNX"]["dev_accuracy"] - by["student fp32"]["dev_accuracy"]),
        "student int8 / teacher fp32 rows/s": by["student int8 ONNX"]["rows_per_second"] / teacher["rows_per_second"],
        "student int8 accuracy / teacher's": by["student int8 ONNX"]["dev_accuracy"] / teacher["dev_accuracy"],
        "lmctl teacher fp32 / pipeline rows/s": teacher["rows_per_second"] / pipeline_rate,
        f"lmctl teacher fp32 / pipeline batch_size={args.batch_size} rows/s": teacher["rows_per_second"] / batched_rate,
    }
    print("\n== ratios (targets: int8 >= 2x its fp32 within 1 point; student int8 >= 4x teacher fp32 at >= 96%; "
          "lmctl fp32 >= 3x pipeline)")
    for k, v in ratios.items():
        print(f"{k}: {v:.3f}")
    common.write_results(args.output, {"environment": info, "setup": vars(args), "rows": rows,
                                       "pipeline_rows_per_second": pipeline_rate,
                                       "pipeline_batched_rows_per_second": batched_rate,
                                       "pipeline_agreement": pipeline_agreement, "ratios": ratios})


if __name__ == "__main__":
    main()
