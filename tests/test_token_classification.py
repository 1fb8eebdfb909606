"""token-classification: CoNLL reading, word-piece labels, windows, entity spans, the seqeval metric,
and tiny BERT / GPT-2 / T5 runs through finetune → evaluate → predict → export → serve.

Alignment, windows and offsets are checked with hand-worked expectations on the tiny tokenizers
(tests/tiny_models.py) and on made-up logits, where the right answer is known; learning on the
generated sentences of task_runs.ner_rows, where a name after "Mr" is PER and a city after "in" LOC.
"""

from __future__ import annotations

import json
import random
import warnings

import numpy as np
import pytest
import yaml

from helpers import Recorder, cli, explain
from lmctl import config as config_lib
from lmctl import data, models
from lmctl.tasks.token_classification import (TokenClassificationTask, entity_spans, join_words, not_iob2,
                                              plan_windows, split_words)
from task_runs import ner_rows, read_jsonl, write_conll, write_jsonl
from test_bad_inputs import check_one_error_line, snapshot

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread: see conftest.py

TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]  # ids 0..4


def bound(tiny_models, family: str = "bert", mode: str | None = None, max_length: int = 32, **tagging):
    """The task bound to a tiny tokenizer, with TAGS learnt; and the console that records its warnings."""
    cfg = config_lib.validate({"task": "token-classification", "training": {"max_length": max_length},
                               "tagging": tagging})
    console = Recorder()
    task = TokenClassificationTask(cfg, console)
    task.label_names = list(TAGS)
    return task.bind(models.load_tokenizer(str(tiny_models[family])), mode), console


def rows(*sentences):
    """A table of (words, tags) sentences."""
    from datasets import Dataset

    return Dataset.from_dict({"tokens": [s[0] for s in sentences], "tags": [s[1] for s in sentences]})


def inputs(*values):
    """A predict table: each value a list of words or a text."""
    from datasets import Dataset

    return Dataset.from_dict({"tokens": list(values)})


def one_hot_logits(encoded, tag_of_word) -> dict:
    """Logits that pick tag `tag_of_word(sentence, word)` at each word's tagged position, and nothing
    anywhere else (a word read from the wrong position or window would get tag 0 or another's tag)."""
    out = np.empty(len(encoded), dtype=object)
    for f, row in enumerate(encoded):
        logits = np.zeros((len(row["input_ids"]), len(TAGS)), dtype=np.float32)
        for w, pos in zip(row["word_index"], row["word_pos"]):
            logits[pos, tag_of_word(row["example"], w)] = 10.0
        out[f] = logits
    return {"logits": out}


# ---- words, labels and windows -------------------------------------------------------------------
def test_a_word_split_into_three_pieces_gets_one_label(tiny_models):
    task, _ = bound(tiny_models)
    enc = task.encode(rows((["Peter", "to", "the", "cat"], ["B-PER", "O", "O", "O"])), "train", "t")
    assert task.tokenizer.convert_ids_to_tokens(enc[0]["input_ids"]) == \
        ["[CLS]", "p", "##e", "##ter", "to", "the", "cat", "[SEP]"]
    # By hand: B-PER (3) on "p" only; the word's other pieces and the special tokens are left out.
    assert enc[0]["labels"] == [-100, 3, -100, -100, 0, 0, 0, -100]
    task, _ = bound(tiny_models, label_all_tokens=True)
    enc = task.encode(rows((["Peter", "to", "the", "cat"], ["B-PER", "O", "O", "O"])), "train", "t")
    assert enc[0]["labels"] == [-100, 3, 4, 4, 0, 0, 0, -100]  # the later pieces carry I-PER


