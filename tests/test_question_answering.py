"""Extractive question answering: SQuAD flattening, answer extraction, windows, and a tiny BERT
that learns a generated task through `lmctl finetune / evaluate / predict`.

The answer extraction (`extract_answers`) is checked on hand-made offsets and logits where the
right span is known; the windows on the tiny WordPiece tokenizer (tests/tiny_models.py); the
whole path (labels → training → logits → offsets → SQuAD EM/F1) on a generated task a 0.04M
model learns in seconds: "The code is <adjective> <number>." hidden among filler sentences
that use neither, some contexts long enough that the answer lies past the first window.
"""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import Recorder, cli
from lmctl.errors import UserError
from tiny_models import ADJECTIVES, ADVERBS, OBJECTS, PLACES, SUBJECTS, VERBS


def qa_config(**sections):
    from lmctl import config as config_lib

    raw = {"task": "question-answering", "training": {"max_length": 32}, "qa": {"doc_stride": 8}}
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return config_lib.validate(raw)


def make_task(**sections):
    from lmctl.tasks.question_answering import QuestionAnsweringTask

    console = Recorder()
    return QuestionAnsweringTask(qa_config(**sections), console), console


# ---- generated data ------------------------------------------------------------------------------

QUESTION = "What is the code?"


def filler(rng: random.Random) -> str:
    # No adjectives, no numbers: only the code has them.
    s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(ADVERBS + PLACES)}."
    return s[0].upper() + s[1:]


def code_row(rng: random.Random, sentences: int, position: int | None = None) -> dict:
    """A context of `sentences` filler sentences with "The code is <adjective> <number>." inserted."""
    code = f"{rng.choice(ADJECTIVES)} {rng.randint(10, 99)}"
    parts = [filler(rng) for _ in range(sentences)]
    parts.insert(rng.randint(0, sentences) if position is None else position, f"The code is {code}.")
    context = " ".join(parts)
    start = context.index(f"The code is {code}.") + len("The code is ")
    return {"question": QUESTION, "context": context, "answers": {"text": [code], "answer_start": [start]}}


def squad_file(path: Path, articles: list[list[dict]]) -> Path:
    """Rows grouped into articles → a SQuAD v1.1 JSON file (each row its own paragraph)."""
    data = [{"title": f"Article {a}", "paragraphs": [
        {"context": r["context"], "qas": [{"id": f"q{a}-{i}", "question": r["question"],
                                           "answers": [{"text": t, "answer_start": s} for t, s in
                                                       zip(r["answers"]["text"], r["answers"]["answer_start"])]}]}
        for i, r in enumerate(rows)]} for a, rows in enumerate(articles)]
    path.write_text(json.dumps({"version": "1.1", "data": data}), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        # In csv the answers cell is the dict written as JSON text.
        writer.writerows([{k: json.dumps(v) if isinstance(v, dict) else v for k, v in r.items()} for r in rows])
    return path


# ---- SQuAD JSON → one row per question -----------------------------------------------------------

SQUAD = {"version": "1.1", "data": [
    {"title": "Alpha", "paragraphs": [
        {"context": "Alpha is red. Beta is blue.", "qas": [
            {"id": "a1", "question": "What is Alpha?",
             "answers": [{"text": "red", "answer_start": 9}, {"text": "red.", "answer_start": 9}]},
            {"id": "a2", "question": "What is Beta?", "answers": [{"text": "blue", "answer_start": 22}]}]},
        {"context": "Gamma is green.", "qas": [
            {"id": "a3", "question": "What is Gamma?", "answers": [{"text": "green", "answer_start": 9}]}]}]},
    {"title": "Delta", "paragraphs": [
        {"context": "Delta is gold.", "qas": [
            {"id": "d1", "question": "What is Delta?", "answers": [{"text": "gold", "answer_start": 9}]}]}]},
]}


def test_squad_json_flattens_to_one_row_per_question(tmp_path):
    from lmctl.data import read_table

    path = tmp_path / "squad.json"
    path.write_text(json.dumps(SQUAD), encoding="utf-8")
    ds = read_table(path, "data.train_file", ("question", "context"))
    assert ds.column_names == ["id", "title", "context", "question", "answers"]
    assert ds["id"] == ["a1", "a2", "a3", "d1"]  # file order
    assert ds["title"] == ["Alpha", "Alpha", "Alpha", "Delta"]
    assert ds["context"] == ["Alpha is red. Beta is blue."] * 2 + ["Gamma is green.", "Delta is gold."]
    assert ds["question"][2] == "What is Gamma?"
    assert ds[0]["answers"] == {"text": ["red", "red."], "answer_start": [9, 9]}
    assert ds[1]["answers"] == {"text": ["blue"], "answer_start": [22]}


def test_squad_v2_json_keeps_unanswerable_questions(tmp_path):
    from lmctl.data import read_table

    v2 = json.loads(json.dumps(SQUAD))
    qas = v2["data"][1]["paragraphs"][0]["qas"]
    qas[0]["is_impossible"] = False
    qas.append({"id": "d2", "question": "Who owns Delta?", "answers": [], "is_impossible": True})
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(v2), encoding="utf-8")
    ds = read_table(path, "data.train_file", ("question", "context"))
    # Questions without the key are answerable: one bool column, no missing values.
    assert ds["is_impossible"] == [False, False, False, False, True]
    assert ds[4]["answers"] == {"text": [], "answer_start": []}


