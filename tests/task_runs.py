"""One tiny trained run per task and predict mode, built once per session (the `task_runs`
fixture in conftest.py): what test_predictor.py and test_serve.py check the inference API and
the server against `lmctl predict` with."""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml

from helpers import cli, multilabel_rows, sentiment_rows, set_args, write_rows

SHORT = ["training.max_steps=3", "training.batch_size=4", "training.max_length=48", "training.eval_strategy=no",
         "training.logging_steps=1"]
FRUIT = ["apple", "pear", "plum", "fig", "lime"]


def _pairs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.choice(FRUIT), rng.choice(FRUIT)
        rows.append({"a": f"the {a} was ripe", "b": f"a {b} was ripe", "score": float(a == b) + rng.random() / 10})
    return rows


def _qa(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        fruit = rng.choice(FRUIT)
        context = f"The cat sat in the park. The fruit is {fruit}. The dog was happy."
        rows.append({"question": "what is the fruit?", "context": context,
                     "answers": {"text": [fruit], "answer_start": [context.index(fruit)]}})
    return rows


def _rerank(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for q in range(n):
        fruit = rng.choice(FRUIT)
        rows += [{"qid": f"q{q}", "query": fruit, "passage": f"the {p} was ripe", "label": int(p == fruit)}
                 for p in rng.sample(FRUIT, 3)]
    return rows


def _sort(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = rng.sample(FRUIT, 3)
        rows.append({"source": ", ".join(words), "target": ", ".join(sorted(words))})
    return rows


NAMES = ["Smith", "Jones", "Brown", "Taylor", "Wilson", "Evans", "Walker", "Green", "Hughes", "Wood"]
FIRST_NAMES = ["John", "Anna", "Peter", "Mary"]
CITIES = ["Paris", "London", "Berlin", "Madrid", "Rome", "Oslo", "Vienna", "Lisbon"]
OBJECTS = ["the movie", "a wooden chair", "the red bicycle", "an old map", "the garden", "the letter"]
VERBS = ["watched", "painted", "carried", "found", "sold", "cleaned"]


def ner_rows(n: int, seed: int) -> list[dict]:
    """{"tokens", "tags"} sentences whose entities context decides: a capitalised name after "Mr" is
    PER (a first name before it I-PER's B-PER), a city after "in" is LOC, and "in the park" is not."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words, tags = [], []

        def add(text: str, tag: str = "O", inside: str = "O") -> None:
            for i, word in enumerate(text.split()):
                words.append(word)
                tags.append(tag if i == 0 else inside)

        if rng.random() < 0.6:
            add("Mr")
            add(f"{rng.choice(FIRST_NAMES)} {rng.choice(NAMES)}" if rng.random() < 0.3 else rng.choice(NAMES),
                "B-PER", "I-PER")
        else:
            add(rng.choice(["the cat", "a dog", "my sister", "the chef"]))
        add(f"{rng.choice(VERBS)} {rng.choice(OBJECTS)} in")
        if rng.random() < 0.6:
            add(rng.choice(CITIES), "B-LOC")
        else:
            add(rng.choice(["the park", "the city", "the kitchen"]))
        add(".")
        rows.append({"tokens": words, "tags": tags})
    return rows


def write_conll(path: Path, rows: list[dict], columns: int = 2) -> Path:
    """Rows of ner_rows as a CoNLL file: one word a line (with a POS-like column when `columns` is 3),
    the tag last, a blank line after each sentence."""
    lines = []
    for row in rows:
        lines += [" ".join([w, "X"] if columns == 3 else [w]) + f" {t}" for w, t in zip(row["tokens"], row["tags"])]
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# task → (family, data section, rows(n, seed), modes)
FINETUNED = {
    "classification": ("bert", {"text_column": "sentence", "label_column": "label"},
                       lambda n, s: sentiment_rows(n, s), ["classify"]),
    "pairs-regression": ("gpt2", {"text_column": "a", "text_pair_column": "b", "label_column": "score"},
                         _pairs, ["classify"]),
    "multi-label-classification": ("bert", {"text_column": "text", "label_column": "label"}, multilabel_rows,
                                   ["classify"]),
    "question-answering": ("bert", {}, _qa, ["extract"]),
    "reranking": ("bert", {"text_column": "query", "text_pair_column": "passage", "label_column": "label",
                           "query_id_column": "qid"}, _rerank, ["rank"]),
    "seq2seq": ("t5", {"text_column": "source", "target_column": "target"}, _sort, ["generate"]),
    "token-classification": ("bert", {}, ner_rows, ["tag"]),
}
TASK_OF = {"classification": "text-classification", "pairs-regression": "text-classification"}
PRETRAINED = {"tiny-bert": ["fill-mask"], "tiny-gpt2": ["generate", "score"], "tiny-t5": ["generate"]}


def build_runs(tiny_models, pretrain_run, root: Path) -> dict[str, tuple[Path, Path, list[str]]]:
    """name → (run directory, labelled dev file, predict modes): one tiny run per task."""
    out = {}
    for name, (family, data, rows, modes) in FINETUNED.items():
        train = write_jsonl(root / f"{name}-train.jsonl", rows(24, 1))
        dev = write_jsonl(root / f"{name}-dev.jsonl", rows(6, 2))
        config = root / f"{name}.yaml"
        config.write_text(yaml.safe_dump({
            "task": TASK_OF.get(name, name), "model": {"name_or_path": str(tiny_models[family])},
            "data": {"train_file": str(train), "validation_file": str(dev), **data},
            "generation": {"max_new_tokens": 6}, "qa": {"doc_stride": 16}, "output_dir": str(root / name)}),
            encoding="utf-8")
        cli("finetune", config, *set_args(SHORT))
        out[name] = (root / name, dev, modes)
    for name, modes in PRETRAINED.items():
        run = pretrain_run(name)
        dev = write_rows(root / f"{name}-dev.jsonl", [{"sentence": r["sentence"]} for r in sentiment_rows(5, 3)])
        out[name] = (run, dev, modes)
    return out


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