def test_gpt2_words_get_their_leading_space_and_the_tag_skips_a_bare_one(tiny_models):
    task, _ = bound(tiny_models, "gpt2")
    enc = task.encode(rows((["Peter", "to", "the", "cat"], ["B-PER", "O", "O", "O"])), "train", "t")
    tokens = task.tokenizer.convert_ids_to_tokens(enc[0]["input_ids"])
    # As in running text after a space; " Peter" is a bare 'Ġ' then P, e, ter: the tag goes on 'P'.
    assert tokens == task.tokenizer.convert_ids_to_tokens(task.tokenizer(" Peter to the cat")["input_ids"])
    assert tokens == ["Ġ", "P", "e", "ter", "Ġt", "o", "Ġthe", "Ġcat"]
    assert enc[0]["labels"] == [-100, 3, -100, -100, 0, -100, 0, 0]
    t5, _ = bound(tiny_models, "t5")
    enc = t5.encode(rows((["Peter", "cat"], ["B-PER", "O"])), "train", "t")
    assert t5.tokenizer.convert_ids_to_tokens(enc[0]["input_ids"]) == ["▁", "P", "e", "ter", "▁ca", "t", "</s>"]
    assert enc[0]["labels"] == [-100, 3, -100, -100, 0, -100, -100]


def test_windows_by_hand():
    # Six one-token words, windows of 3 tokens sharing 1: words 0-2, 2-4, 4-5. Word 2 has one token of
    # context on neither side in both of its windows (the first wins), word 4 one on the left in the second.
    windows, owner = plan_windows([1] * 6, budget=3, stride=1)
    assert windows == [(0, 3), (2, 5), (4, 6)]
    assert owner == [0, 0, 0, 1, 1, 2]
    # A word longer than the window is a window of its own and still moves the windows on.
    assert plan_windows([2, 9, 1], budget=4, stride=2) == ([(0, 1), (1, 2), (2, 3)], [0, 1, 2])
    assert plan_windows([1, 1], budget=4, stride=2) == ([(0, 2)], [0, 0])


@pytest.mark.parametrize("family", ["bert", "gpt2", "t5"])
def test_a_sentence_three_times_max_length_gets_one_tag_per_word(tiny_models, family):
    task, console = bound(tiny_models, family, "tag", max_length=16, stride=4)
    words = [random.Random(3).choice(["the", "cat", "park", "Paris", "Smith", "in", "."]) for _ in range(60)]
    short = ["the", "cat"]
    enc = task.encode(inputs(words, short), "predict", "long")
    tokens = sum(n for n, e in zip(enc["length"], enc["example"]) if e == 0)
    assert tokens >= 3 * 16 and len(enc) > 3 and all(n <= 16 for n in enc["length"])
    assert "1 of 2 sentences did not fit in one window of 16 tokens" in console.logs[0]
    records = task.predict_records(one_hot_logits(enc, lambda e, w: (7 * e + w) % len(TAGS)), enc)
    # Every word once, each with the tag its own position scored: none dropped, none doubled, none swapped.
    assert [r["tokens"] for r in records] == [words, short]
    assert records[0]["tags"] == [TAGS[w % len(TAGS)] for w in range(len(words))]
    assert records[1]["tags"] == [TAGS[(7 + w) % len(TAGS)] for w in range(2)]


def test_words_that_tokenize_to_nothing_still_get_a_tag(tiny_models):
    task, _ = bound(tiny_models, mode="tag")
    enc = task.encode(inputs(["Smith", "\u200b", "cat"]), "predict", "x")
    assert "[UNK]" in task.tokenizer.convert_ids_to_tokens(enc[0]["input_ids"])
    assert task.predict_records(one_hot_logits(enc, lambda e, w: 3), enc)[0]["tags"] == ["B-PER"] * 3


# ---- plain text, offsets and entities ----------------------------------------------------------------
def test_plain_text_is_split_into_words_with_offsets():
    text = "Peter Blackburn's U.S. trip, 北京 2026."
    spans = split_words(text)
    assert [text[a:b] for a, b in spans] == ["Peter", "Blackburn", "'", "s", "U", ".", "S", ".", "trip", ",",
                                           "北", "京", "2026", "."]
    assert spans[:2] == [(0, 5), (6, 15)]
    assert join_words(["Peter", "Blackburn", "北", "京", "."]) == \
        ("Peter Blackburn 北京 .", [(0, 5), (6, 15), (16, 17), (17, 18), (19, 20)])


