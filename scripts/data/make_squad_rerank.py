#!/usr/bin/env python
"""Build a sentence-reranking data set from SQuAD v1.1 for `task: reranking`.

Each SQuAD question becomes one query; its candidates are the sentences of its paragraph,
and a sentence is relevant (label 1) iff it contains a gold answer span whole. The task
is answer-sentence selection (as in WikiQA / QNLI): the model must find the sentence that
answers the question, not just one that shares its words.

Train and dev questions come from different articles (the last --dev-articles articles of
the file are dev), so no paragraph is on both sides. The script prints two reference
points on dev with lmctl's own ranking metrics: a random order, and word overlap between
question and sentence (a lexical baseline a trained reranker should beat).

    python -m scripts.data.make_squad_rerank --squad ../shared/data/squad/dev-v1.1.json --out runs/data/squad-rerank
    lmctl finetune configs/finetune/rerank-minilm.yaml

Writes OUT/train.jsonl and OUT/dev.jsonl, one pair per line:
    {"qid": "56be4db0acb8001400a502ec", "question": "...", "sentence": "...", "label": 1}
The output is a pure function of the input file, the sizes and the seed.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

# A sentence ends at . ! or ? (plus closing quotes/brackets) followed by whitespace and a capital,
# digit or opening quote; the lookbehinds keep initials ("U.S. Army", "J. Smith") and common
# abbreviations in one sentence.
_ABBREVIATIONS = ("Mr", "Mrs", "Ms", "Dr", "St", "Jr", "Sr", "vs", "No", "Co", "Inc", "Ltd", "Gen", "Col", "Lt",
                  "Mt", "Ft", "Prof", "Rev", "approx", "ca", "c", "e.g", "i.e", "etc")
_BOUNDARY = re.compile(r"""(?<=[.!?])["'”’)\]]*\s+(?=["“'(\[]?[A-Z0-9])""")
_WORD = re.compile(r"\w+")
_STOP = set("""a an the of in on at to for from by with and or is was were are be been it its this that these
those what which who whom whose when where why how did do does as into than then there their they he she his her
him not no""".split())


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of `text`, covering it without the gaps' spaces."""
    spans, start = [], 0
    for m in _BOUNDARY.finditer(text):
        before = text[start:m.start()]
        last = before.rsplit(None, 1)[-1] if before.split() else ""
        word = last.rstrip(".!?\"'”’)]")
        if re.fullmatch(r"[A-Z]", word) or word in _ABBREVIATIONS or re.fullmatch(r"(?:[A-Za-z]\.)+[A-Za-z]", word):
            continue  # an initial or an abbreviation, not the end of a sentence
        end = m.start() + len(m.group(0).rstrip())
        spans.append((start, end))
        start = m.end()
    if start < len(text) and text[start:].strip():
        spans.append((start, len(text.rstrip())))
    return spans


def question_rows(qa: dict, context: str, spans: list[tuple[int, int]]) -> list[dict] | None:
    """One row per sentence; None when no gold answer lies inside a single sentence (split errors)."""
    relevant = set()
    for answer in qa["answers"]:
        a_start = answer["answer_start"]
        a_end = a_start + len(answer["text"])
        for i, (s, e) in enumerate(spans):
            if s <= a_start and a_end <= e:
                relevant.add(i)
    if not relevant:
        return None
    return [{"qid": qa["id"], "question": qa["question"].strip(), "sentence": context[s:e], "label": int(i in relevant)}
            for i, (s, e) in enumerate(spans)]


def build(squad: dict, dev_articles: int, seed: int, n_train: int, n_dev: int) -> tuple[list, list, dict]:
    articles = squad["data"]
    if not 0 < dev_articles < len(articles):
        raise SystemExit(f"--dev-articles must be between 1 and {len(articles) - 1}")
    pools: dict[str, list[list[dict]]] = {"train": [], "dev": []}
    stats = {"questions": 0, "skipped_answer_across_sentences": 0, "skipped_one_sentence_paragraph": 0}
    for a, article in enumerate(articles):
        side = "dev" if a >= len(articles) - dev_articles else "train"
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            spans = sentence_spans(context)
            for qa in paragraph["qas"]:
                stats["questions"] += 1
                if len(spans) < 2:
                    stats["skipped_one_sentence_paragraph"] += 1
                    continue
                rows = question_rows(qa, context, spans)
                if rows is None:
                    stats["skipped_answer_across_sentences"] += 1
                    continue
                pools[side].append(rows)
    out = {}
    for side, n in (("train", n_train), ("dev", n_dev)):
        groups = pools[side]
        # One generator per side: the dev questions do not change with --train-questions.
        rng = random.Random(f"{seed}-{side}")
        picked = sorted(rng.sample(range(len(groups)), min(n, len(groups))))  # keep file order
        out[side] = [row for i in picked for row in groups[i]]
        stats[f"{side}_pool_questions"] = len(groups)
    return out["train"], out["dev"], stats


def overlap_score(question: str, sentence: str) -> float:
    q = {w for w in _WORD.findall(question.lower()) if w not in _STOP}
    s = {w for w in _WORD.findall(sentence.lower()) if w not in _STOP}
    return len(q & s) / (len(q) or 1)


def baselines(rows: list[dict], k: int, seed: int) -> dict:
    """Random order (mean of 20 shuffles) and word overlap, scored by lmctl's ranking metrics."""
    from lmctl.metrics import ranking_metrics

    labels = [r["label"] for r in rows]
    qids = [r["qid"] for r in rows]
    rng = random.Random(seed)
    runs = [ranking_metrics([rng.random() for _ in rows], labels, qids, k) for _ in range(20)]
    random_means = {m: sum(r[m] for r in runs) / len(runs) for m in runs[0]}
    # Overlap counts tie often; a tiny penalty by position ranks the earlier sentence first
    # (the metric's pessimistic tie rule would sink this baseline further than it deserves).
    overlap = ranking_metrics([overlap_score(r["question"], r["sentence"]) - 1e-6 * i for i, r in enumerate(rows)],
                              labels, qids, k)
    return {"random": random_means, "word_overlap": overlap}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--squad", default="../shared/data/squad/dev-v1.1.json", help="SQuAD v1.1 JSON file")
    parser.add_argument("--out", default="runs/data/squad-rerank", help="output folder")
    parser.add_argument("--train-questions", type=int, default=1000)
    parser.add_argument("--dev-questions", type=int, default=500)
    parser.add_argument("--dev-articles", type=int, default=8)
    parser.add_argument("--k", type=int, default=10, help="cut-off of the baselines' MRR and nDCG")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    squad = json.loads(Path(args.squad).read_text(encoding="utf-8"))
    train, dev, stats = build(squad, args.dev_articles, args.seed, args.train_questions, args.dev_questions)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("dev", dev)):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                           encoding="utf-8")
        n_q = len({r["qid"] for r in rows})
        print(f"{out / name}.jsonl: {n_q} questions, {len(rows)} pairs, {sum(r['label'] for r in rows)} relevant")
    print("source:", json.dumps(stats))
    for name, values in baselines(dev, args.k, args.seed).items():
        print(f"dev baseline {name}:", json.dumps({m: round(v, 4) for m, v in values.items()}))


if __name__ == "__main__":
    main()
