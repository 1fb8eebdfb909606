"""Concepts computed in one place, tested where two callers could disagree: CSV reading in
memory and streamed, the hub-offline switch for models and data sets, perplexity in evaluate
and predict, the pretraining objectives, the evaluation batch, generation through a wrapper."""

from __future__ import annotations

import math

import pytest

from lmctl import config as config_lib
from lmctl import data, models
from lmctl.console import Console
from lmctl.errors import UserError, first_line

WORDS = ["NA", "null", "nan", "N/A", "None", "a fine film"]


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_na_words_stay_text_streamed_and_not(tmp_path, suffix):
    sep = "," if suffix == ".csv" else "\t"
    path = tmp_path / f"corpus{suffix}"
    path.write_text("text" + sep + "label\n" + "".join(f"{w}{sep}1\n" for w in WORDS), encoding="utf-8")
    in_memory = data.read_table(str(path), "data.train_file", ("text",))["text"]
    streamed = [row["text"] for row in data.stream_table(str(path), "data.train_file")]
    assert in_memory == WORDS
    assert streamed == WORDS


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "on", "YES"])
def test_models_and_data_sets_agree_the_hub_is_off(monkeypatch, value):
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    with pytest.raises(UserError, match="HF_HUB_OFFLINE"):
        models.resolve("bert-base-uncased")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE"):
        data.load_hub_dataset("glue", "sst2")


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_hub_ids_pass_when_the_hub_is_on(monkeypatch, value):
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert models.resolve("bert-base-uncased") == "bert-base-uncased"


def test_perplexity_is_the_same_in_predict_records_and_metrics():
    from lmctl.tasks.causal_lm import CausalLMTask
    from lmctl.tasks.lm_common import perplexity_metrics

    task = CausalLMTask(config_lib.validate({"task": "causal-lm"}), Console(enabled=False)).bind(None, "score")
    nll, tokens = [2.0, 600.0, 0.0], [4, 2, 0]
    records = task.predict_records({"nll": nll, "tokens": tokens})
    # By hand: exp(2/4); exp(300) capped at exp(50); an empty text scores exp(0).
    expected = [1.648721, math.exp(50), 1.0]
    for record, want, n, t in zip(records, expected, nll, tokens):
        assert record["perplexity"] == pytest.approx(want, rel=1e-4)  # records keep 4 decimals
        assert perplexity_metrics({"nll": [n], "tokens": [t]})["perplexity"] == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("task", ["text-classification", "question-answering", "seq2seq", "reranking",
                                  "masked-lm", "causal-lm", "span-corruption"])
def test_pretraining_objectives_are_one_list(task):
    objectives = {"masked-lm", "causal-lm", "span-corruption"}  # by hand
    raw = {"task": task, "data": {"streaming": True, "text_pair_column": "b"}, "training": {"max_steps": 10}}
    if task in objectives:
        config_lib.validate(raw)
    else:
        with pytest.raises(UserError, match="streaming"):
            config_lib.validate(raw)
    from lmctl import run

    cfg = config_lib.validate({"task": task, "data": {"text_pair_column": "b"}})
    if task not in objectives:
        with pytest.raises(UserError, match="not a pretraining objective"):
            run.pretrain(cfg, console=Console(enabled=False))


def test_eval_batch_defaults_to_twice_the_training_batch():
    assert config_lib.TrainingConfig(batch_size=8).eval_batch == 16
    assert config_lib.TrainingConfig(batch_size=8, eval_batch_size=5).eval_batch == 5


def test_span_corruption_generates_through_a_ddp_style_wrapper(tiny_models):
    """A DistributedDataParallel model has no `generate`; the module inside it does."""
    import torch
    from datasets import Dataset

    from lmctl.tasks.span_corruption import SpanCorruptionTask

    cfg = config_lib.validate({"task": "span-corruption", "generation": {"max_new_tokens": 5}})
    task = SpanCorruptionTask(cfg, Console(enabled=False))
    tokenizer = models.load_tokenizer(str(tiny_models["t5"]))
    model = task.load_model(str(tiny_models["t5"]), tokenizer, "model")
    task = task.bind(tokenizer, "generate")
    encoded = task.encode(Dataset.from_dict({"text": ["the cat <extra_id_0> the movie"]}), "predict", "x")
    batch = task.eval_collate([encoded[0]])

    class Wrapped(torch.nn.Module):  # what accelerate's prepare() returns under DDP: the model as `.module`
        def __init__(self, module):
            super().__init__()
            self.module = module

    assert not hasattr(Wrapped(model), "generate")
    direct = task.eval_step(model, dict(batch))["generated"]
    wrapped = task.eval_step(Wrapped(model), dict(batch))["generated"]
    assert torch.equal(direct, wrapped) and direct.shape[1] > 1


def test_a_library_error_becomes_its_first_line_or_its_class_name():
    """The one helper every one-line message about a library's error goes through (models, data,
    ONNX export and loading)."""
    assert first_line(ValueError("bad header\n  at line 3\n  in parser")) == "bad header"
    assert first_line(RuntimeError("\n  padded message\nmore")) == "padded message"
    assert first_line(OSError()) == "OSError"
