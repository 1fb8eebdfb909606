"""predict --explain: Integrated Gradients attributions merged to words, checked where the answer
is known (a label decided by one keyword, for each family), against IG's completeness property
(attributions sum to f(input) - f(baseline)), as an HTML page looked at in headless Chromium,
and one-line refusals for tasks without explanations."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import chromium, cli, keyword_rows, train_keyword_model


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def predictions(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize("family", ["bert", "gpt2", "t5"])
def test_the_deciding_keyword_ranks_first(tiny_models, tmp_path, family, one_thread):
    run = train_keyword_model(tmp_path, family, tiny_models)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["eval_accuracy"] >= 0.95, metrics  # the model did learn the rule
    rows = [r for r in keyword_rows(100, 2) if r["keyword"]]
    src = write_jsonl(tmp_path / "explain.jsonl", rows)
    records = predictions(cli("predict", "--model", run, "--input", src, "--explain", "--explain-steps", "32"))
    assert len(records) == len(rows)
    first = 0
    for row, record in zip(rows, records):
        words = [w for w, _ in record["attributions"]]
        assert " ".join(words) == row["text"]  # word pieces merged back into the text's words
        top = max(record["attributions"], key=lambda ws: ws[1])[0]
        first += top == row["keyword"]
    assert first / len(rows) >= 0.9, f"{family}: keyword ranked first in {first} of {len(rows)} rows"


def test_pair_attributions_add_up_to_the_output_change(tiny_models, tmp_path, one_thread):
    """Completeness: the words' attributions sum to f(input) - f(baseline) up to the reported delta."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = tiny_models["bert"]
    rows = [{"a": r["text"], "b": s["text"], "label": int(r["keyword"] == s["keyword"])}
            for r, s in zip(keyword_rows(200, 3), keyword_rows(200, 4))]
    cfg = {"task": "text-classification", "model": {"name_or_path": str(model_dir)},
           "data": {"train_file": str(write_jsonl(tmp_path / "pairs.jsonl", rows)), "text_column": "a",
                    "text_pair_column": "b", "validation_split": 0.1},
           "training": {"max_steps": 10, "batch_size": 16, "learning_rate": 1e-3, "max_length": 48},
           "output_dir": str(tmp_path / "run")}
    (tmp_path / "pairs.yaml").write_text(yaml.safe_dump(cfg))
    cli("finetune", tmp_path / "pairs.yaml")
    src = write_jsonl(tmp_path / "in.jsonl", rows[:5])
    records = predictions(cli("predict", "--model", tmp_path / "run", "--input", src, "--explain"))
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "run")
    for row, record in zip(rows, records):
        assert " ".join(w for w, _ in record["pair_attributions"]) == row["b"]
        enc = tokenizer(row["a"], row["b"], return_tensors="pt")
        ids = enc["input_ids"]
        special = torch.tensor(tokenizer.get_special_tokens_mask(ids[0].tolist(), already_has_special_tokens=True))
        baseline = torch.where(special.bool(), ids[0], tokenizer.pad_token_id)[None]
        target = model.config.label2id[record["label"]]
        with torch.no_grad():
            change = float(model(input_ids=ids).logits[0, target] - model(input_ids=baseline).logits[0, target])
        total = sum(v for _, v in record["attributions"] + record["pair_attributions"])
        assert total - record["convergence_delta"] == pytest.approx(change, abs=2e-5)
        assert abs(record["convergence_delta"]) < 0.05 * max(abs(change), 1e-3)


@pytest.fixture(scope="module")
def keyword_page(keyword_bert_run, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explain-page")
    run = keyword_bert_run
    rows = keyword_rows(6, 5) + [{"text": "the chef <found> a <b>bold</b> & \"odd\" map"}]
    page = tmp / "page.html"
    result = cli("predict", "--model", run, "--input", write_jsonl(tmp / "in.jsonl", rows), "--explain-html", page,
                 "--output", tmp / "out.jsonl")
    assert result.stdout == ""
    records = [json.loads(line) for line in (tmp / "out.jsonl").read_text().splitlines()]
    return page, rows, records


def test_explanation_page_is_self_contained(keyword_page):
    page, rows, records = keyword_page
    text = page.read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert text.count('<span class="w"') == sum(len(r["attributions"]) for r in records)
    for record in records:
        assert f">{record['label']}<" in text and f"{record['score']:.3f}" in text
    # The user's text is escaped, never markup.
    assert "&lt;" in text and "&amp;" in text and "&quot;" in text and "<b>" not in text and "<found>" not in text


def test_explanation_page_in_headless_chromium(keyword_page, tmp_path):
    browser = chromium()
    from matplotlib import image

    page, rows, records = keyword_page
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1000,600", f"--screenshot={shot}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (600, 1000)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    green = (g > r + 0.15) & (g > b + 0.15)  # words shaded for the label
    red = (r > g + 0.15) & (r > b + 0.15)  # words shaded against it (the legend has both)
    dark = pixels.max(-1) < 0.3  # text
    assert green.sum() > 2000 and red.sum() > 500 and dark.sum() > 2000
    # One shaded row per record under the header: green reaches at least as far down as the last record's row.
    rows_with_green = green.any(axis=1).nonzero()[0]
    assert rows_with_green.max() - rows_with_green.min() > 30 * len(records)


def test_explain_on_a_task_without_explanations_is_one_line(tiny_models, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("the cat found the movie\n")
    result = cli("predict", "--model", tiny_models["gpt2"], "--task", "causal-lm", "--input", src, "--explain", code=2)
    assert result.stderr.strip() == ("error: --explain: task 'causal-lm' has no explanation; explanations are for "
                                     "text-classification models (single texts or pairs)")
