"""Does pretraining from scratch pay off? The pretrain → finetune experiment on SST-2.

    python -m scripts.pretrain_gain --data ../shared/data/sst2            # (make pretrain-demo)
    python -m scripts.pretrain_gain --data ../shared/data/sst2 --quick    # a smoke run

1. Pretrain a small model from scratch (tokenizer trained on the same text) on the SST-2
   training sentences, labels dropped, for a fixed step budget (`lmctl pretrain`).
2. Finetune it on a seeded sample of labelled SST-2 training rows (`lmctl finetune`), and
   finetune the same architecture from random initialisation (same tokenizer) on the same
   rows. Each side gets its best learning rate from the same sweep; accuracy is on the
   full SST-2 dev set, averaged over seeds. `--pooling mean` (make pretrain-demo) classifies
   from the mean of the token states on both sides; docs/pretraining-study.md has both poolings.
3. For reference, a TF-IDF logistic regression on the same labelled rows (scikit-learn).

Every step is an ordinary lmctl command; the script only writes configs and reads
metrics.json, so the table is exactly what a user would get.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import yaml


def lmctl(*args: str) -> None:
    cmd = [sys.executable, "-m", "lmctl", *args]
    print("$ lmctl " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def read_tsv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def hold_out_sentences(lines: list[str], count: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """`count` whole sentences for validation, and the corpus without them or any phrase cut from them.

    SST-2's training lines are phrases of the parse trees of ~8.5k sentences, so a random share
    of lines is mostly text the model also trains on (268 of 300 random lines occur inside other
    lines). A whole sentence (a line inside no other line) with all its phrases removed is unseen.
    """
    blob = "\n".join(f" {line} " for line in lines)
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    held: list[str] = []
    for i in order:
        if len(held) == count:
            break
        if lines[i] and blob.count(f" {lines[i]} ") == 1:
            held.append(lines[i])
    held_blob = "\n".join(f" {h} " for h in held)  # a line has no newline, so a match stays in one sentence
    return held, [line for line in lines if f" {line} " not in held_blob]


def bag_of_words_baseline(train: list[tuple[str, str]], dev: list[tuple[str, str]]) -> tuple[float, float]:
    """(dev accuracy, C) of a TF-IDF logistic regression on the same rows: the floor to read both sides against.

    C comes from a small sweep scored on dev, as the finetuning learning rates are.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer()
    x_train = vectorizer.fit_transform([text for text, _ in train])
    x_dev = vectorizer.transform([text for text, _ in dev])
    y_train, y_dev = [label for _, label in train], [label for _, label in dev]
    return max((LogisticRegression(C=c, max_iter=2000).fit(x_train, y_train).score(x_dev, y_dev), c)
               for c in (0.3, 1.0, 3.0, 10.0, 30.0))


