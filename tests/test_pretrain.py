"""`lmctl pretrain` trains real language models from scratch, and they are usable afterwards.

Every shipped tiny config in configs/pretrain/ runs through the CLI (shortened with
--set) and must: exit 0, lower its training loss and its evaluation loss, and leave a run
directory that reloads with the family's Auto* classes. A pretrained BERT and GPT-2 then
start a classification finetune with exactly their pretrained weights. Corpus inputs
(folders, globs, blank-line documents, streaming) are exercised end to end.

The pretraining runs are shared with test_lm_predict.py through the `pretrain_run` fixture
(conftest.py), which trains each config once per test session.
"""

from __future__ import annotations

import csv
import json
import math
import random
from functools import partial
from pathlib import Path

import pytest
import yaml

from helpers import PRETRAIN_SHORT, REPO, SHARED_DATA, explain, set_args
from helpers import cli as _cli

PRETRAIN_CONFIGS = sorted((REPO / "configs" / "pretrain").glob("*.yaml"))
FINETUNE_DATA = REPO / "configs" / "finetune" / "data"

# The "tiny" size preset of each family, as the README's table of sizes gives it.
TINY_SIZES = {
    "bert": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512},
    "gpt2": {"n_embd": 128, "n_layer": 2, "n_head": 2},
    "t5": {"d_model": 128, "d_ff": 512, "d_kv": 32, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4},
}
OBJECTIVES = {  # task → (Auto class, architecture the from-scratch model must be)
    "masked-lm": ("AutoModelForMaskedLM", "BertForMaskedLM"),
    "causal-lm": ("AutoModelForCausalLM", "GPT2LMHeadModel"),
    "span-corruption": ("AutoModelForSeq2SeqLM", "T5ForConditionalGeneration"),
}


cli = partial(_cli, code=None)  # each test asserts, and explains, the exit code itself


def tiny_configs() -> list[Path]:
    """The shipped quick-start configs: tiny models on the bundled sample data (the others need a corpus)."""
    return [p for p in PRETRAIN_CONFIGS if p.stem.startswith("tiny-")]


def read_log(run: Path) -> tuple[list[dict], list[dict]]:
    lines = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return [r for r in lines if "loss" in r], [r for r in lines if "eval_loss" in r]


# ---- the shipped configs ------------------------------------------------------------------

@pytest.mark.parametrize("path", PRETRAIN_CONFIGS, ids=lambda p: p.stem)
def test_shipped_pretrain_config_has_an_objective_and_its_data(path):
    result = cli("config", "show", path)
    assert result.exit_code == 0, explain(result)
    cfg = yaml.safe_load(result.stdout)
    assert cfg["task"] in OBJECTIVES
    scratch = cfg["model"]["from_scratch"]
    assert scratch or cfg["model"]["name_or_path"]
    if path in tiny_configs():
        # The tiny configs run as shipped: their data paths (relative to the config file) must
        # resolve to the bundled sample files wherever lmctl is started.
        for key in ("train_file", "validation_file"):
            assert Path(cfg["data"][key]).is_file(), (key, cfg["data"][key])
    if scratch:
        family = {"masked-lm": "bert", "causal-lm": "gpt2", "span-corruption": "t5"}[cfg["task"]]
        assert scratch["family"] == family


def test_the_tiny_configs_are_the_three_objectives():
    # Each tiny config is run below; this pins that all three objectives have one.
    tasks = sorted(yaml.safe_load(p.read_text())["task"] for p in tiny_configs())
    assert tasks == sorted(OBJECTIVES)
    for p in tiny_configs():
        assert yaml.safe_load(p.read_text())["model"]["from_scratch"]["size"] == "tiny"


def test_a_bare_no_on_the_command_line_means_no():
    # YAML reads `no` as false; `--set training.eval_strategy=no` must still mean the string 'no'.
    result = cli("config", "show", PRETRAIN_CONFIGS[0], "--set", "training.eval_strategy=no",
                 "--set", "training.mixed_precision=no")
    assert result.exit_code == 0, explain(result)
    training = yaml.safe_load(result.stdout)["training"]
    assert training["eval_strategy"] == "no" and training["mixed_precision"] == "no"


@pytest.fixture(scope="module", params=[p.stem for p in tiny_configs()])
def tiny_run(request, pretrain_run):
    name = request.param
    return name, pretrain_run(name)