# ---- extract_answers on hand-made windows ----------------------------------------------------------

CONTEXT = "The code is cold noisy."
# [CLS] what code ? [SEP] The code is cold noisy . [SEP]: only context tokens have offsets.
OFFSETS = [None, None, None, None, None, [0, 3], [4, 8], [9, 11], [12, 16], [17, 22], [22, 23], None]
COLD, NOISY, DOT, THE = 8, 9, 10, 5


def logits(peaks: dict[int, float], n: int = len(OFFSETS), base: float = -10.0) -> np.ndarray:
    x = np.full(n, base)
    for i, v in peaks.items():
        x[i] = v
    return x


def extract(starts, ends, offsets=OFFSETS, context=CONTEXT, **kwargs):
    from lmctl.tasks.question_answering import extract_answers

    return extract_answers([context], [0], [offsets], [starts], [ends], **kwargs)[0]


def test_offsets_give_the_exact_character_span():
    answer = extract(logits({COLD: 5}), logits({NOISY: 5}))
    assert answer["answer"] == "cold noisy"
    assert (answer["start"], answer["end"]) == (12, 22)
    assert CONTEXT[answer["start"]:answer["end"]] == answer["answer"]


def test_score_is_the_probability_among_the_n_best_spans():
    # n_best 2: spans (cold, noisy) 2+2 and (The, noisy) 1+2; (cold, The) ends before it starts.
    answer = extract(logits({COLD: 2, THE: 1}), logits({NOISY: 2, THE: 1}), n_best=2)
    assert answer["answer"] == "cold noisy"
    assert answer["score"] == pytest.approx(1 / (1 + math.exp(-1)), abs=1e-6)
    # One candidate: certainty.
    assert extract(logits({COLD: 2}), logits({NOISY: 2}), n_best=1)["score"] == 1.0


def test_n_best_skips_a_better_scoring_invalid_span():
    # The top start (noisy) and top end (cold) form a backwards span, worth 10: rejected.
    answer = extract(logits({NOISY: 5, COLD: 4.5}), logits({COLD: 5, DOT: 3}))
    assert answer["answer"] == "cold"  # cold..cold = 9.5 beats noisy..'.' = 8
    assert (answer["start"], answer["end"]) == (12, 16)


def test_max_answer_length_is_respected():
    starts, ends = logits({THE: 5, COLD: 4}), logits({NOISY: 5})
    # "The code is cold noisy" is 5 tokens, worth 10; cold..noisy (2 tokens) is worth 9.
    assert extract(starts, ends, max_answer_length=5)["answer"] == "The code is cold noisy"
    assert extract(starts, ends, max_answer_length=4)["answer"] == "cold noisy"


