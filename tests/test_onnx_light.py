"""An ONNX export predicts without torch: `lmctl predict` and `Predictor.predict` on an export of a
classifier (single texts, pairs, regression) or a reranker import no torch, transformers, datasets
or accelerate, and write the records the PyTorch loop writes on the same export, byte for byte.
Also: the tokenizer read from tokenizer.json encodes as transformers' does, the plain file reader
reads text cells as pandas does, and records of rows cut at max_length say `"truncated": true`."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import cli, sentiment_rows, write_config, write_rows

HEAVY = ("torch", "transformers", "datasets", "accelerate", "pandas")
LONG = "The old farmer was happy in the park again today, " * 6 + "and the band was brilliant."


def pair_rows(n: int, seed: int) -> list[dict]:
    """Pairs scored by whether both halves agree (a float label: regression)."""
    rows = sentiment_rows(2 * n, seed)
    return [{"sentence": a["sentence"], "other": b["sentence"], "label": float(a["label"] == b["label"])}
            for a, b in zip(rows[::2], rows[1::2])]


def rank_rows(n_queries: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    words = ["great", "boring", "warm", "cold"]
    return [{"qid": f"q{q}", "query": word, "passage": f"The chef was {rng.choice(words)}.",
             "label": int(rng.random() < 0.5)} for q in range(n_queries) for word in [rng.choice(words)] for _ in range(3)]


@pytest.fixture(scope="module")
def exports(tiny_models, tmp_path_factory) -> dict:
    """name → (run directory, ONNX export, input file): briefly trained tiny classifiers and a reranker."""
    tmp = tmp_path_factory.mktemp("light")
    short = {"num_epochs": 1, "max_length": 24, "logging_steps": 50}
    out = {}
    train, dev = write_rows(tmp / "train.tsv", sentiment_rows(48, 0)), write_rows(tmp / "dev.tsv", sentiment_rows(16, 1))
    rows = [{"sentence": r["sentence"]} for r in sentiment_rows(20, 5)] + [{"sentence": LONG}]
    single = write_rows(tmp / "input.jsonl", rows)
    for family in ("bert", "gpt2"):
        cli("finetune", write_config(tmp / f"{family}.yaml", tiny_models[family], train, dev, tmp / family,
                                     training=short))
        out[family] = (tmp / family, single)
    ptrain, pdev = write_rows(tmp / "ptrain.tsv", pair_rows(48, 2)), write_rows(tmp / "pdev.tsv", pair_rows(16, 3))
    cli("finetune", write_config(tmp / "pairs.yaml", tiny_models["bert"], ptrain, pdev, tmp / "pairs", training=short,
                                 data={"text_pair_column": "other"}))
    pin = [{k: r[k] for k in ("sentence", "other")} for r in pair_rows(12, 4)] + [{"sentence": LONG, "other": "A dog."}]
    out["pairs"] = (tmp / "pairs", write_rows(tmp / "pin.csv", pin))
    rtrain, rdev = write_rows(tmp / "rtrain.jsonl", rank_rows(16, 5)), write_rows(tmp / "rdev.jsonl", rank_rows(4, 6))
    cli("finetune", write_config(tmp / "rank.yaml", tiny_models["bert"], rtrain, rdev, tmp / "rank", training=short,
                                 data={"text_column": "query", "text_pair_column": "passage", "query_id_column": "qid"}),
        "--set", "task=reranking")
    rin = [{k: r[k] for k in ("qid", "query", "passage")} for r in rank_rows(5, 7)]
    out["rank"] = (tmp / "rank", write_rows(tmp / "rin.tsv", rin))
    result = {}
    for name, (run, data) in out.items():
        export = tmp / f"{name}-onnx"
        cli("export", "--model", run, "--output", export, "--format", "onnx")
        result[name] = (run, export, data)
    cli("export", "--model", tmp / "bert", "--output", tmp / "bert-int8", "--quantize", "int8")
    result["bert-int8"] = (tmp / "bert", tmp / "bert-int8", single)
    return result


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def light_cli(*args) -> tuple[list[dict], list[str]]:
    """`lmctl ARGS` in a fresh process: (the records it printed, the heavy modules loaded at its exit)."""
    code = ("import json, runpy, sys\n"
            f"sys.argv = ['lmctl', *{[str(a) for a in args]!r}]\n"
            "try:\n    runpy.run_module('lmctl', run_name='__main__')\n"
            "finally:\n"
            f"    print('MODULES', json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})), "
            "file=sys.stderr)\n")
    done = run_python(code)
    modules = json.loads(done.stderr.split("MODULES ", 1)[1].splitlines()[0])
    return [json.loads(line) for line in done.stdout.splitlines()], modules


def close(a, b) -> bool:
    """Records equal but for scores within 1e-5 (an fp32 export against PyTorch)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-5
    return a == b


@pytest.mark.parametrize("name", ["bert", "gpt2", "pairs", "rank", "bert-int8"])
def test_predict_on_an_export_imports_no_torch_and_writes_the_same_records(exports, name):
    from lmctl import Predictor

    run, export, data = exports[name]
    records, modules = light_cli("predict", "--model", export, "--input", data, "--batch-size", "4")
    assert modules == []
    # Byte for byte the records of the PyTorch loop on the same export (same batches, same padding)...
    from lmctl.data import read_table

    on_torch = Predictor(str(export), light=False, batch_size=4)
    assert not on_torch.light and Predictor(str(export)).light
    expected = on_torch.predict_table(read_table(data, "--input", on_torch.text_columns()), str(data))
    assert json.dumps(records) == json.dumps(expected)
    # ...and the run directory's, which an fp32 export matches to ~1e-6 (int8: the labels mostly).
    in_run = [json.loads(line) for line in cli("predict", "--model", run, "--input", data).stdout.splitlines()]
    assert len(records) == len(in_run)
    if name != "bert-int8":
        assert all(close(a, b) for a, b in zip(records, in_run)), (records, in_run)
    long = [r for r in records if r.get("sentence") == LONG]
    assert all(r["truncated"] is True for r in long) and sum("truncated" in r for r in records) == len(long)


