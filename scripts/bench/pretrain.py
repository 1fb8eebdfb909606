"""Benchmark: `lmctl pretrain` against a plain Hugging Face `Trainer` script, per objective.

For each objective (masked-lm with BERT, causal-lm with GPT-2, span-corruption with T5) the
same from-scratch model trains on the same blocks with the same hyperparameters twice, each
side in a child process of its own, and the script prints training throughput in tokens/s for
each side, the ratio lmctl/Trainer, and the final training loss of each, which should be
close. Run from the repository root:

    .venv/bin/python -m scripts.bench.pretrain                      # all three objectives, WikiText-2 valid
    .venv/bin/python -m scripts.bench.pretrain --quick              # tiny models, 10 steps, 500 documents
    .venv/bin/python -m scripts.bench.pretrain --objectives causal-lm --steps 100

--data is a text corpus, one document per line (default: WikiText-2's wiki.valid.tokens under
../shared/data). How the two sides are kept comparable, how tokens/s and the losses are
counted, and the known differences between the sides: docs/benchmarks.md. --repeats N runs
each side N times, alternating which goes first, and compares medians; --output-json keeps
every run. Exit status 0 on success, 1 when any side fails (its last output lines are shown).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from scripts.bench import common

MODULE = "scripts.bench.pretrain"  # how the Trainer side (a child process) runs this file
DEFAULT_DATA = common.SHARED_DATA / "wikitext2" / "tokens" / "wiki.valid.tokens"

# objective → model family, Auto class, and what the Trainer side uses as a collator.
OBJECTIVES = {
    "masked-lm": {"family": "bert", "auto": "AutoModelForMaskedLM",
                  "collator": "DataCollatorForLanguageModeling(mlm_probability=0.15)"},
    "causal-lm": {"family": "gpt2", "auto": "AutoModelForCausalLM",
                  "collator": "DataCollatorForLanguageModeling(mlm=False)"},
    "span-corruption": {"family": "t5", "auto": "AutoModelForSeq2SeqLM",
                        "collator": "lmctl span_corruption functions in a plain collate fn"},
}
MLM_PROBABILITY = 0.15       # lmctl's pretraining.mlm_probability default
NOISE_DENSITY = 0.15         # lmctl's pretraining.noise_density default
MEAN_NOISE_SPAN = 3.0        # lmctl's pretraining.mean_noise_span_length default
MIN_FREQUENCY = 2            # lmctl's model.train_tokenizer.min_frequency default
FINAL_LOSS_STEPS = 10        # "final loss" = mean over this many last steps
QUICK = {"size": "tiny", "steps": 10, "max_docs": 500, "vocab_size": 2000}
FULL = {"size": "mini", "steps": 60, "max_docs": 0, "vocab_size": 8000}


# --------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(allow_abbrev=False, 
        description="Pretrain the same model two ways (lmctl vs a plain HF Trainer script), per objective, and "
                    "compare tokens/s and training loss.",
    )
    p.add_argument("--objectives", default=",".join(OBJECTIVES),
                   help="comma-separated, from: %s (default: all)" % ", ".join(OBJECTIVES))
    p.add_argument("--data", default=str(DEFAULT_DATA),
                   help="text corpus, one document per line, blank lines dropped (default: %(default)s)")
    p.add_argument("--size", choices=["tiny", "mini", "small", "base"], default=None,
                   help=f"from-scratch preset (default: {FULL['size']}; {QUICK['size']} with --quick)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"optimizer steps per side (default: {FULL['steps']}; {QUICK['steps']} with --quick)")
    p.add_argument("--batch-size", type=int, default=16, help="default: %(default)s")
    p.add_argument("--max-length", type=int, default=128, help="block length in tokens (default: %(default)s)")
    p.add_argument("--lr", type=float, default=5e-4, help="default: %(default)s")
    p.add_argument("--seed", type=int, default=42, help="model init, sampler and masking seed (default: %(default)s)")
    p.add_argument("--vocab-size", type=int, default=None,
                   help=f"trained tokenizer vocabulary (default: {FULL['vocab_size']}; {QUICK['vocab_size']} with --quick)")
    p.add_argument("--max-docs", type=int, default=None,
                   help=f"use only the first N non-empty documents, 0 = all (default: all; {QUICK['max_docs']} "
                        "with --quick)")
    p.add_argument("--repeats", type=int, default=1,
                   help="runs per side, alternating which side goes first (lmctl, Trainer, Trainer, lmctl, ...); "
                        "the table reports medians (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for both sides (default: torch's default on this machine)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: size {size}, {steps} steps, first {max_docs} documents, vocab {vocab_size}"
                   .format(**QUICK))
    p.add_argument("--output-json", default=None, metavar="PATH", help="also write the results here as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary work folder (models, configs, logs)")
    # Internal: the Trainer side, run by this script in a child process.
    common.add_trainer_child_options(p)
    p.add_argument("--objective", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run_trainer:
        return args
    preset = QUICK if args.quick else FULL
    for name in ("size", "steps", "max_docs", "vocab_size"):
        if getattr(args, name) is None:
            setattr(args, name, preset[name])
    names = [o.strip() for o in args.objectives.split(",") if o.strip()]
    unknown = [o for o in names if o not in OBJECTIVES]
    if unknown or not names:
        p.error(f"--objectives: unknown '{','.join(unknown)}'; choose from {', '.join(OBJECTIVES)}")
    args.objectives = list(dict.fromkeys(names))
    common.require_positive(p, args, ("steps", "batch_size", "max_length", "lr", "vocab_size", "repeats"))
    if args.max_docs < 0:
        p.error("--max-docs must be >= 0")
    return args


# --------------------------------------------------------------------------------------
# Corpus: read as lmctl reads a .txt/.tokens file (data.read_frame + TextCorpus.tokenize's filter)
# --------------------------------------------------------------------------------------
def read_documents(path: str | Path) -> list[str]:
    """One document per line (str.splitlines of the UTF-8 text), blank lines dropped."""
    text = Path(path).read_bytes().decode("utf-8-sig")
    return [d for d in text.splitlines() if d.strip()]


def span_lengths(max_length: int) -> tuple[int, int]:
    from lmctl.tasks.span_corruption import inputs_and_targets_length

    return inputs_and_targets_length(max_length, NOISE_DENSITY, MEAN_NOISE_SPAN)


# --------------------------------------------------------------------------------------
# B) The plain Trainer script (child process)
# --------------------------------------------------------------------------------------
class SpanCorruptionCollator:
    """T5 span corruption for PyTorch, built from lmctl's functions (transformers has only a Flax one)."""

    def __init__(self, tokenizer, noise_density: float, mean_span: float):
        self.tokenizer = tokenizer
        self.noise_density, self.mean_span = noise_density, mean_span
        self.sentinels = []
        for k in range(1000):
            token_id = tokenizer.convert_tokens_to_ids(f"<extra_id_{k}>")
            if token_id is None or token_id == tokenizer.unk_token_id:
                break
            self.sentinels.append(token_id)
        if not self.sentinels:
            raise SystemExit("error: the T5 tokenizer has no <extra_id_N> sentinels")

    def __call__(self, features: list[dict]) -> dict:
        import torch

        from lmctl.tasks.span_corruption import corrupt, noise_mask

        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        inputs, labels = [], []
        for f in features:
            ids = list(f["input_ids"])
            mask = noise_mask(len(ids), self.noise_density, self.mean_span)
            x, y = corrupt(ids, mask, self.sentinels, eos)
            inputs.append(x)
            labels.append(y)
        wx, wy = max(map(len, inputs)), max(map(len, labels))
        return {
            "input_ids": torch.tensor([x + [pad] * (wx - len(x)) for x in inputs]),
            "attention_mask": torch.tensor([[1] * len(x) + [0] * (wx - len(x)) for x in inputs]),
            "labels": torch.tensor([y + [-100] * (wy - len(y)) for y in labels]).contiguous(),
        }