def test_pretraining_lowers_the_loss(tiny_run):
    name, run = tiny_run
    train, evals = read_log(run)
    assert [r["step"] for r in train] == list(range(1, 25))  # logging_steps=1: every step logged
    first, last = train[0]["loss"], train[-1]["loss"]
    # A from-scratch model starts near ln(vocab) (~6.9 for 1,000 tokens); after 24 steps at lr 1e-3
    # the frequent tokens of the corpus are learnt.
    assert 5.0 < first < 8.5, first
    assert last < first - 1.0, (first, last)
    assert [r["step"] for r in evals] == [12, 24]
    metrics = json.loads((run / "metrics.json").read_text())
    assert math.isfinite(metrics["eval_loss"]) and math.isfinite(metrics["eval_perplexity"])
    assert metrics["eval_loss"] < evals[0]["eval_loss"]
    assert metrics["eval_perplexity"] < evals[0]["eval_perplexity"]
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]), rel=1e-6)
    assert metrics["completed_steps"] == 24 and metrics["best_step"] == 24
    assert metrics["eval_tokens"] > 0


def test_run_directory_reloads_with_auto_classes(tiny_run):
    import torch
    import transformers
    from transformers import AutoTokenizer

    name, run = tiny_run
    for f in ("config.yaml", "environment.json", "data.json", "metrics.json", "train_log.jsonl",
              "model.safetensors", "config.json", "tokenizer_config.json"):
        assert (run / f).is_file(), f
    assert not list(run.glob("*.bin"))  # safetensors only
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    auto_name, arch = OBJECTIVES[cfg["task"]]
    model = getattr(transformers, auto_name).from_pretrained(run)
    tok = AutoTokenizer.from_pretrained(run)
    assert type(model).__name__ == arch
    family = cfg["model"]["from_scratch"]["family"]
    for key, value in TINY_SIZES[family].items():
        assert getattr(model.config, key) == value, key
    # The trained tokenizer sizes the embeddings, and stays within the requested vocabulary.
    assert model.config.vocab_size == len(tok) <= cfg["model"]["train_tokenizer"]["vocab_size"]
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    assert model.config.pad_token_id == tok.pad_token_id
    ids = tok(["the food was great", "terrible service"], padding=True, return_tensors="pt")
    with torch.no_grad():
        if family == "t5":
            out = model(**ids, labels=ids["input_ids"].masked_fill(ids["attention_mask"] == 0, -100))
            assert model.config.decoder_start_token_id == tok.pad_token_id
        else:
            out = model(**ids)
    assert torch.isfinite(out.logits).all()
    assert out.logits.shape[-1] == len(tok)


def test_run_records_its_data(tiny_run):
    _, run = tiny_run
    data = json.loads((run / "data.json").read_text())
    assert data["train_file"]["path"] == str((FINETUNE_DATA / "train.tsv").resolve())
    assert data["rows"] == {"train": 800, "validation": 200}
    env = json.loads((run / "environment.json").read_text())
    assert env["num_processes"] == 1


