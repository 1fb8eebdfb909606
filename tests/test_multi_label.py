"""Multi-label classification (`task: multi-label-classification`): tiny BERT, GPT-2 and T5 learn
labels decided by trigger words (several per row, some rows with none); the thresholds stored in
the kept model's config.json are the ones evaluate, predict and an ONNX export apply; --min-labels
gives rows their top labels; LoRA and distillation run; the pieces (label parsing, the decision,
threshold tuning, the loss) against values worked out by hand. The server's records are checked
with every other task's in test_serve.py (tests/task_runs.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import TRIGGERS, cli, multilabel_rows, write_rows
from lmctl import config as config_lib
from lmctl.console import Console
from lmctl.errors import UserError
from lmctl.tasks.multi_label import GRID, MultiLabelTask, decide, metric_keys, parse_labels, tune_thresholds

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread: see conftest.py

LABELS = sorted(TRIGGERS)  # food, tech, travel, weather: the names learnt from the data, sorted


# ---- tiny runs, one per family, trained once per module -----------------------------------------
# bert: a from-scratch tiny preset (the 32-wide fixture BERT stalls: helpers.train_keyword_model), single
# texts in TSV files with comma-separated labels, thresholds tuned; gpt2: pairs in JSON lines, tuned;
# t5: single texts in JSON lines, one fixed threshold. Each learnt its rule within these epochs (measured:
# micro F1 0.95, 1.00, 0.99 on dev).
FAMILIES = {
    "bert": dict(model={"from_scratch": {"family": "bert", "size": "tiny"},
                        "train_tokenizer": {"vocab_size": 300, "min_frequency": 1}},
                 suffix=".tsv", pairs=False, training={"num_epochs": 10, "learning_rate": 1.0e-3, "threshold": "tune"}),
    "gpt2": dict(model=None, suffix=".jsonl", pairs=True,
                 training={"num_epochs": 12, "learning_rate": 3.0e-3, "threshold": "tune"}),
    "t5": dict(model=None, suffix=".jsonl", pairs=False,
               training={"num_epochs": 12, "learning_rate": 3.0e-3, "threshold": 0.4}),
}


def write_labelled(path: Path, rows: list[dict]) -> Path:
    """JSON lines keep the label lists; CSV/TSV cells get them joined by commas ([] for none)."""
    if path.suffix != ".jsonl":
        rows = [{**r, "label": ",".join(r["label"]) or "[]"} for r in rows]
    return write_rows(path, rows)


def ml_config(tmp: Path, model: dict, train: Path, dev: Path, pairs: bool, **training) -> Path:
    cfg = {"task": "multi-label-classification", "model": model,
           "data": {"train_file": str(train), "validation_file": str(dev), "text_column": "text",
                    "text_pair_column": "pair" if pairs else None},
           "training": {"batch_size": 16, "warmup_ratio": 0.1, "max_length": 32, "logging_steps": 25, "seed": 13,
                        **training},
           "output_dir": str(tmp / "run")}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tiny_models, tmp_path_factory):
    """`trained(family)` → (run directory, dev file, dev rows), each family trained once."""
    runs: dict = {}

    def get(family: str):
        if family not in runs:
            spec = FAMILIES[family]
            tmp = tmp_path_factory.mktemp(f"multi-label-{family}")
            train = write_labelled(tmp / f"train{spec['suffix']}", multilabel_rows(400, 0, spec["pairs"]))
            dev_rows = multilabel_rows(80, 1, spec["pairs"])
            dev = write_labelled(tmp / f"dev{spec['suffix']}", dev_rows)
            model = spec["model"] or {"name_or_path": str(tiny_models[family])}
            cli("finetune", ml_config(tmp, model, train, dev, spec["pairs"], **spec["training"]))
            runs[family] = (tmp / "run", dev, dev_rows)
        return runs[family]

    return get


def predictions(model: Path, data: Path, *args) -> list[dict]:
    return [json.loads(line) for line in cli("predict", "--model", model, "--input", data, *args).stdout.splitlines()]


def evaluation(model: Path, data: Path, *args) -> dict:
    out = model.parent / "eval.json"
    cli("evaluate", "--model", model, "--data", data, "--output", out, *args)
    return json.loads(out.read_text())["metrics"]


def micro_f1(records: list[dict], rows: list[dict]) -> float:
    tp = sum(len(set(r["labels"]) & set(row["label"])) for r, row in zip(records, rows))
    predicted = sum(len(r["labels"]) for r in records)
    true = sum(len(row["label"]) for row in rows)
    return 2 * tp / (predicted + true)


def stored(run: Path) -> tuple[list[str], list[float]]:
    config = json.loads((run / "config.json").read_text())
    return [config["id2label"][str(i)] for i in range(len(config["id2label"]))], config["lmctl_thresholds"]


# ---- learning --------------------------------------------------------------------------------
@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_learns_several_labels_per_row(trained, family):
    run, _, rows = trained(family)
    metrics = json.loads((run / "metrics.json").read_text())
    # Chance: every label on every row (recall 1) scores this micro F1 on the dev rows.
    share = sum(len(r["label"]) for r in rows) / (len(rows) * len(LABELS))
    chance = 2 * share / (1 + share)
    assert chance < 0.65 and any(len(r["label"]) > 1 for r in rows) and any(not r["label"] for r in rows)
    assert metrics["eval_micro_f1"] >= 0.85, metrics
    assert metrics["eval_macro_f1"] >= 0.85, metrics
    assert metrics["best_metric"] == "macro_f1"  # the main metric picks the kept model
    for label in LABELS:
        assert 0 <= metrics[f"eval_{label}_f1"] <= 1 and f"eval_{label}_recall" in metrics


# ---- the thresholds: stored once, applied everywhere ------------------------------------------------
@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_the_stored_thresholds_are_what_evaluate_predict_and_an_onnx_export_apply(trained, family, tmp_path):
    from lmctl import Predictor

    run, dev, rows = trained(family)
    names, thresholds = stored(run)
    assert names == LABELS
    assert all(t in GRID for t in thresholds) and thresholds != [0.5] * len(names)  # tuned, per label
    # The kept model's own thresholds: evaluate reproduces the evaluation that kept it, to the digit.
    metrics = json.loads((run / "metrics.json").read_text())
    report = evaluation(run, dev)
    for key, value in metrics.items():
        if key.startswith("eval_"):
            assert report[key.removeprefix("eval_")] == pytest.approx(value, abs=1e-6), key
    # predict: the labels whose score reaches its stored threshold, highest score first.
    records = predictions(run, dev)
    for r in records:
        passing = [n for n, t in zip(names, thresholds) if r["scores"][n] >= t]
        assert r["labels"] == sorted(passing, key=lambda n: -r["scores"][n])
    assert micro_f1(records, rows) == pytest.approx(report["micro_f1"])
    # The export carries the same numbers and, without torch, gives the same label sets.
    export = tmp_path / "onnx"
    cli("export", "--model", run, "--output", export, "--format", "onnx")
    assert stored(export) == (names, thresholds)
    assert Predictor(str(export)).light
    exported = predictions(export, dev)
    assert [r["labels"] for r in exported] == [r["labels"] for r in records]
    for a, b in zip(exported, records):
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-4)


def test_a_fixed_threshold_is_stored_for_every_label(trained):
    run, dev, _ = trained("t5")
    names, thresholds = stored(run)
    assert names == LABELS and thresholds == [0.4] * 4
    records = predictions(run, dev)
    assert all(r["labels"] == sorted([n for n in names if r["scores"][n] >= 0.4], key=lambda n: -r["scores"][n])
               for r in records)


def test_an_unseen_label_at_evaluation_is_one_line_naming_file_row_and_label(trained, tmp_path):
    run, _, _ = trained("t5")
    bad = write_labelled(tmp_path / "bad.jsonl", [{"text": "the cat was cold", "label": ["weather"]},
                                                  {"text": "a dog found bread", "label": ["food", "sport"]}])
    lines = cli("evaluate", "--model", run, "--data", bad, code=2).stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert all(part in lines[0] for part in ("bad.jsonl", "row 2", "'sport'", "not seen in training")), lines[0]


def test_min_labels_gives_rows_their_highest_scoring_labels(trained):
    from lmctl import Predictor

    run, dev, rows = trained("gpt2")
    plain = predictions(run, dev)
    assert any(not r["labels"] for r in plain)  # rows without a trigger word get no label by default
    one = predictions(run, dev, "--min-labels", "1")
    for a, b in zip(plain, one):
        assert b["scores"] == a["scores"]
        assert b["labels"] == (a["labels"] or [max(a["scores"], key=a["scores"].get)])
    two = predictions(run, dev, "--min-labels", "2")
    for a, b in zip(plain, two):
        others = sorted((n for n in LABELS if n not in a["labels"]), key=lambda n: -a["scores"][n])
        assert set(b["labels"]) == set(a["labels"]) | set(others[:max(0, 2 - len(a["labels"]))])
        assert len(b["labels"]) >= 2
    # evaluate scores the decisions predict writes (one function decides for both).
    assert evaluation(run, dev, "--min-labels", "1")["micro_f1"] == pytest.approx(micro_f1(one, rows))
    # What `lmctl serve --min-labels 1` hands the Predictor.
    from task_runs import read_jsonl

    assert Predictor(str(run), overrides=["training.min_labels=1"]).predict(read_jsonl(dev)) == one


def test_the_serve_page_shows_the_label_set(trained):
    from cdp import Browser
    from helpers import chromium
    from test_serve_page import api_predict, form_ready, serving, type_and_predict

    run, _, _ = trained("t5")
    text = "the chef cooked the bread while it was cold"
    with serving(run) as url, Browser(chromium(), width=900, height=600) as page:
        expected = api_predict(url, [text])[0]
        assert expected["labels"], expected  # food and weather, as the model learnt them
        page.navigate(url)
        form_ready(page)
        assert type_and_predict(page, text) == ", ".join(expected["labels"])
        marked = page.evaluate("[...document.querySelectorAll('.bar.top')].map(b => b.firstChild.textContent)")
        assert sorted(marked) == sorted(expected["labels"])
        assert page.errors == [], page.errors


# ---- LoRA and distillation --------------------------------------------------------------------
def test_lora_keeps_the_thresholds_with_the_adapter(tiny_models, tmp_path):
    train = write_labelled(tmp_path / "train.jsonl", multilabel_rows(200, 0))
    dev = write_labelled(tmp_path / "dev.jsonl", multilabel_rows(40, 1))
    model = {"name_or_path": str(tiny_models["bert"]), "peft": {"r": 4, "alpha": 8, "dropout": 0.0}}
    cli("finetune", ml_config(tmp_path, model, train, dev, False, num_epochs=3, learning_rate=1.0e-2,
                              threshold="tune"))
    run = tmp_path / "run"
    assert (run / "adapter_config.json").is_file() and not (run / "model.safetensors").exists()
    names, thresholds = stored(run)
    assert names == LABELS and len(thresholds) == 4
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["trainable_parameters"] < metrics["parameters"]
    assert evaluation(run, dev)["macro_f1"] == pytest.approx(metrics["eval_macro_f1"], abs=1e-6)
    merged = tmp_path / "merged"
    cli("export", "--model", run, "--output", merged, "--merge")
    assert stored(merged) == (names, thresholds)
    assert [r["labels"] for r in predictions(merged, dev)] == [r["labels"] for r in predictions(run, dev)]


def test_a_student_learns_the_teachers_label_scores(trained, tmp_path):
    teacher, dev, _ = trained("gpt2")
    train = write_labelled(tmp_path / "train.jsonl", multilabel_rows(60, 7, pairs=True))
    unlabelled = write_rows(tmp_path / "unlabelled.jsonl",
                            [{k: v for k, v in r.items() if k != "label"} for r in multilabel_rows(300, 8, pairs=True)])
    config = ml_config(tmp_path, {"from_teacher": {"layers": [1]}}, train, dev, True, num_epochs=8,
                       learning_rate=3.0e-3, threshold="tune")
    raw = yaml.safe_load(config.read_text())
    raw["distill"] = {"teacher": str(teacher), "temperature": 2.0, "alpha": 0.7, "unlabelled_file": str(unlabelled)}
    config.write_text(yaml.safe_dump(raw))
    result = cli("finetune", config)
    assert "360 training rows (300 unlabelled)" in result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    teacher_metrics = json.loads((teacher / "metrics.json").read_text())
    assert metrics["teacher_eval_micro_f1"] == pytest.approx(teacher_metrics["eval_micro_f1"], abs=1e-6)
    assert metrics["eval_teacher_agreement"] >= 0.8, metrics  # the share of dev rows with the same label set
    assert metrics["eval_micro_f1"] >= 0.85, metrics


def test_the_per_label_soft_target_loss():
    """alpha × T² × mean per-label KL(Bernoulli(σ(t/T)) ‖ Bernoulli(σ(s/T))) + (1 − alpha) × BCE on
    labelled rows; a row of NaN labels (unlabelled) adds to the first term only."""
    import torch
    from types import SimpleNamespace

    from lmctl.distill import loss_fn

    student = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    teacher = torch.tensor([[1.0, -2.0, 1.5], [-1.0, 2.0, 0.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [math.nan] * 3])

    def sig(x):
        return 1 / (1 + math.exp(-x))

    t, alpha = 2.0, 0.25
    kl = []
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        for s, u in zip(s_row, t_row):
            p, q = sig(u / t), sig(s / t)
            kl.append(p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q)))
    bce = [-(y * math.log(sig(s)) + (1 - y) * math.log(1 - sig(s))) for s, y in zip(student[0].tolist(), [1, 0, 1])]
    expected = alpha * t * t * sum(kl) / len(kl) + (1 - alpha) * sum(bce) / len(bce)

    def model(**batch):
        return SimpleNamespace(logits=student.clone())

    got = loss_fn(t, alpha, targets="labels")(model, {"teacher_logits": teacher, "labels": labels})
    assert got.item() == pytest.approx(expected, rel=1e-5)
    same = loss_fn(t, 1.0, targets="labels")(model, {"teacher_logits": student.clone(), "labels": labels})
    assert same.item() == pytest.approx(0.0, abs=1e-6)


# ---- the pieces, by hand ------------------------------------------------------------------------
@pytest.mark.parametrize("value,labels", [
    (["joy", "love"], ["joy", "love"]), ([3, 15], ["3", "15"]), ([], []), ("27", ["27"]), ("3,15", ["3", "15"]),
    (" joy , love ,", ["joy", "love"]), ('["a, b", "c"]', ["a, b", "c"]), ("[]", []), (27, ["27"]), (3.0, ["3"]),
])
def test_labels_parse_from_lists_text_and_ids(value, labels):
    assert parse_labels(value, ",") == labels


@pytest.mark.parametrize("value,message", [
    (None, "missing labels; write []"), (float("nan"), "missing labels"), ("  ", "no label in"),
    ("[joy, love", "as a JSON list"), (3.5, "cannot read 3.5"), ({"a": 1}, "cannot read"), ([["a"]], "cannot read"),
    ([True], "cannot read"),
])
def test_unreadable_labels_say_why(value, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        parse_labels(value, ",")


def test_a_separator_other_than_a_comma():
    assert parse_labels("joy|love", "|") == ["joy", "love"] and parse_labels("a,b", "|") == ["a,b"]


def _task(**sections):
    cfg = config_lib.validate({"task": "multi-label-classification", **sections})
    return MultiLabelTask(cfg, Console(enabled=False))


def test_ids_index_label_names_and_names_are_sorted_otherwise():
    task = _task(data={"label_names": ["anger", "joy", "neutral"]})
    task.fit({"label": ["2", "0,1", [1, 2], ["neutral"]]})  # GoEmotions' ids, or names
    assert task.label_names == ["anger", "joy", "neutral"]
    assert [task._label_to_id[x] for x in ("0", "2", "joy")] == [0, 2, 1]
    with pytest.raises(UserError, match="data.label_names: label '7'"):
        _task(data={"label_names": ["a", "b"]}).fit({"label": ["1", "7"]})
    task = _task()
    task.fit({"label": ["10", "2", "2,10"]})
    assert task.label_names == ["2", "10"]  # digits sort as numbers
    task.fit({"label": [["joy", "love"], ["anger"], []]})
    assert task.label_names == ["anger", "joy", "love"]
    assert list(task.thresholds) == [0.5] * 3
    with pytest.raises(UserError, match="no row has a label"):
        task.fit({"label": [[], "[]"]})


@pytest.mark.parametrize("family,head", [("bert", "classifier"), ("t5", "classification_head.out_proj"),
                                         ("gpt2", "score")])
def test_a_new_head_starts_at_each_labels_frequency(tiny_models, family, head):
    """The output bias is the log-odds of each label's share of the train rows (add-one smoothed):
    8 rows, `a` in 6, `b` in 1, `c` in none → 7/10, 2/10, 1/10. GPT-2's head has no bias."""
    import torch
    from transformers import AutoTokenizer

    task = _task(data={"label_names": ["a", "b", "c"]})
    task.fit({"label": [["a"]] * 5 + [["a", "b"], [], []]})
    model = task.build_model(str(tiny_models[family]), AutoTokenizer.from_pretrained(tiny_models[family]))
    bias = model.get_submodule(head).bias
    if family == "gpt2":
        assert bias is None
        return
    expected = [math.log(p / (1 - p)) for p in (0.7, 0.2, 0.1)]
    assert torch.sigmoid(bias).tolist() == pytest.approx([0.7, 0.2, 0.1], abs=1e-6)
    assert bias.tolist() == pytest.approx(expected, abs=1e-5)


