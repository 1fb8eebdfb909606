"""`from lmctl import Predictor`: the inference API that `lmctl predict` and `lmctl evaluate` loop over.

For every task, a tiny trained run predicts the same rows from Python and through the command,
and the records (and the metrics) must be the same; a bad row raises RowError with its index.
"""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import pytest
import yaml

from helpers import cli, sentiment_rows, set_args, write_rows
from lmctl.errors import RowError, UserError

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


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# task → (family, data section, rows(n, seed), modes)
FINETUNED = {
    "classification": ("bert", {"text_column": "sentence", "label_column": "label"},
                       lambda n, s: sentiment_rows(n, s), ["classify"]),
    "pairs-regression": ("gpt2", {"text_column": "a", "text_pair_column": "b", "label_column": "score"},
                         _pairs, ["classify"]),
    "question-answering": ("bert", {}, _qa, ["extract"]),
    "reranking": ("bert", {"text_column": "query", "text_pair_column": "passage", "label_column": "label",
                           "query_id_column": "qid"}, _rerank, ["rank"]),
    "seq2seq": ("t5", {"text_column": "source", "target_column": "target"}, _sort, ["generate"]),
}
TASK_OF = {"classification": "text-classification", "pairs-regression": "text-classification"}
PRETRAINED = {"tiny-bert": ["fill-mask"], "tiny-gpt2": ["generate", "score"], "tiny-t5": ["generate"]}


@pytest.fixture(scope="module")
def runs(tiny_models, pretrain_run, tmp_path_factory, one_thread) -> dict[str, tuple[Path, Path, list[str]]]:
    """name → (run directory, labelled dev file, predict modes): one tiny run per task."""
    root = tmp_path_factory.mktemp("predictor")
    out = {}
    for name, (family, data, rows, modes) in FINETUNED.items():
        train, dev = _jsonl(root / f"{name}-train.jsonl", rows(24, 1)), _jsonl(root / f"{name}-dev.jsonl", rows(6, 2))
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


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("name", list(FINETUNED) + list(PRETRAINED))
def test_predictor_gives_the_records_and_metrics_of_the_commands(runs, name, tmp_path):
    from lmctl import Predictor

    run, dev, modes = runs[name]
    rows = _read_jsonl(dev)
    for mode in modes:
        output = tmp_path / f"{mode}.jsonl"
        cli("predict", "--model", run, "--input", dev, "--output", output, "--mode", mode)
        expected = _read_jsonl(output)
        predictor = Predictor(str(run), mode)
        got = predictor.predict(rows)
        assert got == expected and len(got) == len(rows), mode
        assert predictor.info()["mode"] == mode and predictor.info()["backend"] == "pytorch"
    metrics = tmp_path / "metrics.json"
    cli("evaluate", "--model", run, "--data", dev, "--output", metrics)
    expected = json.loads(metrics.read_text())["metrics"]
    got = Predictor(str(run)).evaluate(rows)
    assert got.keys() == expected.keys()
    assert got == pytest.approx(expected, rel=1e-6)


def test_plain_strings_and_one_load_serve_many_calls_from_a_worker_thread(runs):
    from lmctl import Predictor

    run, dev, _ = runs["classification"]
    predictor = Predictor(str(run))
    texts = [r["sentence"] for r in _read_jsonl(dev)]
    first = predictor.predict(texts)
    assert [r["sentence"] for r in first] == texts and all(r["label"] in ("positive", "negative") for r in first)
    # The same object, called again from another thread and with the rows in another order: the
    # same record for each text (nothing a call does changes the bound task).
    again: list = []
    worker = threading.Thread(target=lambda: again.extend(predictor.predict(texts[::-1])))
    worker.start()
    worker.join()
    assert again[::-1] == first
    assert predictor.info()["labels"] == ["negative", "positive"]
    assert predictor.input_columns() == ["sentence"]


def test_a_bad_row_raises_row_error_with_its_index(runs):
    from lmctl import Predictor

    predictor = Predictor(str(runs["classification"][0]))
    with pytest.raises(RowError) as caught:
        predictor.predict(["a fine day", "   ", "a bad day"])
    assert caught.value.index == 1 and "row 2" in str(caught.value)
    with pytest.raises(RowError) as caught:
        predictor.predict([{"sentence": "fine"}, {"text": "no such column"}])
    assert caught.value.index == 1 and "'sentence'" in str(caught.value)
    with pytest.raises(RowError) as caught:
        predictor.evaluate([{"sentence": "fine", "label": "positive"}, {"sentence": "odd", "label": "neutral"}])
    assert caught.value.index == 1 and "not seen in training" in str(caught.value)
    with pytest.raises(UserError, match="no rows"):
        predictor.predict([])
    pairs = Predictor(str(runs["pairs-regression"][0]))
    with pytest.raises(RowError, match="plain string"):
        pairs.predict(["one text is not a pair"])
    with pytest.raises(UserError, match="mode generate: task 'text-classification' predicts with: classify"):
        Predictor(str(runs["classification"][0]), "generate")


def test_an_onnx_export_predicts_through_the_same_api(runs, tmp_path):
    from lmctl import Predictor

    run, dev, _ = runs["classification"]
    export = tmp_path / "onnx"
    cli("export", "--model", run, "--output", export, "--format", "onnx")
    output = tmp_path / "preds.jsonl"
    cli("predict", "--model", export, "--input", dev, "--output", output)
    predictor = Predictor(str(export))
    assert predictor.info()["backend"] == "onnx"
    rows = _read_jsonl(dev)
    assert predictor.predict(rows) == _read_jsonl(output)
    # The export scores what the PyTorch run scores (fp32: to rounding).
    torch_records = Predictor(str(run)).predict(rows)
    assert [r["label"] for r in predictor.predict(rows)] == [r["label"] for r in torch_records]
    for a, b in zip(predictor.predict(rows), torch_records):
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