def test_continued_pretraining_starts_from_the_checkpoint(tmp_path, pretrain_run):
    # The shipped domain-adaptation config (masked LM continued from a checkpoint), pointed at the
    # tiny BERT pretrained above instead of MiniLM, on the same sample sentences as text lines.
    bert = pretrain_run("tiny-bert")
    rows = (FINETUNE_DATA / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    corpus = tmp_path / "domain.txt"
    corpus.write_text("\n".join(r.split("\t")[0] for r in rows) + "\n", encoding="utf-8")
    out = tmp_path / "continued"
    result = cli("pretrain", REPO / "configs" / "pretrain" / "minilm-domain.yaml", *set_args([
        f"model.name_or_path={bert}", f"data.train_file={corpus}", f"output_dir={out}", "training.max_steps=4",
        "training.max_length=32", "training.batch_size=16", "training.eval_strategy=no", "training.logging_steps=1",
    ]))
    assert result.exit_code == 0, explain(result)
    scratch_losses = [r["loss"] for r in read_log(bert)[0]]
    continued = [r["loss"] for r in read_log(out)[0]]
    # From scratch the loss starts near ln(1000) ~ 6.9; continued, it starts where pretraining ended.
    assert sum(continued[:3]) / 3 < sum(scratch_losses[:3]) / 3 - 0.8, (continued, scratch_losses[:3])
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(out).get_vocab() == AutoTokenizer.from_pretrained(bert).get_vocab()
    model_cfg = yaml.safe_load((out / "config.yaml").read_text())["model"]
    assert model_cfg["from_scratch"] is None and model_cfg["name_or_path"] == str(bert)


@pytest.mark.parametrize("name", ["zh-bert-chnsenticorp", "zh-gpt2-chnsenticorp"])
def test_chinese_pretraining(name, tmp_path):
    """The shipped Chinese configs (BERT masked LM, GPT-2 causal LM on ChnSentiCorp), shortened:
    they learn, and their tokenizers cover Chinese: BERT's one token per character with almost no
    [UNK], GPT-2's byte-level BPE losslessly with most characters a single token."""
    train_file = SHARED_DATA / "zh" / "chnsenticorp" / "train.tsv"
    if not train_file.is_file():
        pytest.skip(f"Chinese sample data not found at {train_file} (set LMCTL_SHARED_DATA)")
    out = tmp_path / "zh"
    result = cli("pretrain", REPO / "configs" / "pretrain" / f"{name}.yaml", *set_args(PRETRAIN_SHORT + [
        f"data.train_file={train_file}", f"data.validation_file={train_file.with_name('dev.tsv')}",
        "data.max_train_samples=250", "data.max_eval_samples=40", "training.batch_size=16", f"output_dir={out}",
    ]))
    assert result.exit_code == 0, explain(result)
    train, evals = read_log(out)
    # ~2,000 characters with a flat distribution: slower than English, but clearly falling
    # (BERT about 7.7 to 6.8 in 24 steps).
    assert train[-1]["loss"] < train[0]["loss"] - 0.5
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    import transformers
    from transformers import AutoTokenizer

    auto, arch = OBJECTIVES["masked-lm" if "bert" in name else "causal-lm"]
    assert type(getattr(transformers, auto).from_pretrained(out)).__name__ == arch
    tok = AutoTokenizer.from_pretrained(out)
    with train_file.with_name("test_unlabeled.tsv").open(encoding="utf-8") as f:
        held_out = [r["text_a"] for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)][:100]
    ids = [tok(text, add_special_tokens=False)["input_ids"] for text in held_out]
    if "bert" in name:
        assert len(tok) <= 6000
        flat = [i for row in ids for i in row]
        assert sum(i == tok.unk_token_id for i in flat) / len(flat) < 0.05
        assert tok.tokenize("酒店的服务很好") == list("酒店的服务很好")
    else:
        assert [tok.decode(row) for row in ids] == held_out  # bytes: nothing lost, nothing unknown
        # 250 reviews teach the frequent characters: well under the 3 UTF-8 bytes per character.
        assert sum(map(len, ids)) / sum(map(len, held_out)) < 1.6


def test_resume_from_scratch_keeps_the_runs_tokenizer(tmp_path, monkeypatch):
    """Training a tokenizer again need not give the same ids (WordPiece ties), and the checkpoint's
    embeddings follow the first one's: --resume must read the run's tokenizer, not train a new one."""
    out = tmp_path / "run"
    short = ["training.max_length=32", "training.eval_strategy=steps", "training.eval_steps=4",
             "training.save_steps=4", f"output_dir={out}"]
    config = REPO / "configs" / "pretrain" / "tiny-bert.yaml"
    result = cli("pretrain", config, *set_args(short + ["training.max_steps=8"]))
    assert result.exit_code == 0, explain(result)
    vocab = (out / "tokenizer.json").read_text(encoding="utf-8")

    import lmctl.tokenizer_training

    def refuse(*args, **kwargs):
        raise AssertionError("--resume trained a new tokenizer")

    monkeypatch.setattr(lmctl.tokenizer_training, "train_tokenizer", refuse)
    result = cli("pretrain", config, *set_args(short + ["training.max_steps=12"]), "--resume")
    assert result.exit_code == 0, explain(result)
    assert json.loads((out / "metrics.json").read_text())["completed_steps"] == 12
    assert (out / "tokenizer.json").read_text(encoding="utf-8") == vocab


# ---- pretrain → finetune ------------------------------------------------------------------

def _finetune_config(tmp_path: Path, model_dir: Path, out: Path) -> Path:
    cfg = {
        "task": "text-classification",
        "model": {"name_or_path": str(model_dir)},
        "data": {"train_file": str(FINETUNE_DATA / "train.tsv"), "validation_file": str(FINETUNE_DATA / "dev.tsv"),
                 "text_column": "sentence", "label_column": "label", "max_train_samples": 320},
        "training": {"num_epochs": 1, "batch_size": 32, "learning_rate": 1.0e-3, "max_length": 48,
                     "logging_steps": 1},
        "output_dir": str(out),
    }
    path = tmp_path / f"finetune-{model_dir.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("name,prefix", [("tiny-bert", "bert."), ("tiny-gpt2", "transformer.")])