def test_spans_never_cross_into_the_question_or_special_tokens():
    # The best logits sit on a question token and on the final [SEP]: both have no offsets.
    starts, ends = logits({2: 9, 7: 1}), logits({11: 9, 4: 8, 7: 1})
    answer = extract(starts, ends)
    assert answer["answer"] == "is"
    # Logits beyond the offsets (batch padding) are ignored, however large.
    padded = extract(np.append(starts, [50.0, 50.0]), np.append(ends, [50.0, 50.0]))
    assert padded["answer"] == "is"


def test_v2_null_answer_is_chosen_by_threshold():
    # Best span: cold..noisy = 10. No-answer (CLS, index 0): 6 + 6 = 12, a margin of 2.
    starts, ends = logits({0: 6, COLD: 5}), logits({0: 6, NOISY: 5})
    null = extract(starts, ends, allow_null=True, null_threshold=0.0)
    assert (null["answer"], null["start"], null["end"]) == ("", None, None)
    assert 0.5 < null["score"] <= 1.0
    assert extract(starts, ends, allow_null=True, null_threshold=2.5)["answer"] == "cold noisy"
    # SQuAD v1: the CLS score plays no part.
    assert extract(starts, ends, allow_null=False)["answer"] == "cold noisy"


def test_windows_are_gathered_per_example_in_example_order():
    from lmctl.tasks.question_answering import extract_answers

    other = "Nothing here but words."
    other_offsets = [None, None, [0, 7], [8, 12], [13, 16], [17, 22], [22, 23], None]
    # Windows of example 0 are rows 0 and 2 (row order is whatever encode produced); its answer is
    # in the second window, which scores higher than anything in the first.
    first = [None] * 5 + [[0, 3], [4, 8], [9, 11]] + [None] * 4
    second = [None] * 5 + [None, [4, 8], [9, 11], [12, 16], [17, 22], [22, 23], None]
    answers = extract_answers(
        [CONTEXT, other], [0, 1, 0], [first, other_offsets, second],
        [logits({6: 3}), logits({3: 4}, n=8), logits({COLD: 6, 6: 1})],
        [logits({7: 3}), logits({5: 4}, n=8), logits({NOISY: 6, 7: 1})], n_best=3)
    assert [a["answer"] for a in answers] == ["cold noisy", "here but words"]
    assert (answers[0]["start"], answers[0]["end"]) == (12, 22)
    assert other[answers[1]["start"]:answers[1]["end"]] == "here but words"
    # A span seen in two overlapping windows counts once (at its better score): in example 0,
    # "code is" (2 + 2 in the second window, 3 + 3 in the first) is one candidate of the three.
    spans = [12, 3 + 3, 1 + 6]  # cold..noisy, code..is (best window), code..noisy
    expected = math.exp(12) / sum(math.exp(s) for s in spans)
    assert answers[0]["score"] == pytest.approx(expected, abs=1e-6)


# ---- windows on a real tokenizer ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def bert_tokenizer(tiny_models):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_models["bert"])


def dataset(rows):
    from datasets import Dataset

    return Dataset.from_list(rows)