@pytest.mark.parametrize("text,tags,entities", [
    ("Peter Blackburn went to Paris.", ["B-PER", "I-PER", "O", "O", "B-LOC", "O"],
     [("PER", 0, 15, "Peter Blackburn"), ("LOC", 24, 29, "Paris")]),
    ("彼得在北京工作。", ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O", "O"],
     [("PER", 0, 2, "彼得"), ("LOC", 3, 5, "北京")]),
    (["彼", "得", "在", "北", "京"], ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"],
     [("PER", 0, 2, "彼得"), ("LOC", 3, 5, "北京")]),
    (["  Mr", "Smith"], ["O", "B-PER"], [("PER", 3, 8, "Smith")]),
])
def test_entity_offsets_slice_the_text_back(tiny_models, text, tags, entities):
    task, _ = bound(tiny_models, mode="tag")
    enc = task.encode(inputs(text), "predict", "x")
    (record,) = task.predict_records(one_hot_logits(enc, lambda e, w: TAGS.index(tags[w])), enc)
    assert record["tags"] == tags
    got = [(x["label"], x["start"], x["end"], x["text"]) for x in record["entities"]]
    assert got == entities
    for x in record["entities"]:
        assert record["text"][x["start"]:x["end"]] == x["text"]
        assert x["score"] == pytest.approx(np.exp(10) / (np.exp(10) + len(TAGS) - 1), abs=1e-6)
    if isinstance(text, str):
        assert record["text"] == text


