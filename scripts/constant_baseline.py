"""A constant-prediction baseline as a run directory, so `lmctl compare` can rank it with real runs.

Reads a classification config (its validation file, columns and label names), predicts one
label for every row (default: the most frequent training label) and writes a run directory
holding config.yaml, data.json (the same fingerprints a real run records) and metrics.json
(lmctl's own classification metrics). Run from the repository root:

    .venv/bin/python -m scripts.constant_baseline configs/finetune/mrpc-minilm.yaml \\
        --label paraphrase --output runs/mrpc/always-paraphrase

Nothing is trained; train_seconds and samples/s are absent, so compare leaves those cells empty.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="a text-classification config (its validation data is scored)")
    p.add_argument("--label", help="the label to predict for every row (default: the commonest in train)")
    p.add_argument("--output", required=True, help="the run directory to write")
    p.add_argument("--set", action="append", default=[], help="config override, as for lmctl")
    args = p.parse_args()

    from lmctl import config as config_lib
    from lmctl import data, metrics
    from lmctl.rundir import prepare_output_dir, write_json

    cfg = config_lib.load_config(args.config, args.set)
    if cfg.task != "text-classification":
        raise SystemExit(f"error: {args.config}: task {cfg.task}; a constant baseline is for text-classification")
    d = cfg.data
    splits, fingerprints = data.load_splits(cfg, tuple(c for c in (d.text_column, d.text_pair_column) if c))
    train, evals = splits["train"], splits["eval"]
    if len(evals) != 1:
        raise SystemExit(f"error: {args.config}: give one validation file (data.validation_file), not {len(evals)}")
    dev = next(iter(evals.values()))
    names = list(d.label_names) if d.label_names else sorted({str(v) for v in train[d.label_column]})

    def label_id(value) -> int:
        return int(value) if d.label_names and not isinstance(value, str) else names.index(str(value))

    constant = names.index(args.label) if args.label else Counter(map(label_id, train[d.label_column])).most_common(1)[0][0]
    references = [label_id(v) for v in dev[d.label_column]]
    scores = metrics.classification_metrics([constant] * len(references), references, len(names))

    out = prepare_output_dir(args.output, overwrite=False)
    cfg.output_dir = str(out)
    cfg.model.name_or_path = f"constant:{names[constant]}"
    (out / "config.yaml").write_text(config_lib.dump(cfg), encoding="utf-8")
    write_json(out / "data.json", fingerprints)
    write_json(out / "metrics.json", {**{f"eval_{k}": v for k, v in scores.items()},
                                      "best_metric": cfg.training.metric_for_best or "accuracy", "parameters": 0})
    print(f"{out}: always '{names[constant]}' on {len(references)} rows: "
          + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))


if __name__ == "__main__":
    main()