def test_finetune_starts_from_the_pretrained_weights(name, prefix, tmp_path, pretrain_run):
    import torch
    import transformers
    from datasets import Dataset

    from lmctl import config as config_lib
    from lmctl import models
    from lmctl.console import Console
    from lmctl.tasks.classification import ClassificationTask

    run = pretrain_run(name)
    out = tmp_path / "finetuned"
    config_path = _finetune_config(tmp_path, run, out)
    auto = transformers.AutoModelForMaskedLM if name == "tiny-bert" else transformers.AutoModelForCausalLM
    pretrained = {k: v for k, v in auto.from_pretrained(run).state_dict().items() if k.startswith(prefix)}
    assert len(pretrained) > 10

    # The model `lmctl finetune` builds at step 0, through lmctl's own loading path.
    cfg = config_lib.load_config(config_path)
    task = ClassificationTask(cfg, Console(enabled=False))
    task.fit(Dataset.from_dict({"sentence": ["a", "b"], "label": ["negative", "positive"]}))
    tokenizer = models.load_tokenizer(str(run))
    torch.manual_seed(0)
    initial = task.build_model(str(run), tokenizer).state_dict()
    for key, value in pretrained.items():
        assert key in initial, key
        assert torch.equal(initial[key], value), key
    # And plain transformers agrees (the embeddings are the ones pretraining learnt).
    emb = {"tiny-bert": "bert.embeddings.word_embeddings.weight", "tiny-gpt2": "transformer.wte.weight"}[name]
    plain = transformers.AutoModelForSequenceClassification.from_pretrained(run, num_labels=2)
    assert torch.equal(plain.state_dict()[emb], pretrained[emb])

    result = cli("finetune", config_path)
    assert result.exit_code == 0, explain(result)
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0
    assert metrics["completed_steps"] == 10  # 320 samples / batch 32, one epoch
    finetuned = transformers.AutoModelForSequenceClassification.from_pretrained(out)
    assert finetuned.config.id2label == {0: "negative", 1: "positive"}
    # Same vocabulary as the pretraining run; the encoder moved (it was trained, not frozen or replaced).
    assert transformers.AutoTokenizer.from_pretrained(out).get_vocab() == tokenizer.get_vocab()
    tuned = finetuned.state_dict()
    assert tuned[emb].shape == pretrained[emb].shape
    assert not torch.equal(tuned[emb], pretrained[emb])
    # Finetuning from the pretrained encoder, not from a fresh random one: the weights stay close.
    drift = (tuned[emb] - pretrained[emb]).norm() / pretrained[emb].norm()
    assert drift < 0.5, float(drift)


# ---- corpus inputs ------------------------------------------------------------------------

ANIMALS = ["cat", "dog", "fox", "owl", "cow", "hen"]
COLOURS = ["red", "blue", "green", "brown"]
PLACES = ["the barn", "the field", "the river", "the hill"]


def _sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"the {rng.choice(COLOURS)} {rng.choice(ANIMALS)} walked to {rng.choice(PLACES)} ." for _ in range(n)]