def test_entity_spans_are_seqevals_entities():
    """predict's spans (written out to keep scikit-learn out of predict) are the entities seqeval counts."""
    from seqeval.metrics.sequence_labeling import get_entities

    rng = random.Random(0)
    alphabet = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "X-PER", "I-MISC", "PER", "B-"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "X-PER seems not to be NE tag"
        for _ in range(2000):
            tags = [rng.choice(alphabet) for _ in range(rng.randint(0, 8))]
            assert entity_spans(tags) == get_entities(tags), tags
    assert entity_spans(["B-PER", "I-PER", "O", "I-LOC", "B-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3), ("LOC", 4, 4)]


def test_tags_outside_iob2_by_hand():
    assert not_iob2(["O", "I-PER", "B-LOC", "I-LOC", "I-PER", "X-PER", "B-PER", "I-PER", "O"]) == [1, 4, 5]
    assert not_iob2(["B-PER", "I-PER", "O", "B-LOC"]) == []


# ---- the metric ------------------------------------------------------------------------------------
def test_seqeval_module_by_hand():
    from lmctl import metrics

    m = metrics.load("seqeval")
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["I-LOC", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-LOC", "O"]]
    # Gold entities: PER(0-1), LOC(3), LOC(0 of the second: conlleval starts one at a stray I-);
    # predicted PER(0-1), LOC(0): 2 of 2 right, 2 of 3 found.
    lenient = m.compute(predictions=pred, references=gold)
    assert lenient["overall_precision"] == 1.0 and lenient["overall_recall"] == pytest.approx(2 / 3)
    assert lenient["overall_f1"] == pytest.approx(0.8)
    assert lenient["overall_accuracy"] == pytest.approx(4 / 6)
    assert lenient["LOC"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "number": 2}
    # Strict IOB2: the stray I-LOC is no entity; X-PER is read as O instead of failing.
    strict = m.compute(predictions=pred, references=gold, mode="strict", scheme="IOB2")
    assert strict["overall_precision"] == 0.5 and strict["overall_recall"] == 0.5
    odd = m.compute(predictions=[["X-PER", "O"]], references=[["B-PER", "O"]], mode="strict", scheme="IOB2")
    assert odd["overall_f1"] == 0.0 and odd["overall_accuracy"] == 0.5


# ---- reading CoNLL ---------------------------------------------------------------------------------
CONLL = ("-DOCSTART- -X- -X- O\n\nEU NNP B-ORG\nrejects VBZ O\nGerman JJ B-MISC\n\n\n"
         "Peter NNP B-PER\nBlackburn NNP I-PER\n\nBRUSSELS NNP B-LOC\n1996-08-22 CD O\n")


@pytest.mark.parametrize("name", ["train.conll", "train.txt"])
def test_conll_files_read_as_one_row_per_sentence(tmp_path, name):
    path = tmp_path / name
    path.write_text(CONLL, encoding="utf-8")
    table = data.read_table(str(path), "data.train_file", ("tokens",))
    assert table["tokens"][:] == [["EU", "rejects", "German"], ["Peter", "Blackburn"], ["BRUSSELS", "1996-08-22"]]
    assert table["tags"][:] == [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"], ["B-LOC", "O"]]
    assert data.count_rows(str(path), "--input") == 3
    chunks = list(data.read_chunks(str(path), "--input", ("tokens",), chunk_rows=2))
    assert [len(c) for c in chunks] == [2, 1] and chunks[1]["tokens"][0] == ["BRUSSELS", "1996-08-22"]
    plain = list(data.read_chunks(str(path), "--input", ("tokens",), chunk_rows=2, plain=True))
    assert [c["tags"] for c in plain] == [[["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"]], [["B-LOC", "O"]]]


def test_tab_separated_conll_and_prose_that_is_not(tmp_path):
    tabs = tmp_path / "tabs.conll"
    tabs.write_text("New York\tNNP\tB-LOC\nis\tVBZ\tO\n", encoding="utf-8")
    assert data.read_table(str(tabs), "k", ("tokens",))["tokens"][:] == [["New York", "is"]]
    prose = tmp_path / "in.txt"
    prose.write_text("Peter Blackburn met Mr Smith in Paris.\nA second line O\n", encoding="utf-8")
    assert data.read_table(str(prose), "k", ("tokens",))["tokens"][:] == \
        ["Peter Blackburn met Mr Smith in Paris.", "A second line O"]
    assert data.count_rows(str(prose), "--input") == 2


# ---- tiny runs of each family ------------------------------------------------------------------------
EPOCHS = {"bert": 6, "gpt2": 6, "t5": 10}  # the tiny T5 learns slowest (see TokenClassificationTask._pieces)


@pytest.fixture(scope="module")
def runs(tiny_models, tmp_path_factory) -> dict:
    """family → (run directory, dev file): finetuned on 300 generated sentences, each family from another
    file format (CoNLL with a POS column, CoNLL named .txt, JSON lines)."""
    root = tmp_path_factory.mktemp("tokcls")
    dev = write_jsonl(root / "dev.jsonl", ner_rows(60, 2))
    train = {"bert": write_conll(root / "train.conll", ner_rows(300, 1), columns=3),
             "gpt2": write_conll(root / "train.txt", ner_rows(300, 1)),
             "t5": write_jsonl(root / "train.jsonl", ner_rows(300, 1))}
    out = {}
    for family, path in train.items():
        config = root / f"{family}.yaml"
        config.write_text(yaml.safe_dump({
            "task": "token-classification", "model": {"name_or_path": str(tiny_models[family])},
            "data": {"train_file": str(path), "validation_file": str(dev)},
            "training": {"num_epochs": EPOCHS[family], "batch_size": 16, "learning_rate": 3.0e-3, "warmup_ratio": 0.1,
                         "max_length": 32, "logging_steps": 5},
            "output_dir": str(root / family)}), encoding="utf-8")
        cli("finetune", config)
        out[family] = (root / family, dev)
    return out


@pytest.mark.parametrize("family", ["bert", "gpt2", "t5"])
def test_finetune_evaluate_predict(runs, family, tmp_path):
    run, dev = runs[family]
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < losses[0] / 3, losses
    f1s = [r["eval_f1"] for r in log if "eval_f1" in r]
    # Tagging at random finds an entity (its type and every word right) about never: F1 by chance is ~0.
    assert max(f1s) >= 0.7 and f1s[-1] >= f1s[0], f1s
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["eval_f1"] == max(f1s) and {"eval_PER_f1", "eval_LOC_f1", "eval_strict_f1"} <= metrics.keys()

    out = tmp_path / "eval.json"
    cli("evaluate", "--model", run, "--data", dev, "--output", out)
    scored = json.loads(out.read_text())
    assert scored["examples"] == 60 and scored["metrics"]["f1"] == pytest.approx(metrics["eval_f1"])

    text = tmp_path / "in.txt"
    long = " ".join(["Mr Smith watched the movie in Paris ."] * 6)  # ~3 windows of 32 tokens
    text.write_text(f"Mr Wilson found the letter in Paris.\n{long}\n", encoding="utf-8")
    result = cli("predict", "--model", run, "--input", text)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in records] == ["Mr Wilson found the letter in Paris.", long]
    assert [len(r["tags"]) for r in records] == [len(r["tokens"]) for r in records] == [8, 48]
    for r in records:
        assert all(r["text"][x["start"]:x["end"]] == x["text"] for x in r["entities"])
    if family != "t5":  # learnt well enough to name them
        assert [(x["label"], x["text"]) for x in records[0]["entities"]] == [("PER", "Wilson"), ("LOC", "Paris")]


def test_the_gate_and_labelled_conll_input(runs, tmp_path):
    run, _ = runs["bert"]
    conll = write_conll(tmp_path / "dev.conll", ner_rows(30, 5))
    cli("evaluate", "--model", run, "--data", conll, "--fail-under", "f1=0.85", "--fail-under", "PER_f1=0.85")
    failed = cli("evaluate", "--model", run, "--data", conll, "--fail-under", "strict_f1=1.01", code=1)
    assert "strict_f1" in failed.stderr
    unknown = cli("evaluate", "--model", run, "--data", conll, "--fail-under", "ORG_f1=0.5", code=2)
    assert "PER_f1" in unknown.stderr  # names what the task reports
    # predict of a labelled CoNLL file: the words and the tags the model gives them.
    records = [json.loads(line) for line in cli("predict", "--model", run, "--input", conll).stdout.splitlines()]
    assert [r["tokens"] for r in records] == [r["tokens"] for r in ner_rows(30, 5)]


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_an_onnx_export_predicts_the_tags_of_the_run(runs, family, tmp_path):
    run, dev = runs[family]
    export = tmp_path / "onnx"
    cli("export", "--model", run, "--output", export, "--format", "onnx")
    torch_out = [json.loads(x) for x in cli("predict", "--model", run, "--input", dev).stdout.splitlines()]
    onnx_out = [json.loads(x) for x in cli("predict", "--model", export, "--input", dev).stdout.splitlines()]
    assert [r["tags"] for r in onnx_out] == [r["tags"] for r in torch_out]
    assert [[e["text"] for e in r["entities"]] for r in onnx_out] == [[e["text"] for e in r["entities"]]
                                                                     for r in torch_out]


def test_served_words_and_text(runs, tmp_path):
    from test_serve import Served

    run, dev = runs["bert"]
    rows = read_jsonl(dev)[:5]
    expected = [json.loads(x) for x in cli("predict", "--model", run, "--input", dev).stdout.splitlines()][:5]
    with Served(run) as served:
        assert served.post({"inputs": rows}).json()["predictions"] == expected
        text = served.post({"inputs": ["Mr Wilson found the letter in Paris."]}).json()["predictions"][0]
        assert [(x["label"], x["start"], x["end"]) for x in text["entities"]] == [("PER", 3, 9), ("LOC", 30, 35)]
        mixed = served.post({"inputs": ["a text", {"tokens": ["two", "words"]}]})
        assert mixed.status_code == 422 and mixed.json()["field"] == "inputs[1].tokens", mixed.text
        empty = served.post({"inputs": [{"tokens": ["one", " "]}]})
        assert empty.status_code == 422 and "every word must be text" in empty.json()["error"]
        assert served.get("/info").json()["labels"] == ["O", "B-LOC", "B-PER", "I-PER"]


def test_the_serve_page_marks_the_entities_in_the_text(runs):
    from cdp import Browser
    from helpers import chromium
    from test_serve_page import api_predict, form_ready, serving, type_and_predict

    run, _ = runs["bert"]
    text = "Mr Wilson found the letter in Paris."
    with serving(run) as url, Browser(chromium(), width=900, height=600) as page:
        expected = api_predict(url, [text])[0]["entities"]
        assert [e["text"] for e in expected] == ["Wilson", "Paris"], expected
        page.navigate(url)
        form_ready(page)
        type_and_predict(page, text, shown="!!document.getElementById('entities')")
        marks = page.evaluate("[...document.querySelectorAll('#entities mark')]"
                              ".map(m => [m.firstChild.textContent, m.dataset.label, m.title])")
        assert marks == [[e["text"], e["label"], f"{e['label']} {e['score']:.3f}"] for e in expected]
        # The words between the entities are the typed text's own, so the line reads as typed.
        shown = page.evaluate("[...document.getElementById('entities').childNodes]"
                              ".map(n => n.nodeName === 'MARK' ? n.firstChild.textContent : n.textContent).join('')")
        assert shown == text
        colours = page.evaluate("[...document.querySelectorAll('#entities mark')].map(m => m.style.background)")
        assert colours[0] != colours[1] and all(colours), colours  # PER and LOC differ
        # Offsets count code points, as in Python: an emoji before an entity must not shift the mark.
        text = "🙂 Paris"
        record = {"text": text, "entities": [{"label": "LOC", "start": 2, "end": 7, "score": 0.9}]}
        assert text[2:7] == "Paris"
        assert page.evaluate(f"entities({json.dumps(record)}).querySelector('mark').firstChild.textContent") == "Paris"
        assert page.errors == [], page.errors


# ---- bad inputs: one line, exit 2, nothing written ---------------------------------------------------------
def _config(tmp_path, tiny_models, train, **training) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "task": "token-classification", "model": {"name_or_path": str(tiny_models["bert"])},
        "data": {"train_file": str(train), "validation_file": str(train)},
        "training": {"max_length": 32, "batch_size": 4, **training}, "output_dir": str(tmp_path / "out")}))
    return str(path)