def fake_outputs(encoded, peaks: dict[int, tuple[int, int]]) -> dict:
    """Logits of a perfect model: for window f, start and end peaks at peaks[f]."""
    starts, ends = np.empty(len(encoded), dtype=object), np.empty(len(encoded), dtype=object)
    for f, row in enumerate(encoded):
        s, e = peaks.get(f, (row["cls_index"], row["cls_index"]))
        starts[f], ends[f] = logits({s: 5.0}, n=len(row["input_ids"])), logits({e: 5.0}, n=len(row["input_ids"]))
    return {"start_logits": starts, "end_logits": ends}


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_answer_in_a_later_window_is_labelled_and_found(bert_tokenizer, padding_side):
    """Right-padding models read question then context; left-padding ones (XLNet) context first."""
    import copy

    tokenizer = copy.deepcopy(bert_tokenizer)
    tokenizer.padding_side = padding_side
    rng = random.Random(3)
    row = code_row(rng, sentences=6, position=5)  # the code sentence near the end of a long context
    task, console = make_task()
    task = task.bind(tokenizer)
    train = task.encode(dataset([row]), "train", "train.jsonl")
    assert len(train) >= 3, "a context of ~50 tokens in 32-token windows makes several windows"
    assert console.logs == [f"train.jsonl: 1 of 1 question+context pairs did not fit in one window of 32 tokens "
                            f"and were split into overlapping windows ({len(train)} windows in all, qa.doc_stride=8)"]
    labelled = [f for f in range(len(train)) if train[f]["start_positions"] != 0]
    assert labelled and labelled[0] > 0, "the answer is not in the first window"
    for f in range(len(train)):
        s, e = train[f]["start_positions"], train[f]["end_positions"]
        if f in labelled:
            assert tokenizer.decode(train[f]["input_ids"][s:e + 1]) == row["answers"]["text"][0]
        else:
            assert (s, e) == (0, 0), "windows without the answer point at [CLS]"

    encoded = task.encode(dataset([row]), "eval", "dev.jsonl")
    assert len(encoded) == len(train) and set(encoded["example"]) == {0}
    # Consecutive windows overlap by doc_stride tokens and together cover the whole context.
    ends = [max(o[1] for o in offs if o) for offs in encoded["offsets"]]
    assert ends == sorted(ends) and ends[-1] == len(row["context"])
    # A perfect model's logits on the labelled window → the exact characters of the answer.
    f = labelled[0]
    outputs = fake_outputs(encoded, {f: (train[f]["start_positions"], train[f]["end_positions"])})
    [record] = task.predict_records(outputs, encoded)
    start = row["answers"]["answer_start"][0]
    assert record["answer"] == row["answers"]["text"][0]
    assert (record["start"], record["end"]) == (start, start + len(record["answer"]))
    assert task.compute_metrics(outputs, encoded) == {"exact_match": 100.0, "f1": 100.0}
    assert task.count_examples(encoded) == 1
    # Batches pad on the right whatever the tokenizer does, so logit t is token t of the offsets.
    batch = task.eval_collate([dict(encoded[0]), dict(encoded[len(encoded) - 1])])
    assert batch["attention_mask"][:, 0].all() and not batch["attention_mask"][:, -1].all()
    assert set(batch) <= {"input_ids", "attention_mask", "token_type_ids"}


def test_the_trainer_reference_makes_lmctl_windows_labels_and_split(bert_tokenizer, tmp_path):
    """docs/results.md holds lmctl's SQuAD figure against scripts/bench/squad_trainer.py (run_qa's
    processing under a plain Trainer); the comparison is fair only if both see the same windows,
    the same answer labels and the same held-out articles."""
    from lmctl import config as config_lib
    from lmctl.data import load_splits
    from scripts.bench import squad_trainer

    rng = random.Random(5)
    articles = [[code_row(rng, rng.randint(1, 7)) for _ in range(4)] for _ in range(4)]
    path = squad_file(tmp_path / "codes.json", articles)
    args = squad_trainer.parse_args(["--max-length", "32", "--stride", "8", "--held-out-articles", "1"])
    train_rows, eval_rows = squad_trainer.split(str(path), args.held_out_articles)

    cfg = config_lib.validate({"task": "question-answering", "data": {"train_file": str(path), "split_by": "title",
                                                                      "validation_split": 1}})
    splits, _ = load_splits(cfg, ("question", "context"))
    assert [r["id"] for r in train_rows] == splits["train"]["id"]
    assert [r["id"] for r in eval_rows] == splits["eval"][None]["id"]

    task, _ = make_task()
    task = task.bind(bert_tokenizer)
    ours = task.encode(dataset(train_rows), "train", "train.json")
    ref = dataset(train_rows).map(squad_trainer.train_features, batched=True, remove_columns=list(train_rows[0]),
                                  fn_kwargs=dict(tokenizer=bert_tokenizer, args=args))
    assert len(ref) > len(train_rows), "some contexts need several windows"
    assert ref["start_positions"] == ours["start_positions"] and ref["end_positions"] == ours["end_positions"]

    # A perfect model's logits (peaks on the labels) → the gold answers through the reference's
    # n-best search, scored 100 by the same metric lmctl reports.
    feats = dataset(eval_rows).map(squad_trainer.eval_features, batched=True, remove_columns=list(eval_rows[0]),
                                   fn_kwargs=dict(tokenizer=bert_tokenizer, args=args))
    labels = task.encode(dataset(eval_rows), "train", "dev.json")
    n = len(feats[0]["input_ids"])
    starts = np.stack([logits({s: 5.0}, n=n) for s in labels["start_positions"]])
    ends = np.stack([logits({e: 5.0}, n=n) for e in labels["end_positions"]])
    answers = squad_trainer.best_answers(dataset(eval_rows), feats, starts, ends, args)
    assert [answers[r["id"]] for r in eval_rows] == [r["answers"]["text"][0] for r in eval_rows]


