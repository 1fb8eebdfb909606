"""A baseline as a run directory, so `lmctl compare` can rank it with real runs.

Reads a classification config (its train and validation files, columns and label names) and
scores the validation rows with one of two models that need no GPU and no pretraining:

- `--kind constant` (default): one label for every row (default: the most frequent training label).
- `--kind tfidf`: TF-IDF over character (default) or word n-grams and a logistic regression,
  fitted on the training rows (scikit-learn). The floor a finetuned transformer should clear:
  on ChnSentiCorp, character 1-3-grams reach 91.75% dev accuracy in 23 seconds (docs/results.md).

It writes a run directory holding config.yaml, data.json (the same fingerprints a real run
records) and metrics.json (lmctl's own classification metrics). Run from the repository root:

    .venv/bin/python -m scripts.baseline configs/finetune/mrpc-minilm.yaml \\
        --label paraphrase --output runs/mrpc/always-paraphrase
    .venv/bin/python -m scripts.baseline configs/finetune/zh-chnsenticorp.yaml --kind tfidf \\
        --output runs/zh/tfidf

train_seconds and samples/s are absent, so compare leaves those cells empty.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter


def main() -> None:
    """Bad input (a config, a column, a file) ends in one line on stderr and exit status 2, as in lmctl."""
    from lmctl.errors import UserError

    try:
        run()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def run() -> None:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="a text-classification config (its validation data is scored)")
    p.add_argument("--kind", choices=["constant", "tfidf"], default="constant", help="default: %(default)s")
    p.add_argument("--label", help="constant: the label to predict for every row (default: the commonest in train)")
    p.add_argument("--analyzer", choices=["char", "word"], default="char",
                   help="tfidf: n-grams of characters (any script, no tokenizer) or of words (default: %(default)s)")
    p.add_argument("--ngrams", type=int, default=3, help="tfidf: n-grams of 1 to N units (default: %(default)s)")
    p.add_argument("--C", type=float, default=10.0,
                   help="tfidf: inverse regularisation of the logistic regression (default: %(default)s)")
    p.add_argument("--output", required=True, help="the run directory to write")
    p.add_argument("--set", action="append", default=[], help="config override, as for lmctl")
    args = p.parse_args()
    if args.label and args.kind != "constant":
        p.error("--label is for --kind constant")

    from lmctl import config as config_lib
    from lmctl import data, metrics
    from lmctl.errors import UserError
    from lmctl.rundir import prepare_output_dir, write_json

    cfg = config_lib.load_config(args.config, args.set, overrides_key="--set")
    if cfg.task != "text-classification":
        raise UserError(f"{args.config}: task {cfg.task}; these baselines are for text-classification")
    d = cfg.data
    if args.kind == "tfidf" and d.text_pair_column:
        raise UserError(f"{args.config}: data.text_pair_column is set; the tfidf baseline reads one text column")
    splits, fingerprints = data.load_splits(cfg, tuple(c for c in (d.text_column, d.text_pair_column) if c))
    train, evals = splits["train"], splits["eval"]
    if len(evals) != 1:
        raise UserError(f"{args.config}: give one validation file (data.validation_file), not {len(evals)}")
    dev = next(iter(evals.values()))
    columns = {"data.text_column": d.text_column, "data.label_column": d.label_column}
    data.check_columns(train, columns, str(d.train_file))
    data.check_columns(dev, columns, str(d.validation_file))
    names = list(d.label_names) if d.label_names else sorted({str(v) for v in train[d.label_column]})

    def label_id(value) -> int:
        return int(value) if d.label_names and not isinstance(value, str) else names.index(str(value))

    train_labels = [label_id(v) for v in train[d.label_column]]
    references = [label_id(v) for v in dev[d.label_column]]
    if args.kind == "constant":
        constant = names.index(args.label) if args.label else Counter(train_labels).most_common(1)[0][0]
        predictions, model, what = [constant] * len(references), f"constant:{names[constant]}", f"always '{names[constant]}'"
    else:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        # sublinear tf: a word said five times is not five times the evidence.
        vectorizer = TfidfVectorizer(analyzer=args.analyzer, ngram_range=(1, args.ngrams), sublinear_tf=True, min_df=2)
        features = vectorizer.fit_transform(train[d.text_column])
        classifier = LogisticRegression(C=args.C, max_iter=2000).fit(features, train_labels)
        predictions = classifier.predict(vectorizer.transform(dev[d.text_column])).tolist()
        model = f"tfidf:{args.analyzer}1-{args.ngrams},C={args.C:g}"
        what = f"TF-IDF {args.analyzer} 1-{args.ngrams}-grams ({len(vectorizer.vocabulary_):,}) + logistic regression"
    scores = metrics.classification_metrics(predictions, references, len(names))

    out = prepare_output_dir(args.output, overwrite=False)
    cfg.output_dir = str(out)
    cfg.model.name_or_path = model
    (out / "config.yaml").write_text(config_lib.dump(cfg), encoding="utf-8")
    write_json(out / "data.json", fingerprints)
    write_json(out / "metrics.json", {**{f"eval_{k}": v for k, v in scores.items()},
                                      "best_metric": cfg.training.metric_for_best or "accuracy", "parameters": 0})
    print(f"{out}: {what} on {len(references)} rows: " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))


if __name__ == "__main__":
    main()
