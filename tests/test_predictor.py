"""`from lmctl import Predictor`: the inference API that `lmctl predict` and `lmctl evaluate` loop over.

For every task, a tiny trained run predicts the same rows from Python and through the command,
and the records (and the metrics) must be the same; a bad row raises RowError with its index.
"""

from __future__ import annotations

import json
import threading

import pytest

from helpers import cli
from lmctl.errors import RowError, UserError
from task_runs import FINETUNED, PRETRAINED, read_jsonl


@pytest.fixture(scope="module")
def runs(task_runs, one_thread):
    return task_runs


@pytest.mark.parametrize("name", list(FINETUNED) + list(PRETRAINED))
def test_predictor_gives_the_records_and_metrics_of_the_commands(runs, name, tmp_path):
    from lmctl import Predictor

    run, dev, modes = runs[name]
    rows = read_jsonl(dev)
    for mode in modes:
        output = tmp_path / f"{mode}.jsonl"
        cli("predict", "--model", run, "--input", dev, "--output", output, "--mode", mode)
        expected = read_jsonl(output)
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
    texts = [r["sentence"] for r in read_jsonl(dev)]
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
    rows = read_jsonl(dev)
    assert predictor.predict(rows) == read_jsonl(output)
    # The export scores what the PyTorch run scores (fp32: to rounding).
    torch_records = Predictor(str(run)).predict(rows)
    assert [r["label"] for r in predictor.predict(rows)] == [r["label"] for r in torch_records]
    for a, b in zip(predictor.predict(rows), torch_records):
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