BAD = {
    "conll-line-without-tag": ("train.conll", "Mr O\nSmith B-PER\n\nthe O\ncat\nsat O\n",
                               ("train.conll", "line 5", "'cat' has no tag")),
    "more-words-than-tags": ("train.jsonl", '{"tokens": ["Mr", "Smith"], "tags": ["O", "B-PER"]}\n'
                                            '{"tokens": ["the", "cat", "sat"], "tags": ["O", "O"]}\n',
                             ("train.jsonl", "row 2", "3 words in column 'tokens' but 2 tags")),
    "tags-not-a-list": ("train.jsonl", '{"tokens": ["Mr", "Smith"], "tags": "O B-PER"}\n',
                        ("row 1", "not a list of tags")),
    "one-tag-only": ("train.jsonl", '{"tokens": ["Mr", "Smith"], "tags": ["O", "O"]}\n', ("only one tag", "'O'")),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line(tiny_models, tmp_path, case):
    name, content, expect = BAD[case]
    train = tmp_path / name
    train.write_text(content, encoding="utf-8")
    config = _config(tmp_path, tiny_models, train)
    before = snapshot(tmp_path)
    result = cli("finetune", config, code=2)
    check_one_error_line(result.stderr, result.stdout, expect)
    assert snapshot(tmp_path) == before


def test_config_errors_are_one_line(tiny_models, tmp_path):
    train = write_conll(tmp_path / "t.conll", ner_rows(4, 1))
    result = cli("finetune", _config(tmp_path, tiny_models, train), "--set", "tagging.stride=16", code=2)
    check_one_error_line(result.stderr, result.stdout, ("tagging.stride", "below 16"))
    result = cli("finetune", _config(tmp_path, tiny_models, train), "--set", "tagging.label_all_token=true", code=2)
    check_one_error_line(result.stderr, result.stdout, ("tagging.label_all_token", "did you mean 'label_all_tokens'"))


def test_tags_outside_iob2_are_a_counted_warning(tiny_models, tmp_path):
    train = tmp_path / "train.conll"
    train.write_text(write_conll(tmp_path / "ok.conll", ner_rows(20, 1)).read_text() +
                     "Mr O\nSmith X-PER\nin O\nParis I-LOC\n", encoding="utf-8")
    result = cli("finetune", _config(tmp_path, tiny_models, train, max_steps=2, eval_strategy="no"))
    total = sum(len(r["tags"]) for r in ner_rows(20, 1)) + 4
    assert f"2 of {total} tags" in result.stderr and "not IOB2 (first: 'X-PER' in row 21)" in result.stderr, \
        explain(result)