def test_a_head_the_checkpoint_has_keeps_its_bias(trained):
    """Finetuning a multi-label run further starts from its trained head, not from the priors."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    run, _, _ = trained("bert")
    saved = load_file(run / "model.safetensors")["classifier.bias"]
    task = _task(data={"label_names": LABELS})
    task.fit({"label": [[LABELS[0]]] * 9 + [[]]})  # other priors than the run's data
    model = task.build_model(str(run), AutoTokenizer.from_pretrained(run))
    assert model.classifier.bias.tolist() == pytest.approx(saved.tolist())


def test_decide_applies_thresholds_then_min_labels():
    probs = np.array([[0.9, 0.2, 0.6], [0.1, 0.3, 0.2], [0.45, 0.5, 0.05]])
    thresholds = np.array([0.5, 0.25, 0.7])
    assert decide(probs, thresholds).tolist() == [[True, False, False], [False, True, False], [False, True, False]]
    # min 2: row 0 adds its best other label (0.6, not 0.2); row 1 adds 0.2 (label 2) beside label 1; row 2
    # adds 0.45 — whatever the thresholds of the labels it adds.
    assert decide(probs, thresholds, 2).tolist() == [[True, False, True], [False, True, True], [True, True, False]]
    assert decide(probs, thresholds, 5).all()  # at most every label
    assert decide(np.zeros((0, 3)), thresholds, 1).shape == (0, 3)


def test_tuning_picks_each_labels_best_threshold_from_the_grid():
    # Label 0: positives at 0.8 and 0.6, a negative at 0.3 -> F1 1 for thresholds in (0.3, 0.6]: 0.31..0.60,
    # whose middle is 0.45 or 0.46 (30 values: index 15 -> 0.46). Label 1: no positive row -> the default.
    # Label 2: the positive scores 0.2 under two negatives at 0.9 and 0.25 -> best F1 (0.5) for (0.05, 0.2].
    probs = np.array([[0.8, 0.1, 0.9], [0.6, 0.2, 0.2], [0.3, 0.4, 0.25]])
    truth = np.array([[True, False, False], [True, False, True], [False, False, False]])
    got = tune_thresholds(probs, truth, default=0.5)
    assert got[0] == pytest.approx(0.46) and got[1] == 0.5
    assert 0.05 <= got[2] <= 0.2
    assert GRID[0] == 0.05 and GRID[-1] == 0.95 and len(GRID) == 91


def test_metric_keys_are_safe_names():
    assert metric_keys(["joy", "Not Sure", "a-b", "a b", "micro", "!!"]) == \
        ["joy", "not_sure", "a_b", "a_b_3", "micro_4", "label"]


def test_the_loss_is_binary_cross_entropy_and_every_metric_has_a_direction():
    import torch

    task = _task()
    task.fit({"label": [["a"], ["b", "c"]]})
    logits = np.array([[2.0, -1.0, 0.0], [-3.0, 1.0, 4.0]], dtype=np.float32)
    labels = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], dtype=np.float32)
    result = task.compute_metrics({"logits": logits, "labels": labels})
    expected = torch.nn.BCEWithLogitsLoss()(torch.tensor(logits), torch.tensor(labels)).item()
    assert result["loss"] == pytest.approx(expected, rel=1e-6)
    assert set(result) == set(task.metric_names)
    # sigmoid(0) = 0.5 reaches the 0.5 threshold: row 0 predicts a and c, row 1 b and c.
    assert result["micro_precision"] == pytest.approx(0.75) and result["micro_recall"] == 1.0
    assert all(MultiLabelTask.greater_is_better(m) for m in result if m != "loss")
    assert not MultiLabelTask.greater_is_better("eval_dev_loss")


def test_threshold_tune_needs_evaluations():
    with pytest.raises(UserError, match="training.threshold: 'tune'.*eval_strategy is 'no'"):
        _task(training={"threshold": "tune", "eval_strategy": "no"})


def test_the_benchmark_runs_the_shipped_recipe_and_gives_the_peer_lmctls_training_rows(tmp_path):
    """scripts/bench/multilabel.py: lmctl's side is configs/finetune/goemotions-minilm.yaml (--quick: fewer
    rows, one epoch); the Trainer side gets the rows lmctl trains on, read through lmctl's own split."""
    from scripts.bench import multilabel as bench

    rows = [{"text": f"comment {i}", "label": f"{i % 28},{(i + 5) % 28}" if i % 3 else str(i % 28), "id": f"e{i}"}
            for i in range(300)]
    write_rows(tmp_path / "train.tsv", rows)
    args = bench.parse_args(["--quick", "--data", str(tmp_path)])
    cfg = config_lib.validate(bench.lmctl_config(args, str(tmp_path / "model"), tmp_path))
    assert cfg.task == "multi-label-classification" and cfg.training.threshold == "tune"
    assert (cfg.data.max_train_samples, cfg.data.validation_split, cfg.training.num_epochs) == (1000, 200, 1)
    assert len(cfg.data.label_names) == 28 and cfg.training.min_labels == 1
    written = tmp_path / "peer.jsonl"
    assert bench.lmctl_training_rows(bench.lmctl_config(args, "m", tmp_path), written) == 100  # 300 less 200
    peer = [json.loads(line) for line in written.read_text().splitlines()]
    by_text = {r["text"]: r["label"] for r in rows}
    assert all(by_text[r["text"]] == r["label"] for r in peer) and len({r["text"] for r in peer}) == 100
    assert bench.multi_hot("3,1", 4) == [0.0, 1.0, 0.0, 1.0]
