#!/usr/bin/env python
"""Generate the bundled sentiment sample: short movie/product/restaurant reviews.

Writes train.tsv and dev.tsv (header ``sentence\\tlabel``, labels ``positive`` /
``negative``) and predict_sample.txt (unlabelled, one review per line).

The sentences come from templates, but a good share of them are negated
("not bad", "not great"), contrastive ("X was great, but Y ruined it") or
idiomatic ("I can't recommend it enough"), so counting positive and negative
words does not solve the task while a pretrained sentence encoder can. The
output is a pure function of the seed and sizes: rerunning reproduces the
committed files byte for byte.

    python -m scripts.data.make_sample_data [OUT_DIR] [--seed 0] [--train 800] [--dev 200]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

POSITIVE, NEGATIVE = "positive", "negative"

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "configs" / "finetune" / "data"

# Per domain: things reviewed, singular aspects of them, and what "doing it
# again" means there (for "I will never ... again" / "I will ... again").
DOMAINS = {
    "movie": {
        "items": ["movie", "film", "sequel", "documentary", "thriller", "comedy", "drama", "animated film", "horror film", "remake"],
        "aspects": ["acting", "plot", "script", "soundtrack", "ending", "pacing", "dialogue", "camera work", "lead performance", "humour"],
        "again": ["watch it again", "sit through it again", "see another film by this director"],
        "who": ["anyone who likes a good story", "my friends", "film fans", "families"],
        "prep": "in",
    },
    "product": {
        "items": ["headphones", "blender", "laptop", "phone case", "vacuum cleaner", "backpack", "coffee maker", "keyboard", "charger", "desk lamp"],
        "aspects": ["battery life", "build quality", "price", "design", "sound", "customer support", "packaging", "setup", "screen", "warranty"],
        "again": ["buy it again", "order from this brand again", "buy this model again"],
        "who": ["anyone on a budget", "my coworkers", "students", "anyone who travels"],
        "prep": "of",
    },
    "restaurant": {
        "items": ["restaurant", "bistro", "diner", "cafe", "pizza place", "sushi bar", "steakhouse", "food truck", "bakery", "noodle shop"],
        "aspects": ["service", "food", "pasta", "dessert", "staff", "atmosphere", "portion size", "wine list", "coffee", "wait"],
        "again": ["eat there again", "go back", "book a table there again"],
        "who": ["anyone in the neighbourhood", "my family", "couples", "coworkers looking for lunch"],
        "prep": "at",
    },
}

# Plural item names take "were"/"them"; everything else is singular.
PLURAL_ITEMS = {"headphones"}

POS_ADJ = [
    "great", "excellent", "wonderful", "superb", "fantastic", "delightful", "impressive", "solid",
    "charming", "lovely", "outstanding", "terrific", "enjoyable", "brilliant", "first-rate", "remarkable",
]
NEG_ADJ = [
    "terrible", "awful", "disappointing", "bland", "dull", "mediocre", "poor", "boring", "sloppy",
    "forgettable", "frustrating", "dreadful", "underwhelming", "painful", "lazy", "cheap",
]
POS_VERB = ["loved", "enjoyed", "adored", "really liked", "was impressed by"]
NEG_VERB = ["hated", "regretted", "disliked", "was annoyed by", "could not stand"]
# Same feelings, but for a plural subject ("we").
POS_VERB_WE = ["loved", "enjoyed", "adored", "really liked", "were impressed by"]
NEG_VERB_WE = ["hated", "disliked", "were annoyed by", "could not stand", "complained about"]
OPENERS = ["", "", "", "Honestly, ", "Overall, ", "To be fair, ", "In short, ", "Frankly, ", "Well, "]
INTENS = ["", "", "really ", "very ", "quite ", "pretty ", "genuinely ", "truly "]


def _be(item: str) -> str:
    return "were" if item in PLURAL_ITEMS else "was"


def _it(item: str) -> str:
    return "them" if item in PLURAL_ITEMS else "it"


def _templates(rng: random.Random):
    """Template functions, each drawing words and returning (sentence, label)."""

    def pick():
        d = DOMAINS[rng.choice(sorted(DOMAINS))]
        item = rng.choice(d["items"])
        a1, a2 = rng.sample(d["aspects"], 2)
        return d, item, a1, a2

    def plain():
        _, item, _, _ = pick()
        if rng.random() < 0.5:
            return f"the {item} {_be(item)} {rng.choice(INTENS)}{rng.choice(POS_ADJ)}.", POSITIVE
        return f"the {item} {_be(item)} {rng.choice(INTENS)}{rng.choice(NEG_ADJ)}.", NEGATIVE

    def aspect_plain():
        _, item, a1, _ = pick()
        if rng.random() < 0.5:
            return f"the {a1} of this {item} was {rng.choice(POS_ADJ)}.", POSITIVE
        return f"the {a1} of this {item} was {rng.choice(NEG_ADJ)}.", NEGATIVE

    def negated():
        # The sentiment word and the label disagree: the encoder has to read "not".
        _, item, a1, _ = pick()
        if rng.random() < 0.5:
            neg = rng.choice(["not bad", "not bad at all", "not terrible", "not disappointing", "far from boring", "not boring for a second"])
            subj = rng.choice([f"the {item} {_be(item)}", f"the {a1} was"])
            return f"{subj} {neg}.", POSITIVE
        pos = rng.choice(["not great", "not good", "not worth it", "not impressive", "far from perfect", "not very good", "not as good as I hoped"])
        subj = rng.choice([f"the {item} {_be(item)}", f"the {a1} was"])
        return f"{subj} {pos}.", NEGATIVE

    def contrast():
        # Both polarities appear; the clause after "but"/"despite" decides.
        _, item, a1, a2 = pick()
        p, n = rng.choice(POS_ADJ), rng.choice(NEG_ADJ)
        r = rng.randrange(4)
        if r == 0:
            return f"the {a1} was {p}, but the {a2} was {n} and ruined the whole thing.", NEGATIVE
        if r == 1:
            return f"the {a1} was {n}, but the {a2} more than made up for it.", POSITIVE
        if r == 2:
            return f"despite the {n} {a1}, I {rng.choice(POS_VERB)} this {item}.", POSITIVE
        return f"despite the {p} {a1}, I {rng.choice(NEG_VERB)} this {item}.", NEGATIVE

    def expectation():
        _, item, _, _ = pick()
        r = rng.randrange(4)
        if r == 0:
            return f"I expected to hate this {item}, but it turned out {rng.choice(POS_ADJ)}.", POSITIVE
        if r == 1:
            return f"I had high hopes for this {item}, but it was {rng.choice(NEG_ADJ)}.", NEGATIVE
        if r == 2:
            return f"I wanted to like this {item}, I really did.", NEGATIVE
        return f"I did not expect much from this {item}, and it surprised me in the best way.", POSITIVE

    def recommend():
        d, item, _, _ = pick()
        who = rng.choice(d["who"])
        r = rng.randrange(5)
        if r == 0:
            return f"I would {rng.choice(['definitely ', 'happily ', ''])}recommend this {item} to {who}.", POSITIVE
        if r == 1:
            return f"I would {rng.choice(['not', 'never'])} recommend this {item} to {who}.", NEGATIVE
        if r == 2:
            return f"I can't recommend this {item} enough.", POSITIVE
        if r == 3:
            return f"I can't recommend this {item} to {who}.", NEGATIVE
        return f"hard to recommend this {item} to {who}.", NEGATIVE

    def again():
        d, _, _, _ = pick()
        act = rng.choice(d["again"])
        if rng.random() < 0.5:
            return f"I will {rng.choice(['definitely', 'happily', 'gladly'])} {act}.", POSITIVE
        return f"I will {rng.choice(['never', 'not'])} {act}.", NEGATIVE

    def idiom():
        _, item, a1, _ = pick()
        it = _it(item)
        r = rng.randrange(6)
        if r == 0:
            return f"the {item} {_be(item)} worth every penny.", POSITIVE
        if r == 1:
            return f"the {item} {_be(item)} a waste of {rng.choice(['money', 'time', 'an evening'])}.", NEGATIVE
        if r == 2:
            return f"the {item} {_be(item)} not a waste of {rng.choice(['money', 'time'])} at all.", POSITIVE
        if r == 3:
            return f"nothing about the {a1} was {rng.choice(NEG_ADJ)}.", POSITIVE
        if r == 4:
            return f"nothing about the {a1} was {rng.choice(POS_ADJ)}.", NEGATIVE
        return rng.choice([
            (f"I keep coming back to {it}.", POSITIVE),
            (f"I gave up on {it} after a week.", NEGATIVE),
            (f"the {item} did exactly what I hoped.", POSITIVE),
            (f"the {item} fell apart in every way that matters.", NEGATIVE),
        ])

    def comparison():
        _, item, a1, _ = pick()
        if rng.random() < 0.5:
            return rng.choice([
                f"the {item} {_be(item)} much better than I expected.",
                f"the {a1} was better than anything else I have tried.",
                f"could not have asked for a better {item}.",
            ]), POSITIVE
        return rng.choice([
            f"the {item} {_be(item)} much worse than I expected.",
            f"the {a1} was worse than anything else I have tried.",
            f"could not have asked for a worse {item}.",
        ]), NEGATIVE

    def feeling():
        d, item, a1, _ = pick()
        if rng.random() < 0.5:
            return f"we {rng.choice(POS_VERB_WE)} the {a1} {d['prep']} this {item}.", POSITIVE
        return f"we {rng.choice(NEG_VERB_WE)} the {a1} {d['prep']} this {item}.", NEGATIVE

    # Plain sentences are the minority on purpose; weights sum to 1.
    return [
        (plain, 0.10), (aspect_plain, 0.10), (negated, 0.16), (contrast, 0.18),
        (expectation, 0.08), (recommend, 0.10), (again, 0.07), (idiom, 0.11),
        (comparison, 0.05), (feeling, 0.05),
    ]


def _finish(sentence: str, rng: random.Random) -> str:
    s = rng.choice(OPENERS) + sentence
    s = s[0].upper() + s[1:]
    # Written into a TSV read with quoting off, so these must never appear.
    assert "\t" not in s and "\n" not in s and "\r" not in s, s
    return s


def generate(n_train: int = 800, n_dev: int = 200, seed: int = 0) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Balanced, de-duplicated (train, dev) rows; no sentence is in both splits."""
    rng = random.Random(seed)
    templates = _templates(rng)
    funcs = [f for f, _ in templates]
    weights = [w for _, w in templates]
    total = n_train + n_dev
    want = {POSITIVE: total // 2, NEGATIVE: total - total // 2}
    pools: dict[str, list[str]] = {POSITIVE: [], NEGATIVE: []}
    # Case-insensitive so "Overall, the ..." and "overall, the ..." count once.
    seen: set[str] = set()
    attempts = 0
    while any(len(pools[k]) < want[k] for k in pools):
        attempts += 1
        if attempts > 200 * total:
            raise RuntimeError("templates cannot produce enough distinct sentences; add vocabulary")
        func = rng.choices(funcs, weights)[0]
        sentence, label = func()
        sentence = _finish(sentence, rng)
        key = sentence.lower()
        if key in seen or len(pools[label]) >= want[label]:
            continue
        seen.add(key)
        pools[label].append(sentence)

    train: list[tuple[str, str]] = []
    dev: list[tuple[str, str]] = []
    for label in (POSITIVE, NEGATIVE):
        rows = [(s, label) for s in pools[label]]
        k = round(len(rows) * n_dev / total)
        dev += rows[:k]
        train += rows[k:]
    rng.shuffle(train)
    rng.shuffle(dev)
    return train, dev


# Hand-written, not templated: the predict demo should show the model on
# phrasing it has not seen in training.
PREDICT_SAMPLE = [
    "The pasta arrived cold and the waiter ignored us for twenty minutes.",
    "Easily the best pair of headphones I have owned, and the battery lasts for days.",
    "The movie starts slowly, but the last hour is absolutely gripping.",
    "Not bad for the price, though the keyboard feels a little flimsy.",
    "I wanted a relaxing dinner and got a noisy room and burnt pizza.",
    "The documentary was informative but far too long and rather dull.",
    "Our new coffee maker is quiet, quick and makes a lovely cup every morning.",
    "I returned the laptop after two days because the screen kept flickering.",
]


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        f.write("sentence\tlabel\n")
        for sentence, label in rows:
            f.write(f"{sentence}\t{label}\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", nargs="?", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", type=int, default=800, help="training rows")
    ap.add_argument("--dev", type=int, default=200, help="dev rows")
    args = ap.parse_args(argv)

    train, dev = generate(args.train, args.dev, args.seed)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_tsv(args.out_dir / "train.tsv", train)
    write_tsv(args.out_dir / "dev.tsv", dev)
    (args.out_dir / "predict_sample.txt").write_text("\n".join(PREDICT_SAMPLE) + "\n", encoding="utf-8")
    print(f"wrote {len(train)} train, {len(dev)} dev, {len(PREDICT_SAMPLE)} predict rows to {args.out_dir}")


if __name__ == "__main__":
    main()