def run_trainer(args: argparse.Namespace) -> None:
    """Plain Hugging Face pretraining, the run_mlm / run_clm way, with Trainer defaults."""
    import time

    import datasets
    import transformers
    from datasets import Dataset
    from transformers import (AutoTokenizer, DataCollatorForLanguageModeling, PrinterCallback, Trainer,
                              TrainerCallback, set_seed)

    common.quiet_hf_logging()
    datasets.utils.logging.set_verbosity_error()

    objective = args.objective
    spec = OBJECTIVES[objective]
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token  # GPT-2 convention (the saved tokenizer already has one)
    model = getattr(transformers, spec["auto"]).from_pretrained(args.model)

    raw = Dataset.from_dict({"text": read_documents(args.corpus)})
    eos = tokenizer.eos_token_id

    def tokenize(batch):
        if objective == "masked-lm":
            return tokenizer(batch["text"], add_special_tokens=True, return_special_tokens_mask=True)
        enc = tokenizer(batch["text"], add_special_tokens=False)
        if objective == "causal-lm":
            enc["input_ids"] = [ids + [eos] for ids in enc["input_ids"]]
            enc["attention_mask"] = [m + [1] for m in enc["attention_mask"]]
            return enc
        return {"input_ids": enc["input_ids"]}

    block = span_lengths(args.max_length)[0] if objective == "span-corruption" else args.max_length

    def group_texts(examples):  # run_clm's group_texts
        joined = {k: [x for seq in v for x in seq] for k, v in examples.items()}
        total = len(joined["input_ids"])
        if total >= block:
            total = (total // block) * block
        return {k: [t[i:i + block] for i in range(0, total, block)] for k, t in joined.items()}

    tokenized = raw.map(tokenize, batched=True, remove_columns=["text"])
    train_ds = tokenized.map(group_texts, batched=True, batch_size=1000)

    if objective == "masked-lm":
        collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=MLM_PROBABILITY)
    elif objective == "causal-lm":
        collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    else:
        collator = SpanCorruptionCollator(tokenizer, NOISE_DENSITY, MEAN_NOISE_SPAN)

    # Tokens the model's forward sees in training: the attention-mask sum, as lmctl counts it.
    # Also the divisor Trainer hands the loss (num_items_in_batch) against the labels the loss sums
    # over: for GPT2LMHeadModel, transformers 5.24 counts the unshifted labels (docs/benchmarks.md).
    seen = {"tokens": 0, "batches": 0, "loss_scale": []}

    def count_tokens(module, fargs, fkwargs):
        if module.training:
            mask = fkwargs.get("attention_mask")
            ids = fkwargs.get("input_ids")
            seen["tokens"] += int(mask.sum()) if mask is not None else int(ids.numel())
            seen["batches"] += 1
            n_items, labels = fkwargs.get("num_items_in_batch"), fkwargs.get("labels")
            if objective == "causal-lm" and n_items is not None and labels is not None:
                seen["loss_scale"].append(float(n_items) / max(int((labels[:, 1:] != -100).sum()), 1))

    model.register_forward_pre_hook(count_tokens, with_kwargs=True)

    class LoopClock(TrainerCallback):  # the loop's span (to check train_runtime) and each step's time
        def on_train_begin(self, *a, **k):
            self.start = self.last = time.perf_counter()
            self.steps = []

        def on_step_end(self, *a, **k):  # previous on_step_end → this one: fetch, collate, step (+ last log)
            now = time.perf_counter()
            self.steps.append(now - self.last)
            self.last = now

        def on_train_end(self, *a, **k):
            self.seconds = time.perf_counter() - self.start

    clock = LoopClock()
    set_seed(args.seed)
    targs = common.training_arguments(args, logging_steps=1, max_steps=args.steps)
    trainer = Trainer(model=model, args=targs, train_dataset=train_ds, processing_class=tokenizer,
                      data_collator=collator, callbacks=[clock])
    trainer.remove_callback(PrinterCallback)  # no log dict printed per step (disable_tqdm adds it)
    train_out, optimizer_facts = common.train(trainer, f"{len(train_ds)} blocks of {block} tokens",
                                              f"collator {type(collator).__name__}")
    m = train_out.metrics
    losses = [float(e["loss"]) for e in trainer.state.log_history if "loss" in e and "train_runtime" not in e]

    # Per-step loss as a mean over the labels the loss sums (shifted), to compare with lmctl's.
    scale = seen["loss_scale"]
    corrected = [loss * f for loss, f in zip(losses, scale)] if scale and len(scale) == len(losses) else None

    runtime = float(m["train_runtime"])
    result = {
        "blocks": len(train_ds),
        "block_length": block,
        "train_seconds": runtime,
        "loop_seconds": round(getattr(clock, "seconds", float("nan")), 3),
        "step_seconds": [round(x, 5) for x in getattr(clock, "steps", [])],
        "train_tokens": seen["tokens"],
        "forward_batches": seen["batches"],
        "tokens_per_second": seen["tokens"] / runtime,
        "samples_per_second": seen["batches"] * args.batch_size / runtime,
        "completed_steps": int(train_out.global_step),
        "train_loss_mean": float(train_out.training_loss),
        "losses": losses,
        "loss_divisor_over_targets": scale or None,
        "losses_per_target": corrected,
        **optimizer_facts,
    }
    common.write_trainer_result(args.result, result)
    print(f"trainer: done, {result['tokens_per_second']:.0f} tokens/s, {len(losses)} losses logged", flush=True)