def _corpus_config(tmp_path: Path, train_file: str, **data) -> Path:
    (tmp_path / "val.txt").write_text("\n".join(_sentences(20, 99)) + "\n")
    cfg = {
        "task": "causal-lm",
        "model": {"from_scratch": {"family": "gpt2", "size": "tiny"},
                  "train_tokenizer": {"vocab_size": 300, "min_frequency": 2}},
        "data": {"train_file": train_file, "validation_file": str(tmp_path / "val.txt"), **data},
        "training": {"num_epochs": 1, "batch_size": 8, "learning_rate": 1.0e-3, "max_length": 32,
                     "logging_steps": 1, "eval_strategy": "no"},
        "output_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "corpus.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_folder_of_text_files(tmp_path):
    folder = tmp_path / "corpus"
    files = [_write(folder / f"part-{i}.txt", _sentences(30 + 10 * i, i)) for i in range(3)]
    _write(folder / "nested" / "more.txt", _sentences(7, 10))  # folders are read recursively
    (folder / "README.md").write_text("not a data file\n")  # ignored: not a data suffix
    result = cli("pretrain", _corpus_config(tmp_path, str(folder)), "--set", "training.max_steps=3")
    assert result.exit_code == 0, explain(result)
    data = json.loads((tmp_path / "run" / "data.json").read_text())
    paths = [d["path"] for d in data["train_file"]]
    assert sorted(paths) == sorted(str(p.resolve()) for p in files + [folder / "nested" / "more.txt"])
    assert data["rows"]["train"] == 30 + 40 + 50 + 7  # one document per line, every file
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["completed_steps"] == 3


def test_glob_selects_matching_files_only(tmp_path):
    folder = tmp_path / "corpus"
    _write(folder / "wiki-a.txt", _sentences(25, 1))
    _write(folder / "wiki-b.txt", _sentences(35, 2))
    _write(folder / "other.txt", _sentences(100, 3))
    result = cli("pretrain", _corpus_config(tmp_path, str(folder / "wiki-*.txt")), "--set", "training.max_steps=2")
    assert result.exit_code == 0, explain(result)
    data = json.loads((tmp_path / "run" / "data.json").read_text())
    assert [Path(d["path"]).name for d in data["train_file"]] == ["wiki-a.txt", "wiki-b.txt"]
    assert data["rows"]["train"] == 60


def test_glob_that_matches_nothing_is_a_clear_error(tmp_path):
    result = cli("pretrain", _corpus_config(tmp_path, str(tmp_path / "nothing-*.txt")))
    assert result.exit_code == 2
    assert "no file matches" in result.stderr
    assert not (tmp_path / "run").exists()


def test_blank_line_documents(tmp_path):
    from lmctl import data as data_lib

    docs = ["\n".join(_sentences(1 + i % 3, 100 + i)) for i in range(40)]  # 1-3 lines each
    path = tmp_path / "docs.txt"
    path.write_text("\n\n".join(docs) + "\n\n\n", encoding="utf-8")
    # What the loader sees: one row per paragraph, lines inside kept with their newlines.
    table = data_lib.read_table(path, "data.train_file", ("text",), "blank_line")
    assert list(table["text"]) == docs
    line_table = data_lib.read_table(path, "data.train_file", ("text",), "line")
    assert len(line_table) > len(docs)
    result = cli("pretrain", _corpus_config(tmp_path, str(path), document_separator="blank_line"),
                 "--set", "training.max_steps=2")
    assert result.exit_code == 0, explain(result)
    assert json.loads((tmp_path / "run" / "data.json").read_text())["rows"]["train"] == 40


def test_streaming_with_max_steps(tmp_path):
    folder = tmp_path / "corpus"
    for i in range(2):
        _write(folder / f"shard-{i}.txt", _sentences(100, 20 + i))
    # ~2,200 tokens make ~70 blocks of 32, ~9 batches of 8: 20 steps need the stream read twice or
    # more (a stream that stopped after one pass would end the run early, short of max_steps).
    path = _corpus_config(tmp_path, str(folder), streaming=True)
    result = cli("pretrain", path, "--set", "training.max_steps=20", "--set", "training.eval_strategy=steps",
                 "--set", "training.eval_steps=10")
    assert result.exit_code == 0, explain(result)
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["completed_steps"] == 20
    assert json.loads((run / "data.json").read_text())["rows"] == {"train": "streamed", "validation": 20}
    train, evals = read_log(run)
    assert [r["step"] for r in train] == list(range(1, 21))
    assert train[-1]["loss"] < train[0]["loss"] - 1.0  # it learnt from the stream
    assert [r["step"] for r in evals] == [10, 20]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    from transformers import AutoModelForCausalLM

    assert type(AutoModelForCausalLM.from_pretrained(run)).__name__ == "GPT2LMHeadModel"


def test_streaming_without_max_steps_is_refused(tmp_path):
    _write(tmp_path / "train.txt", _sentences(20, 0))
    result = cli("pretrain", _corpus_config(tmp_path, str(tmp_path / "train.txt"), streaming=True))
    assert result.exit_code == 2, explain(result)
    assert "data.streaming" in result.stderr and "training.max_steps" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "run").exists()


def test_streaming_without_validation_file_is_refused(tmp_path):
    _write(tmp_path / "train.txt", _sentences(20, 0))
    path = _corpus_config(tmp_path, str(tmp_path / "train.txt"), streaming=True)
    result = cli("pretrain", path, "--set", "training.max_steps=2", "--set", "data.validation_file=null")
    assert result.exit_code == 2, explain(result)
    assert "data.validation_file" in result.stderr
    assert not (tmp_path / "run").exists()


def test_pretrain_refuses_a_finetuning_task(tmp_path):
    path = _corpus_config(tmp_path, str(_write(tmp_path / "train.txt", _sentences(20, 0))))
    result = cli("pretrain", path, "--set", "task=text-classification")
    assert result.exit_code == 2
    assert "not a pretraining objective" in result.stderr