def test_a_question_longer_than_the_window_is_cut_and_reported(bert_tokenizer):
    rng = random.Random(4)
    row = code_row(rng, sentences=2)
    long_row = {**row, "question": " ".join(["what is the code"] * 12) + "?"}  # ~60 tokens
    task, console = make_task()
    task = task.bind(bert_tokenizer)
    encoded = task.encode(dataset([row, long_row]), "eval", "dev.jsonl")
    # 32 tokens - 3 special - doc_stride 8 - 1: a question keeps 20 tokens, so windows move forward.
    assert console.warnings == ["dev.jsonl: 1 of 2 questions (50.0%) are longer than 20 tokens "
                                "(training.max_length - qa.doc_stride - special tokens) and were cut to that length"]
    for ids, offs in zip(encoded["input_ids"], encoded["offsets"]):
        assert len(ids) <= 32 and sum(o is not None for o in offs) >= 9


def test_answer_longer_than_a_window_is_reported(bert_tokenizer):
    context = "The code is " + " ".join(["quiet"] * 40) + "."
    row = {"question": QUESTION, "context": context,
           "answers": {"text": [context[12:-1]], "answer_start": [12]}}
    task, console = make_task()
    task = task.bind(bert_tokenizer)
    train = task.encode(dataset([row]), "train", "train.jsonl")
    assert set(train["start_positions"]) == {0}
    assert console.warnings == ["train.jsonl: 1 of 1 answers are longer than the context part of a window "
                                "(training.max_length=32) and fit in no window; those questions train as 'no answer'"]


def test_doc_stride_that_leaves_no_room_is_refused(bert_tokenizer):
    task = make_task(qa={"doc_stride": 28})[0].bind(bert_tokenizer)
    with pytest.raises(UserError, match=r"qa.doc_stride: 28 leaves no room for the question .* below 28"):
        task.encode(dataset([code_row(random.Random(5), 1)]), "train", "train.jsonl")


def test_unanswerable_questions_need_version_2(bert_tokenizer):
    row = code_row(random.Random(6), 1)
    rows = [row, {**row, "answers": {"text": [], "answer_start": []}}]
    task = make_task()[0].bind(bert_tokenizer)
    with pytest.raises(UserError, match=r"train.jsonl: row 2: no answer; .* qa.version_2_with_negative: true"):
        task.encode(dataset(rows), "train", "train.jsonl")
    task = make_task(qa={"version_2_with_negative": True})[0].bind(bert_tokenizer)
    train = task.encode(dataset(rows), "train", "train.jsonl")
    assert (train[1]["start_positions"], train[1]["end_positions"]) == (0, 0)
    assert train[0]["start_positions"] > 0


# ---- bad input: one clear line ---------------------------------------------------------------------