# --------------------------------------------------------------------------------------
# The driver (parent process)
# --------------------------------------------------------------------------------------
def build_model(objective: str, docs: list[str], args, out_dir: Path) -> dict:
    """Train the family's tokenizer on the corpus, build a seeded from-scratch model, save both."""
    import time

    import transformers
    from transformers import set_seed

    from lmctl.models import count_parameters, scratch_config
    from lmctl.tokenizer_training import train_tokenizer

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # "Writing model shards" bar
    spec = OBJECTIVES[objective]
    start = time.perf_counter()
    tokenizer = train_tokenizer(spec["family"], docs, args.vocab_size, MIN_FREQUENCY,
                                model_max_length=args.max_length)
    set_seed(args.seed)
    config = scratch_config(spec["family"], args.size, {}, tokenizer, args.max_length)
    model = getattr(transformers, spec["auto"]).from_config(config)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    info = {"family": spec["family"], "size": args.size, "model_class": type(model).__name__,
            "parameters": count_parameters(model), "vocab": len(tokenizer),
            "build_seconds": round(time.perf_counter() - start, 1)}
    del model
    return info


def lmctl_config(objective: str, model_dir: Path, corpus: Path, valid: Path, a) -> dict:
    """The lmctl side's config, less output_dir (common.run_lmctl sets it)."""
    return {
        "task": objective,
        "model": {"name_or_path": str(model_dir)},
        "data": {
            "train_file": str(corpus),
            "validation_file": str(valid),  # never read for training; without it lmctl would hold out 10%
            "text_column": "text",
            "packing": True,
        },
        "training": {
            "max_steps": a.steps,
            "batch_size": a.batch_size,
            "learning_rate": float(a.lr),
            "max_length": a.max_length,
            "seed": a.seed,
            "eval_strategy": "no",
            "logging_steps": 1,      # one loss per step in train_log.jsonl, as the Trainer side logs
            "save_best": False,
            "save_steps": None,      # no checkpoints during training (Trainer: save_strategy "no")
        },
        "pretraining": {
            "mlm_probability": MLM_PROBABILITY,
            "noise_density": NOISE_DENSITY,
            "mean_noise_span_length": MEAN_NOISE_SPAN,
        },
    }


