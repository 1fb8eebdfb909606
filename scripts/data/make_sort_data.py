#!/usr/bin/env python
"""Generate the bundled text-to-text sample: sort a comma-separated list of 3-5 words.

A task small models learn from scratch in a minute, where every output is either right
or wrong: exact match shows at once whether training, generation and decoding are wired
right. Each JSON line holds the task twice:

    source / target        for `task: seq2seq`   ("gnu, ant, eel" -> "ant, eel, gnu")
    prompt / completion    for `task: causal-lm` ("sort: gnu, ant, eel =" -> " ant, eel, gnu")

Each list holds distinct words of a vocabulary of ten; dev lists are all absent from
train, so a model must sort rather than remember. The commas are not decoration: a
Unigram tokenizer trained by `tokenizers` only seeds pieces that repeat among the
distinct words of its corpus, so with bare words ("gnu", "ant", ...) a tokenizer trained
on this data is all single characters; "gnu," beside "gnu" makes every word a piece.
The output is a pure function of the seed and sizes: rerunning reproduces the committed
files byte for byte.

    python -m scripts.data.make_sort_data [OUT_DIR] [--seed 0] [--train 2000] [--dev 200]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

WORDS = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "owl", "pig"]
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "configs" / "finetune" / "data"


def make_rows(n: int, seed: int, exclude: set[str] = frozenset(), min_words: int = 3, max_words: int = 5) -> list[dict]:
    """`n` distinct examples (none of whose sources is in `exclude`)."""
    rng = random.Random(seed)
    rows, seen = [], set(exclude)
    while len(rows) < n:
        words = rng.sample(WORDS, rng.randint(min_words, max_words))
        source = ", ".join(words)
        if source in seen:
            continue
        seen.add(source)
        target = ", ".join(sorted(words))
        rows.append({"source": source, "target": target, "prompt": f"sort: {source} =", "completion": f" {target}"})
    return rows


def make_splits(train: int, dev: int, seed: int) -> tuple[list[dict], list[dict]]:
    train_rows = make_rows(train, seed)
    dev_rows = make_rows(dev, seed + 1, exclude={r["source"] for r in train_rows})
    return train_rows, dev_rows


def write_jsonl(rows: list[dict], path: Path) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--dev", type=int, default=200)
    args = parser.parse_args()
    train_rows, dev_rows = make_splits(args.train, args.dev, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(train_rows, args.out / "sort_train.jsonl")
    write_jsonl(dev_rows, args.out / "sort_dev.jsonl")
    print(f"wrote {len(train_rows)} train and {len(dev_rows)} dev rows to {args.out}")


if __name__ == "__main__":
    main()
