"""`lmctl export --format onnx [--quantize int8]`: the export reloads through ONNX Runtime in
evaluate and predict with PyTorch's scores (fp32) or labels (int8), checks itself, and refuses
what it cannot export or read in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import cli, sentiment_rows, write_config, write_rows


@pytest.fixture(scope="module")
def runs(tiny_models, tmp_path_factory) -> dict:
    """Tiny BERT and GPT-2 sentiment classifiers (dev accuracy 1.0), a dev file and prediction input."""
    tmp = tmp_path_factory.mktemp("onnx")
    train = write_rows(tmp / "train.tsv", sentiment_rows(200, 0))
    dev = write_rows(tmp / "dev.tsv", sentiment_rows(100, 1))
    out = {"dev": dev, "input": write_rows(tmp / "input.tsv", [{"sentence": r["sentence"]} for r in sentiment_rows(40, 5)])}
    for family in ("bert", "gpt2"):
        cli("finetune", write_config(tmp / f"{family}.yaml", tiny_models[family], train, dev, tmp / family,
                                     training={"logging_steps": 50}))
        out[family] = tmp / family
    return out


def evaluate(model: Path, data: Path, tmp: Path) -> dict:
    out = tmp / f"{model.name}.metrics.json"
    cli("evaluate", "--model", model, "--data", data, "--output", out)
    return json.loads(out.read_text())["metrics"]


def predict(model: Path, data: Path) -> list[dict]:
    return [json.loads(line) for line in cli("predict", "--model", model, "--input", data).stdout.splitlines()]


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_an_onnx_export_scores_as_pytorch_does(runs, family, tmp_path):
    export = tmp_path / "fp32"
    result = cli("export", "--model", runs[family], "--output", export, "--format", "onnx")
    assert "checked on" in result.stderr
    manifest = json.loads((export / "onnx.json").read_text())
    assert manifest["files"] == ["model.onnx", "model.onnx.data"] and manifest["quantize"] is None
    assert manifest["check"]["rows"] == 64 and manifest["check"]["max_abs_diff"] < 1e-3  # the run's dev rows
    assert not list(export.glob("*.safetensors"))  # nothing PyTorch loads: evaluate really ran ONNX Runtime
    torch_metrics, onnx_metrics = evaluate(runs[family], runs["dev"], tmp_path), evaluate(export, runs["dev"], tmp_path)
    assert onnx_metrics["accuracy"] == torch_metrics["accuracy"] == 1.0
    assert abs(onnx_metrics["loss"] - torch_metrics["loss"]) < 1e-4
    for a, b in zip(predict(runs[family], runs["input"]), predict(export, runs["input"])):
        assert a["label"] == b["label"] and a["sentence"] == b["sentence"]
        assert abs(a["score"] - b["score"]) < 1e-4


def test_an_int8_export_is_smaller_and_keeps_the_labels(runs, tmp_path):
    fp32, int8 = tmp_path / "fp32", tmp_path / "int8"
    cli("export", "--model", runs["bert"], "--output", fp32, "--format", "onnx")
    result = cli("export", "--model", runs["bert"], "--output", int8, "--quantize", "int8")  # implies onnx
    assert "onnx int8" in result.stderr
    manifest = json.loads((int8 / "onnx.json").read_text())
    assert manifest["quantize"] == "int8" and manifest["files"] == ["model.onnx"]
    assert manifest["check"]["label_agreement"] >= 0.9
    size = lambda d: sum(f.stat().st_size for f in d.glob("model.onnx*"))  # noqa: E731
    assert size(int8) < 0.75 * size(fp32), (size(int8), size(fp32))  # the graph itself weighs much in a tiny model
    import onnx

    graph = onnx.load(str(int8 / "model.onnx")).graph
    ops = {node.op_type for node in graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops, ops  # weight products in int8 (MatMul stays for QK^T)
    assert sum(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer) >= 12  # 2 layers x 6 matrices
    assert evaluate(int8, runs["dev"], tmp_path)["accuracy"] >= 0.95
    reference = predict(runs["bert"], runs["input"])
    agree = sum(a["label"] == b["label"] for a, b in zip(reference, predict(int8, runs["input"])))
    assert agree >= 0.95 * len(reference)
    # ONNX Runtime uses the threads PyTorch was given (OMP_NUM_THREADS), not every core.
    import torch

    from lmctl import onnx_model

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        loaded = onnx_model.load(str(int8), "--model")
        assert loaded.session.get_session_options().intra_op_num_threads == 1
    finally:
        torch.set_num_threads(threads)
    # The one test callers make instead of probing attributes.
    assert onnx_model.is_onnx(loaded) and not onnx_model.is_onnx(torch.nn.Linear(1, 1))


def test_reading_an_export_needs_no_torch_until_it_runs(tmp_path):
    """Loading lmctl.onnx_model and checking for an export import no torch (an ONNX-only server
    could start without it); tested in a fresh process, as this one imported torch long ago."""
    import subprocess
    import sys

    code = ("import sys; from lmctl import onnx_model; "
            f"assert onnx_model.is_onnx_dir({str(tmp_path)!r}) is False; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_question_answering_exports_with_both_outputs(tiny_models, tmp_path):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

    model_dir = tmp_path / "qa"
    torch.manual_seed(0)
    BertForQuestionAnswering(BertConfig.from_pretrained(tiny_models["bert"])).save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(tiny_models["bert"]).save_pretrained(model_dir)
    squad = [{"question": "Where was the cat?", "context": "The cat was happy in the garden.",
              "answers": {"text": ["in the garden"], "answer_start": [18]}},
             {"question": "Who was tired?", "context": "The old farmer was tired after dinner.",
              "answers": {"text": ["The old farmer"], "answer_start": [0]}}] * 4
    data = write_rows(tmp_path / "qa.jsonl", squad)
    cli("export", "--model", model_dir, "--task", "question-answering", "--output", tmp_path / "onnx", "--format", "onnx")
    assert json.loads((tmp_path / "onnx" / "onnx.json").read_text())["outputs"] == ["start_logits", "end_logits"]
    out_torch, out_onnx = tmp_path / "t.json", tmp_path / "o.json"
    cli("evaluate", "--model", model_dir, "--task", "question-answering", "--data", data, "--output", out_torch)
    cli("evaluate", "--model", tmp_path / "onnx", "--data", data, "--output", out_onnx)
    assert json.loads(out_onnx.read_text())["metrics"] == json.loads(out_torch.read_text())["metrics"]


def last_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_what_cannot_be_exported_or_read_is_one_line(runs, tiny_models, tmp_path):
    bert = runs["bert"]
    assert last_line(cli("export", "--model", bert, "--output", tmp_path / "x", "--quantize", "int4", code=2)) == \
        "error: --quantize: unknown scheme 'int4'; lmctl quantizes to: int8"
    assert "drop --format transformers" in last_line(cli("export", "--model", bert, "--output", tmp_path / "x",
                                                         "--format", "transformers", "--quantize", "int8", code=2))
    result = cli("export", "--model", tiny_models["t5"], "--task", "text-classification", "--output", tmp_path / "x",
                 "--format", "onnx", code=2)
    assert last_line(result).startswith("error: --format onnx: a 't5' model cannot be exported here")
    result = cli("export", "--model", tiny_models["t5"], "--task", "seq2seq", "--output", tmp_path / "x",
                 "--format", "onnx", code=2)
    assert "task 'seq2seq' cannot be exported to ONNX" in last_line(result)
    assert not (tmp_path / "x").exists()
    # A failed export leaves an existing output directory as it was, even with --overwrite.
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    cli("export", "--model", tiny_models["t5"], "--task", "seq2seq", "--output", keep, "--format", "onnx",
        "--overwrite", code=2)
    assert (keep / "notes.txt").read_text() == "mine"

    export = tmp_path / "onnx"
    cli("export", "--model", bert, "--output", export, "--format", "onnx")
    result = cli("predict", "--model", export, "--input", runs["input"], "--explain", code=2)
    assert "is an ONNX export, which has no gradients" in last_line(result)
    assert "is an ONNX export already" in last_line(cli("export", "--model", export, "--output", tmp_path / "y",
                                                        "--format", "onnx", code=2))
    (export / "model.onnx.data").rename(tmp_path / "aside")
    result = cli("predict", "--model", export, "--input", runs["input"], code=2)
    assert last_line(result) == f"error: --model: {export / 'model.onnx.data'} is missing from the ONNX export; " \
        "copy the whole directory or export the model again"
    (tmp_path / "aside").rename(export / "model.onnx.data")
    graph = (export / "model.onnx").read_bytes()
    (export / "model.onnx").write_bytes(graph[: len(graph) // 3])  # cut short
    result = cli("evaluate", "--model", export, "--data", runs["dev"], code=2)
    assert last_line(result).startswith(f"error: --model: {export / 'model.onnx'} cannot be read (")
    assert "Traceback" not in result.stderr