def test_predictor_on_an_export_imports_no_torch(exports, tmp_path):
    from lmctl import Predictor

    _, export, _ = exports["gpt2"]
    rows = ["A dog was great in the park.", "The chef was cold.", LONG]
    code = ("import json, sys\nfrom lmctl import Predictor\n"
            f"p = Predictor({str(export)!r}, batch_size=2)\n"
            f"print(json.dumps(p.predict({rows!r})))\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n")
    lines = run_python(code).stdout.splitlines()
    assert json.loads(lines[1]) == []
    expected = Predictor(str(export), light=False, batch_size=2).predict(rows)
    assert lines[0] == json.dumps(expected)
    assert expected[2]["truncated"] is True and "truncated" not in expected[0]
    # A token budget makes the same batches on both loops.
    budget = dict(batch_size=8, max_tokens=30)
    assert json.dumps(Predictor(str(export), **budget).predict(rows * 3)) == \
        json.dumps(Predictor(str(export), light=False, **budget).predict(rows * 3))
    # Evaluation of an export keeps the PyTorch loop: the same metrics from either Predictor.
    labelled = [{"sentence": r["sentence"], "label": r["label"]} for r in sentiment_rows(10, 9)]
    assert Predictor(str(export)).evaluate(labelled) == Predictor(str(export), light=False).evaluate(labelled)


@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_the_plain_tokenizer_encodes_as_transformers_does(exports, name):
    from transformers import AutoTokenizer

    from lmctl.plain_tokenizer import PlainTokenizer

    _, export, _ = exports[name]
    ours, theirs = PlainTokenizer(export), AutoTokenizer.from_pretrained(str(export))
    assert (ours.pad_token_id, ours.padding_side, ours.pad_token_type_id) == \
        (theirs.pad_token_id, theirs.padding_side, theirs.pad_token_type_id)
    texts = ["The cat was happy.", LONG, "naïve café, ÜBER  spaces\tand\nlines", "x"]
    pairs = [LONG, "A dog.", "The chef was cold at school.", LONG + LONG]
    for args in [(texts, None), (texts, pairs)]:
        for kwargs in [dict(truncation=False), dict(truncation=True, max_length=16), dict(truncation=True, max_length=7)]:
            got, want = ours(*args, **kwargs), theirs(*args, verbose=False, **kwargs)
            for key in want:
                assert got[key] == want[key], (key, args, kwargs)


def test_records_of_rows_cut_at_max_length_say_so(exports, tiny_models):
    from lmctl import Predictor

    run, export, _ = exports["bert"]
    for p in (Predictor(str(run)), Predictor(str(export))):
        short, long = p.predict(["The cat was happy.", LONG])
        assert "truncated" not in short and long["truncated"] is True
    # A causal LM's prompts are cut too (at max_length - 1, the room after bos).
    lm = Predictor(str(tiny_models["gpt2"]), "score", task="causal-lm", overrides=["training.max_length=8"])
    short, long = lm.predict(["the cat", LONG])
    assert "truncated" not in short and long["truncated"] is True


def rows_of(tables) -> list[dict]:
    return [{c: t[c][i] if c in t.column_names else None for c in ("text", "other")}
            for t in tables for i in range(len(t))]


def test_the_plain_reader_reads_text_as_pandas_does(tmp_path):
    from lmctl import data
    from lmctl.errors import UserError

    files = {
        "a.csv": 'text,other,n\r\n"a ""quoted""\nline",NA,1\r\n\r\nnull,,2\r\nshort\r\n',
        "b.tsv": '\ufefftext\tother\n"bare quote\tnan\n\tx\n',
        "c.jsonl": '{"text": "one", "other": "x"}\n\n{"text": "two"}\n',
        "d.txt": "first line\nsecond line\n",
    }
    for name, content in files.items():
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        for rows in (1, 2, 10):  # chunks may cut elsewhere (pandas counts blank lines): compare the rows
            want, got = (rows_of(data.read_chunks(str(path), "--input", ("text", "other"), rows, plain=plain))
                         for plain in (False, True))
            assert got == want, name
    bad = {"e.csv": "text\na\nb,c\n", "f.jsonl": '{"text": "a"}\n{"text": 5}\n', "g.jsonl": '{"text": "a"}\n{"text"\n'}
    for name, content in bad.items():
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        with pytest.raises(UserError) as want:
            list(data.read_chunks(str(path), "--input", ("text",)))
        with pytest.raises(UserError) as got:
            list(data.read_chunks(str(path), "--input", ("text",), plain=True))
        prefix = lambda e: str(e.value).split(": ")[0:2] if name != "f.jsonl" else str(e.value)  # noqa: E731
        assert prefix(got) == prefix(want), (str(got.value), str(want.value))
    (tmp_path / "h.csv").write_bytes(b"text\nok\ncaf\xe9\n")
    with pytest.raises(UserError) as want:
        list(data.read_chunks(str(tmp_path / "h.csv"), "--input", ("text",)))
    with pytest.raises(UserError) as got:
        list(data.read_chunks(str(tmp_path / "h.csv"), "--input", ("text",), plain=True))
    assert str(got.value) == str(want.value)