def median_step_tokens_per_second(r: dict) -> float | None:
    """Tokens per step (all steps carry the same packed tokens) / the median step time."""
    import statistics

    steps = r.get("step_seconds") or []
    if not steps or not r.get("completed_steps"):
        return None
    return r["train_tokens"] / r["completed_steps"] / statistics.median(steps)


def final_loss(losses: list[float]) -> float | None:
    tail = losses[-FINAL_LOSS_STEPS:]
    return sum(tail) / len(tail) if tail else None


def run_lmctl_side(objective: str, model_dir: Path, corpus: Path, valid: Path, work: Path, env: dict, args) -> dict:
    run = common.run_lmctl(f"{objective}/lmctl", "pretrain", lmctl_config(objective, model_dir, corpus, valid, args),
                           work, env)
    m = run["metrics"]
    losses, step_seconds = [], []
    for line in (run["out_dir"] / "train_log.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            losses.append(float(rec["loss"]))
            if rec.get("samples_per_second"):  # one step per line (logging_steps 1): batch / its seconds
                step_seconds.append(args.batch_size / float(rec["samples_per_second"]))
    found = re.search(r"training: (\d+) examples", run["log"].read_text(encoding="utf-8", errors="replace"))
    secs = m["train_seconds"]
    return {
        "blocks": int(found.group(1)) if found else None,
        "train_seconds": secs,
        "train_tokens": round(m["train_tokens_per_second"] * secs),
        "tokens_per_second": m["train_tokens_per_second"],
        "samples_per_second": m.get("train_samples_per_second"),
        "completed_steps": m.get("completed_steps"),
        "train_loss_mean": sum(losses) / len(losses) if losses else None,
        "losses": losses,
        "step_seconds": [round(x, 5) for x in step_seconds],
        "torch_threads": run["environment"].get("torch_threads"),
        "wall_seconds": run["wall_seconds"],
        "cpu_seconds": run["cpu_seconds"],
        "load_before": run["load_before"],
        "metrics_json": m,
    }


def run_trainer_side(objective: str, model_dir: Path, corpus: Path, work: Path, env: dict, args) -> dict:
    options = ["--objective", objective, "--model", str(model_dir), "--corpus", str(corpus), "--steps", str(args.steps)]
    return common.run_trainer_child(f"{objective}/trainer", MODULE, options, args, work, env)


def side_summary(runs: list[dict]) -> dict:
    """One side's figures over its runs: medians of the speeds, losses of the first run."""
    import statistics

    first = runs[0]
    steps = [x for r in runs for x in r.get("step_seconds") or []]
    med = None
    if steps and first.get("completed_steps"):
        med = first["train_tokens"] / first["completed_steps"] / statistics.median(steps)
    return {
        "tokens_per_second": statistics.median(r["tokens_per_second"] for r in runs),
        "median_step_tokens_per_second": med,
        "final_loss": final_loss(first["losses"]),
        "losses": first["losses"],
        "blocks": first.get("blocks"),
        "runs": len(runs),
    }


def report_objective(objective: str, res: dict, model_info: dict, threads: int) -> dict:
    """res: side → list of runs. Prints one row per run, then the comparison of the sides' medians."""
    m = model_info
    print(f"== {objective}: {m['model_class']} ({m['family']} {m['size']}, {m['parameters'] / 1e6:.2f}M parameters, "
          f"vocab {m['vocab']}); Trainer side: {OBJECTIVES[objective]['collator']}")
    header = ["", "tokens/s", "median", "train s", "tokens", "steps", "blocks", "final loss", "mean loss",
              "threads", "wall s", "cpu", "load"]
    widths = [10, 9, 7, 8, 8, 6, 7, 10, 9, 7, 7, 5, 5]
    print(common.fmt_row(header, widths))
    for side in ("lmctl", "trainer"):
        runs = res.get(side) or []
        for i, r in enumerate(runs):
            fl, ml = final_loss(r["losses"]), r.get("train_loss_mean")
            med = median_step_tokens_per_second(r)
            r["median_step_tokens_per_second"] = med
            label = side if len(runs) == 1 else f"{side}#{r.get('run', i + 1)}"
            print(common.fmt_row([label, f"{r['tokens_per_second']:.0f}", f"{med:.0f}" if med else "-",
                                  f"{r['train_seconds']:.1f}", r["train_tokens"],
                                  r.get("completed_steps", "-"), r.get("blocks") or "-",
                                  f"{fl:.4f}" if fl is not None else "-", f"{ml:.4f}" if ml is not None else "-",
                                  r.get("torch_threads", "-"), f"{r['wall_seconds']:.0f}",
                                  f"{r['cpu_seconds'] / max(r['wall_seconds'], 1e-9):.2f}",
                                  f"{r['load_before']:.1f}"], widths))
    comparison: dict = {}
    if res.get("lmctl") and res.get("trainer"):
        a, b = side_summary(res["lmctl"]), side_summary(res["trainer"])
        b_first = res["trainer"][0]
        comparison = {
            "lmctl_tokens_per_second": a["tokens_per_second"],
            "trainer_tokens_per_second": b["tokens_per_second"],
            "tokens_per_second_ratio": a["tokens_per_second"] / b["tokens_per_second"],
            "lmctl_median_step_tokens_per_second": a["median_step_tokens_per_second"],
            "trainer_median_step_tokens_per_second": b["median_step_tokens_per_second"],
            "median_step_ratio": (a["median_step_tokens_per_second"] / b["median_step_tokens_per_second"]
                                  if a["median_step_tokens_per_second"] and b["median_step_tokens_per_second"]
                                  else None),
            "final_loss_lmctl": a["final_loss"],
            "final_loss_trainer": b["final_loss"],
            "same_blocks": a["blocks"] == b["blocks"],
            "runs_per_side": min(a["runs"], b["runs"]),
        }
        pairs = list(zip(a["losses"], b["losses"]))
        comparison["max_step_loss_diff"] = max((abs(x - y) for x, y in pairs), default=None)
        over = f" (medians over {a['runs']}/{b['runs']} runs)" if max(a["runs"], b["runs"]) > 1 else ""
        median_text = (f", from median step times {comparison['median_step_ratio']:.2f}x"
                       if comparison["median_step_ratio"] else "")
        print(f"ratio     lmctl/Trainer tokens/s: {comparison['tokens_per_second_ratio']:.2f}x{median_text}{over}   "
              f"(Trainer optim {b_first.get('optim')}, fused={b_first.get('fused_adamw')})")
        if pairs:
            print(f"loss      largest per-step difference over {len(pairs)} steps: "
                  f"{comparison['max_step_loss_diff']:.4f} (same batches; different mask/span/dropout draws)")
        if b_first.get("losses_per_target"):
            fixed = b_first["losses_per_target"]
            comparison["final_loss_trainer_per_target"] = final_loss(fixed)
            comparison["max_step_loss_diff_per_target"] = max(abs(x - y) for x, y in zip(a["losses"], fixed))
            f = b_first["loss_divisor_over_targets"]
            print(f"loss      Trainer divides the summed loss by {min(f):.4f}-{max(f):.4f}x the targets it sums "
                  f"(unshifted label count, see docs/benchmarks.md); per target its final loss is "
                  f"{comparison['final_loss_trainer_per_target']:.4f}, largest per-step difference to lmctl "
                  f"{comparison['max_step_loss_diff_per_target']:.4f} (the eos labels)")
        if not comparison["same_blocks"]:
            print(f"warning   the sides packed different block counts (lmctl {a['blocks']}, "
                  f"Trainer {b['blocks']}): the data paths diverge")
    all_runs = [r for runs in res.values() for r in runs]
    cpu = [r["cpu_seconds"] / max(r["wall_seconds"], 1e-9) for r in all_runs]
    # Not the load average: right after a child it counts that child too.
    if any(c < 0.8 * threads for c in cpu):
        print(f"warning   a child got less than {0.8 * threads:.1f} of its {threads} threads' CPU (cpu column): "
              "other processes competed or set-up dominated; timings are noisy; rerun on an idle machine "
              "(or with --repeats) for numbers to quote")
    print(flush=True)
    return comparison


def main() -> None:
    args = parse_args()
    if args.run_trainer:
        run_trainer(args)
        return

    import torch

    data = Path(args.data)
    if not data.is_file():
        sys.exit(f"error: --data {data}: no such file (a text corpus, one document per line)")
    threads = args.threads or torch.get_num_threads()
    docs_all = read_documents(data)
    if not docs_all:
        sys.exit(f"error: --data {data}: no non-empty lines")
    docs = docs_all[:args.max_docs] if args.max_docs else docs_all

    failed = False
    with common.work_folder("lmctl-bench-pretrain-", args.keep) as work:
        if len(docs) < len(docs_all):
            corpus = work / "corpus.txt"
            corpus.write_text("\n".join(docs) + "\n", encoding="utf-8")
        else:
            corpus = data.resolve()
        valid = work / "valid.txt"
        valid.write_text("\n".join(docs[:8]) + "\n", encoding="utf-8")
        env = common.child_env(threads)

        info = common.environment(threads)
        setup = {
            "data": str(data.resolve()),
            "documents": len(docs),
            "documents_in_file": len(docs_all),
            "objectives": args.objectives,
            "size": args.size,
            "vocab_size": args.vocab_size,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "learning_rate": args.lr,
            "seed": args.seed,
            "repeats": args.repeats,
            "final_loss_steps": FINAL_LOSS_STEPS,
        }
        common.print_environment(info)
        load = os.getloadavg()
        info["load_average_at_start"] = [round(x, 2) for x in load]
        print(f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min) on {os.cpu_count()} cpus"
              + ("  -- the machine is busy: expect noisy timings" if load[0] > 0.5 else ""))
        print("== setup")
        print(f"data    {setup['data']}: {len(docs)} of {len(docs_all)} non-empty documents")
        print(f"hparams size {args.size}  vocab {args.vocab_size}  steps {args.steps}  batch {args.batch_size}  "
              f"max_length {args.max_length}  lr {args.lr:g}  seed {args.seed}  repeats {args.repeats}  "
              "(no eval, loss logged every step)")
        print("tokens/s = attention-mask sum of the training batches / train seconds (lmctl: train_seconds; "
              "Trainer: train_runtime); final loss = mean of the last "
              f"{FINAL_LOSS_STEPS} per-step losses; mean loss = over all steps", flush=True)
        print(flush=True)

        results: dict = {}
        models: dict = {}
        comparisons: dict = {}
        for objective in args.objectives:
            owork = work / objective
            owork.mkdir()
            model_dir = owork / "model"
            print(f"[{objective}] building the {args.size} {OBJECTIVES[objective]['family']} model and tokenizer ...",
                  file=sys.stderr, flush=True)
            models[objective] = build_model(objective, docs, args, model_dir)
            res: dict = {"lmctl": [], "trainer": []}
            try:
                for rep in range(args.repeats):
                    rdir = owork / f"run{rep + 1}"
                    rdir.mkdir()
                    # ABBA...: with repeats, each side runs first as often as it runs second.
                    for side in (("lmctl", "trainer") if rep % 2 == 0 else ("trainer", "lmctl")):
                        if side == "lmctl":
                            r = run_lmctl_side(objective, model_dir, corpus, valid, rdir, env, args)
                        else:
                            r = run_trainer_side(objective, model_dir, corpus, rdir, env, args)
                        r["run"] = rep + 1
                        res[side].append(r)
            except SystemExit:
                failed = True
                print(f"error: {objective}: a side failed; see the log above", file=sys.stderr, flush=True)
            results[objective] = res
            if res["lmctl"] or res["trainer"]:
                comparisons[objective] = report_objective(objective, res, models[objective], threads)

        summary(results, comparisons)
        if args.output_json:
            common.write_results(args.output_json, {"environment": info, "setup": setup, "models": models,
                                                    "results": results, "comparison": comparisons})
    if failed:
        raise SystemExit(1)