@pytest.fixture
def bad_input(tiny_models, tmp_path):
    """Runs `lmctl finetune` on a train file with one fault; returns the single error line."""

    def run(rows: list[dict], suffix: str = ".jsonl") -> str:
        train = tmp_path / f"train{suffix}"
        (write_csv if suffix == ".csv" else write_jsonl)(train, rows)
        dev = write_jsonl(tmp_path / "dev.jsonl", [code_row(random.Random(1), 1)])
        config = tmp_path / "qa.yaml"
        config.write_text(yaml.safe_dump({
            "task": "question-answering", "model": {"name_or_path": str(tiny_models["bert"])},
            "data": {"train_file": str(train), "validation_file": str(dev)},
            "training": {"max_length": 64}, "qa": {"doc_stride": 16}, "output_dir": str(tmp_path / "out")}))
        result = cli("finetune", config, code=2)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
        return lines[0]

    return run


def good_rows(n: int = 3) -> list[dict]:
    rng = random.Random(7)
    return [code_row(rng, 2) for _ in range(n)]


def test_missing_answers_column_is_named(bad_input):
    rows = [{k: v for k, v in r.items() if k != "answers"} for r in good_rows()]
    line = bad_input(rows)
    assert "no column 'answers' (from data.answers_column)" in line and "Set data.answers_column" in line


def test_missing_context_column_is_named(bad_input):
    rows = [{"question": r["question"], "passage": r["context"], "answers": r["answers"]} for r in good_rows()]
    assert "no column 'context' (from data.context_column)" in bad_input(rows)


def test_answer_start_that_does_not_match_names_the_row(bad_input):
    rows = good_rows()
    rows[1]["answers"]["answer_start"][0] += 2
    line = bad_input(rows)
    text, start = rows[1]["answers"]["text"][0], rows[1]["answers"]["answer_start"][0]
    assert f"row 2: answer '{text}' is not at answer_start {start} of the context" in line
    assert f"the text occurs at offset {start - 2}" in line


def test_empty_context_names_the_row(bad_input):
    rows = good_rows()
    rows[2]["context"] = "   "
    assert "row 3: empty text in column 'context'" in bad_input(rows)


def test_csv_answers_cell_that_is_not_json_names_the_row(bad_input):
    rows = [{**r, "answers": json.dumps(r["answers"])} for r in good_rows()]
    rows[0]["answers"] = "cold noisy"
    line = bad_input(rows, ".csv")
    assert "row 1: column 'answers' holds 'cold noisy', which is not JSON" in line


# ---- a tiny BERT learns the generated task: finetune, evaluate, predict ------------------------------

ARTICLES, HELD_OUT, PER_ARTICLE = 12, 2, 30


@pytest.fixture(scope="module")
def learned(tiny_models, tmp_path_factory, one_thread) -> dict:
    """One run on a generated SQuAD file of 12 articles; the last 2 are held out (split_by: title)."""
    root = tmp_path_factory.mktemp("qa")
    rng = random.Random(0)
    # 1 to 7 filler sentences: contexts of ~15 to ~75 tokens against 64-token windows.
    articles = [[code_row(rng, rng.randint(1, 7)) for _ in range(PER_ARTICLE)] for _ in range(ARTICLES)]
    # The held-out articles also get contexts whose answer is past the first window.
    for rows in articles[-HELD_OUT:]:
        rows[:5] = [code_row(rng, 7, position=7) for _ in range(5)]
    train = squad_file(root / "codes.json", articles)
    config = root / "qa.yaml"
    config.write_text(yaml.safe_dump({
        "task": "question-answering", "model": {"name_or_path": str(tiny_models["bert"])},
        "data": {"train_file": str(train), "split_by": "title", "validation_split": HELD_OUT},
        # Measured over seeds 11-13: 100 EM after 2 of these 4 epochs (two adjectives instead of
        # adjective + number stalled at 75-87 EM); a tiny random model needs the high learning rate.
        "training": {"num_epochs": 4, "batch_size": 16, "learning_rate": 3.0e-3, "warmup_ratio": 0.1,
                     "max_length": 64, "logging_steps": 5, "seed": 13},
        "qa": {"doc_stride": 16},
        "output_dir": str(root / "run"),
    }))
    result = cli("finetune", config)
    held_out = [r for rows in articles[-HELD_OUT:] for r in rows]
    return {"root": root, "run": root / "run", "result": result, "held_out": held_out, "train_file": train}