def write_yaml(path: Path, obj: dict) -> Path:
    path.write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True,
                    help="folder with train.tsv and dev.tsv (SST-2, or any with a text and a label column)")
    ap.add_argument("--text-column", default="sentence", help="text column of the TSVs (ChnSentiCorp: text_a)")
    ap.add_argument("--out", type=Path, default=Path("runs/pretrain-gain"))
    ap.add_argument("--task", default="causal-lm", choices=["causal-lm", "masked-lm"])
    ap.add_argument("--size", default="mini", choices=["tiny", "mini", "small", "base"])
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="model config override for both sides, e.g. activation_function=gelu "
                         "(exact gelu is ~30%% faster than GPT-2's gelu_new on CPU)")
    ap.add_argument("--vocab-size", type=int, default=4000)
    ap.add_argument("--pretrain-steps", type=int, default=2000)
    ap.add_argument("--pretrain-batch", type=int, default=64)
    ap.add_argument("--pretrain-lr", type=float, default=1e-3)
    ap.add_argument("--block", type=int, default=64, help="pretraining block length (tokens)")
    ap.add_argument("--line-by-line", action="store_true",
                    help="pretrain on one line per example (data.packing: false), so sentences start at "
                         "position 0 as they do in finetuning; --pretrain-batch counts lines then")
    ap.add_argument("--mlm-probability", type=float, default=0.15)
    ap.add_argument("--held-out-sentences", type=int, default=0, metavar="N",
                    help="validate pretraining on N whole training sentences removed from the corpus with every "
                         "phrase cut from them, keep the best checkpoint and stop two evaluations after it; "
                         "0: a random 2%% of lines, no early stop")
    ap.add_argument("--finetune-rows", type=int, default=2000)
    ap.add_argument("--finetune-epochs", type=int, default=5)
    ap.add_argument("--finetune-length", type=int, default=64, help="finetuning max_length (tokens)")
    ap.add_argument("--pooling", choices=["last", "mean"], default="last",
                    help="GPT-2 classification from the last token (transformers' head) or the mean of all "
                         "tokens (model.pooling), on both sides")
    ap.add_argument("--finetune-set", action="append", default=[], metavar="KEY=VALUE",
                    help="passed to every `lmctl finetune` as --set (e.g. training.group_by_length=false); "
                         "named in the run directories and the results file")
    ap.add_argument("--lrs", default="1e-4,3e-4,1e-3")
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--quick", action="store_true", help="tiny budget, to check the pipeline")
    ap.add_argument("--reuse-pretraining", action="store_true",
                    help="keep the pretrained model of an earlier run with the same pretraining config "
                         "(to rerun only the finetuning sweep)")
    args = ap.parse_args()
    if args.quick:
        args.pretrain_steps, args.finetune_rows, args.finetune_epochs = 60, 300, 1
        args.lrs, args.seeds, args.size = "1e-3", "1", "tiny"

    family = "gpt2" if args.task == "causal-lm" else "bert"
    overrides = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.override)}
    scratch = {"family": family, "size": args.size, "overrides": overrides}
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    train_rows = read_tsv(args.data / "train.tsv")

    # Pretraining corpus: every training sentence, labels dropped.
    corpus = out / "corpus.txt"
    lines = [r[args.text_column].strip() for r in train_rows]
    data_cfg = {"train_file": str(corpus), "text_column": "text"}
    if args.line_by_line:
        data_cfg["packing"] = False
    stopping = {}
    if args.held_out_sentences:
        held, lines = hold_out_sentences(lines, args.held_out_sentences)
        (out / "held_out.txt").write_text("\n".join(held) + "\n", encoding="utf-8")
        data_cfg["validation_file"] = str(out / "held_out.txt")
        # Unseen-sentence perplexity turns up once the phrases are memorised: stop there (the best is kept).
        stopping = {"early_stopping_patience": 2}
        print(f"validation: {len(held)} held-out sentences; corpus {len(lines)} of {len(train_rows)} lines",
              flush=True)
    else:
        data_cfg["validation_split"] = 0.02
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rng = random.Random(0)
    sample = rng.sample(train_rows, args.finetune_rows)
    ft_train = out / "finetune_train.tsv"
    with ft_train.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        w.writerow([args.text_column, "label"])
        for r in sample:
            w.writerow([r[args.text_column], r["label"]])

    pre_dir = out / f"pretrain-{family}-{args.size}"
    pretrain_cfg = {
        "task": args.task,
        "model": {"from_scratch": scratch,
                  "train_tokenizer": {"vocab_size": args.vocab_size, "min_frequency": 2}},
        "data": data_cfg,
        "pretraining": {"mlm_probability": args.mlm_probability},
        "training": {"max_steps": args.pretrain_steps, "batch_size": args.pretrain_batch,
                     "learning_rate": args.pretrain_lr, "warmup_ratio": 0.05, "lr_scheduler": "cosine",
                     "weight_decay": 0.01, "max_length": args.block, "eval_strategy": "steps",
                     "eval_steps": max(args.pretrain_steps // 10, 1), "logging_steps": 100, "seed": 42,
                     **stopping},
        "output_dir": str(pre_dir),
    }
    pretrain_yaml = out / "pretrain.yaml"
    earlier = yaml.safe_load(pretrain_yaml.read_text()) if pretrain_yaml.exists() else None
    if args.reuse_pretraining and earlier == pretrain_cfg and (pre_dir / "metrics.json").exists():
        print(f"reusing the pretrained model in {pre_dir} (same pretraining config)", flush=True)
        pretrain_minutes = json.loads((out / "pretrain_minutes.json").read_text())
    else:
        if args.reuse_pretraining:
            sys.exit(f"error: --reuse-pretraining: no finished pretraining with this config in {pre_dir}")
        start = time.perf_counter()
        lmctl("pretrain", str(write_yaml(pretrain_yaml, pretrain_cfg)), "--overwrite")
        pretrain_minutes = (time.perf_counter() - start) / 60
        (out / "pretrain_minutes.json").write_text(json.dumps(pretrain_minutes))
    pre_metrics = json.loads((pre_dir / "metrics.json").read_text())
    # SST-2's training lines are phrases cut from the same ~8.5k sentences (measured: 268 of 300
    # random lines occur inside other training lines), so a random 2% split measures memorisation.
    # The dev sentences (text only, labels unused) are unseen text whichever validation was used.
    dev_text = out / "dev_text.txt"
    dev_rows = read_tsv(args.data / "dev.tsv")
    dev_text.write_text("\n".join(r[args.text_column].strip() for r in dev_rows) + "\n", encoding="utf-8")
    lmctl("evaluate", "--model", str(pre_dir), "--data", str(dev_text), "--output", str(out / "dev_text_eval.json"))
    dev_perplexity = json.loads((out / "dev_text_eval.json").read_text())["metrics"]["perplexity"]

    lrs = [float(x) for x in args.lrs.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    results: dict[str, dict[float, list[float]]] = {"pretrained": {}, "random init": {}}
    # Runs of another pooling or --finetune-set get their own names, so variants sit side by side.
    variant = "" if args.pooling == "last" else f"-{args.pooling}"
    variant += "".join(f"-{kv.split('=', 1)[0].rsplit('.', 1)[-1]}={kv.split('=', 1)[1]}" for kv in args.finetune_set)
    sets = [arg for kv in args.finetune_set for arg in ("--set", kv)]
    start = time.perf_counter()
    for side in results:
        for lr in lrs:
            for seed in seeds:
                run_dir = out / f"ft-{side.replace(' ', '-')}{variant}-lr{lr:g}-s{seed}"
                model = ({"name_or_path": str(pre_dir)} if side == "pretrained"
                         else {"from_scratch": scratch, "tokenizer": str(pre_dir)})
                if family == "gpt2":
                    model["pooling"] = args.pooling
                cfg = {
                    "task": "text-classification",
                    "model": model,
                    "data": {"train_file": str(ft_train), "validation_file": str(args.data / "dev.tsv"),
                             "text_column": args.text_column, "label_column": "label"},
                    "training": {"num_epochs": args.finetune_epochs, "batch_size": 32, "learning_rate": lr,
                                 "warmup_ratio": 0.1, "weight_decay": 0.01, "max_length": args.finetune_length,
                                 "seed": seed,
                                 "logging_steps": 50},
                    "output_dir": str(run_dir),
                }
                lmctl("finetune", str(write_yaml(out / f"{run_dir.name}.yaml", cfg)), "--overwrite", *sets)
                acc = json.loads((run_dir / "metrics.json").read_text())["eval_accuracy"]
                results[side].setdefault(lr, []).append(acc)
    finetune_minutes = (time.perf_counter() - start) / 60
    bow_accuracy, bow_c = bag_of_words_baseline(
        [(r[args.text_column], r["label"]) for r in sample],
        [(r[args.text_column], r["label"]) for r in dev_rows])

    print(f"\n## Pretrain -> finetune on {args.data} (dev accuracy, best epoch, mean over seeds)\n")
    print(f"pretraining: {args.task} {family}-{args.size}, vocab {args.vocab_size}, {args.pretrain_steps} steps x "
          f"{args.pretrain_batch} {'lines of up to' if args.line_by_line else 'blocks of'} {args.block} tokens, "
          f"{pretrain_minutes:.1f} min, "
          f"{pre_metrics['train_tokens_per_second']:.0f} tokens/s, final eval loss {pre_metrics['eval_loss']:.3f} "
          f"(perplexity {pre_metrics['eval_perplexity']:.1f}); perplexity on the dev sentences {dev_perplexity:.1f}")
    print(f"model overrides: {overrides or 'none'}; classification pooling: {args.pooling}; "
          f"finetune --set: {', '.join(args.finetune_set) or 'none'}")
    print(f"finetuning: {args.finetune_rows} labelled rows, {args.finetune_epochs} epochs, max_length "
          f"{args.finetune_length}, seeds {seeds}, "
          f"{len(lrs) * len(seeds) * 2} runs in {finetune_minutes:.1f} min\n")
    print("| init | lr | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |")
    print("|---|---|" + "---|" * (len(seeds) + 1))
    best = {}
    for side, by_lr in results.items():
        for lr, accs in by_lr.items():
            mean = sum(accs) / len(accs)
            print(f"| {side} | {lr:g} | " + " | ".join(f"{a:.4f}" for a in accs) + f" | {mean:.4f} |")
            if side not in best or mean > best[side][1]:
                best[side] = (lr, mean)
    gain = 100 * (best["pretrained"][1] - best["random init"][1])
    print(f"\nbest pretrained: lr {best['pretrained'][0]:g} -> {best['pretrained'][1]:.4f}; "
          f"best random init: lr {best['random init'][0]:g} -> {best['random init'][1]:.4f}; gain {gain:+.1f} points")
    print(f"reference: TF-IDF logistic regression on the same {len(sample)} rows (C {bow_c:g}, picked on dev): "
          f"{bow_accuracy:.4f}")
    (out / f"results{variant}.json").write_text(json.dumps({
        "args": {k: str(v) for k, v in vars(args).items()}, "pretrain_minutes": pretrain_minutes,
        "pretrain_metrics": pre_metrics, "dev_text_perplexity": dev_perplexity,
        "results": {s: {str(k): v for k, v in d.items()} for s, d in results.items()},
        "best": best, "gain_points": gain, "bag_of_words": {"accuracy": bow_accuracy, "C": bow_c}}, indent=2))


if __name__ == "__main__":
    main()