def summary(results: dict, comparisons: dict) -> None:
    print("== summary (tokens/s: higher is better; median ratio: from each side's median step time, robust to "
          f"bursts of load; final loss: mean of the last {FINAL_LOSS_STEPS} steps, should be close)")
    header = ["objective", "lmctl tok/s", "Trainer tok/s", "ratio", "median ratio", "lmctl loss", "Trainer loss"]
    widths = [16, 11, 13, 6, 12, 10, 12]
    print(common.fmt_row(header, widths))
    for objective in results:
        c = comparisons.get(objective) or {}
        if not c:
            print(common.fmt_row([objective, "failed", "failed", "-", "-", "-", "-"], widths))
            continue
        print(common.fmt_row([
            objective,
            f"{c['lmctl_tokens_per_second']:.0f}",
            f"{c['trainer_tokens_per_second']:.0f}",
            f"{c['tokens_per_second_ratio']:.2f}x",
            f"{c['median_step_ratio']:.2f}x" if c.get("median_step_ratio") else "-",
            f"{c['final_loss_lmctl']:.4f}" if c.get("final_loss_lmctl") is not None else "-",
            f"{c['final_loss_trainer']:.4f}" if c.get("final_loss_trainer") is not None else "-",
        ], widths))
    for objective, comp in comparisons.items():
        if comp.get("final_loss_trainer_per_target") is not None:
            print(f"{objective}: the Trainer's logged loss is divided by the unshifted label count (transformers "
                  f"5.24, GPT2LMHeadModel); per summed target it is {comp['final_loss_trainer_per_target']:.4f}")
    print(flush=True)


if __name__ == "__main__":
    main()