def test_finetune_learns_and_holds_out_whole_articles(learned):
    run = learned["run"]
    data = json.loads((run / "data.json").read_text())
    assert data["rows"] == {"train": (ARTICLES - HELD_OUT) * PER_ARTICLE, "validation": HELD_OUT * PER_ARTICLE}
    assert data["split_by"] == "title"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_metric"] == "f1"
    # Chance is near 0 (one span of 2-3 tokens among ~15-75 context tokens); measured 100.
    assert metrics["eval_exact_match"] >= 90 and metrics["eval_f1"] >= 90, metrics
    losses = [r["loss"] for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines()) if "loss" in r]
    assert np.mean(losses[-5:]) < 0.2 * np.mean(losses[:5]), (losses[:5], losses[-5:])
    # Windows were reported for both splits.
    assert "were split into overlapping windows" in learned["result"].stderr
    from transformers import AutoModelForQuestionAnswering

    assert type(AutoModelForQuestionAnswering.from_pretrained(run)).__name__ == "BertForQuestionAnswering"


def test_evaluate_rescores_a_flat_csv_to_the_same_numbers(learned, tmp_path):
    dev = write_csv(tmp_path / "dev.csv", learned["held_out"])
    out = tmp_path / "eval.json"
    result = cli("evaluate", "--model", learned["run"], "--data", dev, "--output", out)
    report = json.loads(out.read_text())
    metrics = json.loads((learned["run"] / "metrics.json").read_text())
    assert report["examples"] == HELD_OUT * PER_ARTICLE  # questions, not windows
    assert report["metrics"] == pytest.approx({"exact_match": metrics["eval_exact_match"],
                                               "f1": metrics["eval_f1"]}, abs=1e-9)
    assert "exact_match" in result.stdout and f"{HELD_OUT * PER_ARTICLE} examples" in result.stdout


def test_predict_returns_answer_score_and_offsets_in_input_order(learned, tmp_path):
    rows = list(reversed(learned["held_out"]))  # long contexts first in the file, then short ones
    inputs = write_jsonl(tmp_path / "questions.jsonl", [{"question": r["question"], "context": r["context"]}
                                                         for r in rows])
    # batch 4: many length-sorted batches, so a lost row index would scramble the output.
    records = [json.loads(line) for line in
               cli("predict", "--model", learned["run"], "--input", inputs, "--batch-size", 4).stdout.splitlines()]
    assert len(records) == len(rows)
    right = 0
    for record, row in zip(records, rows):
        assert set(record) == {"question", "context", "answer", "score", "start", "end"}
        assert record["context"] == row["context"]
        assert record["context"][record["start"]:record["end"]] == record["answer"]
        assert 0 < record["score"] <= 1
        right += record["answer"] == row["answers"]["text"][0]
    assert right >= 0.9 * len(rows)
    # Answers past the first 64-token window (the reversed file starts with them) are found too.
    late = [r for r, row in zip(records, rows) if row["context"].endswith(row["answers"]["text"][0] + ".")]
    assert late and sum(r["answer"] in r["context"][-25:] for r in late) >= 0.8 * len(late)


def test_predict_on_a_squad_file_keeps_question_ids(learned):
    records = [json.loads(line) for line in
               cli("predict", "--model", learned["run"], "--input", learned["train_file"]).stdout.splitlines()]
    assert len(records) == ARTICLES * PER_ARTICLE
    assert [r["id"] for r in records[:2]] == ["q0-0", "q0-1"] and records[-1]["id"] == f"q{ARTICLES - 1}-{PER_ARTICLE - 1}"
    assert all(r["context"][r["start"]:r["end"]] == r["answer"] for r in records)
