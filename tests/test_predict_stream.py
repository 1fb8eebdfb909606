"""`lmctl predict` streams its input: read, run and written chunk by chunk, in input order, with the
output of one pass over the whole input; --max-tokens changes the batches, not the predictions;
reranking still sees every candidate of a query; memory does not grow with the input; --output
appears whole or not at all, and a bad row in a later chunk is named by its row in the input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import cli, plain_scores, sentiment_rows, write_config, write_rows
from lmctl import data
from lmctl.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread: see conftest.py

ROWS = [{"sentence": r["sentence"]} for r in sentiment_rows(50, 7)]
TEXTS = [r["sentence"] for r in ROWS]


@pytest.fixture(scope="module")
def run(tiny_models, tmp_path_factory) -> Path:
    """A tiny BERT sentiment classifier that learnt the task, so predictions differ between rows."""
    tmp = tmp_path_factory.mktemp("stream")
    train = write_rows(tmp / "train.tsv", sentiment_rows(200, 0))
    dev = write_rows(tmp / "dev.tsv", sentiment_rows(100, 1))
    cli("finetune", write_config(tmp / "c.yaml", tiny_models["bert"], train, dev, tmp / "run",
                                 training={"logging_steps": 50}))
    return tmp / "run"


@pytest.fixture(scope="module")
def expected(run) -> list[dict]:
    """Each text's label and scores from transformers alone: one text at a time, no batching, no lmctl."""
    return [{"label": max(scores, key=scores.get), "scores": scores} for scores in plain_scores(run, TEXTS)]


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def same_predictions(a: list[dict], b: list[dict]) -> None:
    """Row for row: the same text and label; scores equal up to float noise (batches pad differently)."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert {k: v for k, v in x.items() if k not in ("score", "scores")} == \
            {k: v for k, v in y.items() if k not in ("score", "scores")}
        assert x["scores"] == pytest.approx(y["scores"], abs=1e-5)


def write_input(fmt: str, d: Path) -> tuple[list[str], str | None]:
    """(--input args, stdin text) holding ROWS in `fmt`."""
    if fmt == "stdin":
        return ["--input", "-"], "".join(t + "\n" for t in TEXTS)
    if fmt == "parquet":
        import pandas as pd

        path = d / "in.parquet"
        pd.DataFrame(ROWS).to_parquet(path)
        return ["--input", str(path)], None
    return ["--input", str(write_rows(d / f"in.{fmt}", ROWS))], None


# ---- chunks give the output of one pass ---------------------------------------------------------


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "txt", "parquet", "stdin"])
def test_chunked_output_equals_one_pass_in_input_order(run, expected, fmt, tmp_path):
    args, stdin = write_input(fmt, tmp_path)
    whole = cli("predict", "--model", run, *args, input=stdin)  # 50 rows: one chunk
    # 7 rows a chunk, 3 a batch: 8 chunks, each run longest-first in several batches.
    chunked = cli("predict", "--model", run, *args, "--chunk-rows", "7", "--batch-size", "3", input=stdin)
    records = jsonl(chunked.stdout)
    same_predictions(records, jsonl(whole.stdout))
    assert [r["sentence"] for r in records] == TEXTS
    for record, want in zip(records, expected):
        assert record["label"] == want["label"]
        assert record["scores"] == pytest.approx(want["scores"], abs=1e-4)
    assert {r["label"] for r in records} == {"negative", "positive"}  # so a shuffled order would show
    # Progress counts rows, of a total counted up front where the input is a file.
    last = [line for line in chunked.stderr.splitlines() if line.startswith("predict ")][-1]
    assert last.startswith("predict 50  " if fmt == "stdin" else "predict 50/50  ") and "rows/s" in last


def test_truncation_is_reported_once_for_the_whole_input(run, tmp_path):
    from transformers import AutoTokenizer

    src = write_rows(tmp_path / "in.tsv", ROWS)
    result = cli("predict", "--model", run, "--input", src, "--chunk-rows", "7", "--set", "training.max_length=12")
    tokenizer = AutoTokenizer.from_pretrained(run)
    longer = sum(len(tokenizer(t)["input_ids"]) > 12 for t in TEXTS)
    assert 0 < longer < len(TEXTS)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {src}: {longer} of 50 examples ({100 * longer / 50:.1f}%) are longer than "
                        "max_length=12 tokens and were truncated"]


def test_counted_warnings_add_up_over_chunks_and_print_once():
    # What predict does with every "N of M rows" warning a task gives (truncation, QA questions cut,
    # prompts that fill max_length): one line per kind for the whole input, none if it failed.
    from helpers import Recorder

    console = Recorder()
    cut = lambda n, total: f"in.tsv: {n} of {total} examples were truncated"  # noqa: E731
    empty = lambda n, total: f"in.tsv: {n} of {total} prompts fill max_length"  # noqa: E731
    with console.summed_counts():
        for n in (2, 0, 3):
            console.warn_count(n, 10, cut)
            console.warn_count(0, 10, empty)
    assert console.warnings == ["in.tsv: 5 of 30 examples were truncated"]
    console.warnings.clear()
    with pytest.raises(ValueError), console.summed_counts():
        console.warn_count(2, 10, cut)
        raise ValueError("row 7 is bad")
    assert console.warnings == []
    console.warn_count(2, 10, cut)  # outside: at once
    assert console.warnings == ["in.tsv: 2 of 10 examples were truncated"]


def _whole_and_chunked(path: Path, chunk_rows: int) -> tuple[list[dict], list[dict]]:
    columns = ("sentence",)
    whole = data.read_table(path, "--input", columns).to_list()
    chunks = list(data.read_chunks(str(path), "--input", columns, chunk_rows))
    return whole, [row for chunk in chunks for row in chunk.to_list()]


@pytest.mark.parametrize("name,content", [
    # "NA" and "null" are words, a quoted cell holds a line break, an empty cell is missing.
    ("in.csv", 'sentence,n\nNA,1\nnull,2\n"two\nlines",3\n,4\nlast,5\n'),
    ("in.tsv", "sentence\tn\nNA\t1\nsay \"hi\"\t2\n\t3\nlast\t4\n"),
    ("in.txt", "one\r\ntwo\n\nfour\rfive\u2028six\nseven"),  # every line break str.splitlines knows
    ("in.jsonl", '{"sentence": "a", "n": 1}\n\n{"sentence": "b", "n": null}\n{"sentence": "c", "n": 3}\n'),
])
def test_chunk_readers_read_what_the_whole_file_reader_reads(name, content, tmp_path):
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + content.encode())  # with a byte-order mark, as GLUE's MRPC files
    whole, chunked = _whole_and_chunked(path, 2)
    assert chunked == whole and len(whole) >= 3


def test_bad_files_fail_as_they_do_read_whole(tmp_path):
    def error(name: str, content: bytes, rows: int = 2) -> str:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(UserError) as exc:
            list(data.read_chunks(str(path), "--input", ("sentence",), rows))
        return str(exc.value)

    assert "no data rows" in error("head.csv", b"sentence,label\n")
    assert "is empty" in error("empty.tsv", b"")
    # A bad byte or a mixed column past the first chunk: named by its line / row in the file.
    assert "line 6" in error("latin.tsv", b"sentence\na\nb\nc\nd\ncaf\xe9\nf\n") and "UTF-8" in error("l2.tsv", b"s\n\xe9\n")
    mixed = error("mixed.jsonl", b'{"sentence": "a"}\n{"sentence": "b"}\n{"sentence": "c"}\n{"sentence": 4}\n')
    assert "'sentence' mixes text and numbers: row 3 holds 'c', row 4 holds 4" in mixed
    assert "cannot parse as jsonl" in error("bad.jsonl", b'{"sentence": "a"}\n{"sentence": "b"}\n{"sentence": \n')


# ---- --max-tokens -----------------------------------------------------------------------------------


def test_longest_first_holds_a_token_budget():
    from lmctl.engine.batching import LongestFirst

    lengths = [10, 3, 7, 50, 2, 3]
    # Longest first: 50 | 10 7 | 3 3 2 (worked by hand). 20 // 50 = 0, so the 50 sits alone; 20 // 10 = 2;
    # 20 // 3 = 6, capped by the batch size 4.
    assert list(LongestFirst(lengths, 4, max_tokens=20)) == [[3], [0, 2], [1, 5, 4]]
    assert list(LongestFirst(lengths, 4)) == [[3, 0, 2, 1], [5, 4]]


def test_max_tokens_changes_the_batches_not_the_predictions(run, tmp_path, monkeypatch):
    from lmctl.engine import batching, infer

    batches = []  # per run: each batch's token lengths

    def recording(encoded, collate, batch_size, max_tokens=None):
        loader = batching.inference_dataloader(encoded, collate, batch_size, max_tokens)
        lengths = encoded["length"][:]
        batches.append([[lengths[i] for i in batch] for batch in loader.batch_sampler])
        return loader

    monkeypatch.setattr(infer, "inference_dataloader", recording)
    path = write_rows(tmp_path / "in.tsv", ROWS)
    plain = jsonl(cli("predict", "--model", run, "--input", path, "--batch-size", "16").stdout)
    budget = jsonl(cli("predict", "--model", run, "--input", path, "--batch-size", "16", "--max-tokens", "40").stdout)
    same_predictions(plain, budget)
    plain_batches, budget_batches = batches
    assert [len(b) for b in plain_batches] == [16, 16, 16, 2]
    assert sum(len(b) for b in budget_batches) == 50 and len(budget_batches) > len(plain_batches)
    for batch in budget_batches[:-1]:
        assert len(batch) == min(16, max(1, 40 // max(batch)))  # as many rows as the budget holds
    assert all(len(b) * max(b) <= 40 for b in budget_batches)  # texts are short: no row is over budget

    # evaluate takes the budget too, with the same metrics.
    dev = yaml.safe_load((run / "config.yaml").read_text())["data"]["validation_file"]
    plain_eval, budget_eval = tmp_path / "plain.json", tmp_path / "budget.json"
    cli("evaluate", "--model", run, "--data", dev, "--output", plain_eval)
    cli("evaluate", "--model", run, "--data", dev, "--output", budget_eval, "--max-tokens", "40")
    assert json.loads(budget_eval.read_text())["metrics"] == pytest.approx(json.loads(plain_eval.read_text())["metrics"],
                                                                           abs=1e-6)
    result = cli("predict", "--model", run, "--input", path, "--max-tokens", "0", code=2)
    assert "--max-tokens" in result.stderr


# ---- tasks that order rows across the input -----------------------------------------------------


def test_reranking_groups_candidates_across_chunks(tiny_models, tmp_path):
    queries = {"q1": "happy", "q2": "cold", "q3": "quiet", "q4": "bright"}
    words = list(queries.values())

    def rows(qid: str, labelled: bool) -> list[dict]:
        keyword = queries[qid]
        out = [{"qid": qid, "query": keyword, "passage": f"The cat was {w}.", "label": int(w == keyword)}
               for w in [keyword] + [w for w in words if w != keyword][:2]]
        return out if labelled else [{k: v for k, v in r.items() if k != "label"} for r in out]

    train = write_rows(tmp_path / "train.jsonl", [r for q in queries for r in rows(q, True)] * 4)
    cfg = {"task": "reranking", "model": {"name_or_path": str(tiny_models["bert"])},
           "data": {"train_file": str(train), "validation_file": str(train), "text_column": "query",
                    "text_pair_column": "passage", "label_column": "label", "query_id_column": "qid"},
           "training": {"max_steps": 4, "batch_size": 8, "max_length": 32, "logging_steps": 4},
           "output_dir": str(tmp_path / "run")}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    cli("finetune", tmp_path / "c.yaml")
    # Interleaved: a query's three candidates are rows 1, 5, 9 (...), so 2-row chunks would part them.
    by_query = [rows(q, False) for q in queries]
    interleaved = [group[i] for i in range(3) for group in by_query]
    path = write_rows(tmp_path / "pred.jsonl", interleaved)
    whole = jsonl(cli("predict", "--model", tmp_path / "run", "--input", path).stdout)
    chunked = jsonl(cli("predict", "--model", tmp_path / "run", "--input", path, "--chunk-rows", "2").stdout)
    assert chunked == whole
    assert [r["qid"] for r in chunked] == [q for q in queries for _ in range(3)]
    for q in queries:
        mine = [r for r in chunked if r["qid"] == q]
        assert [r["rank"] for r in mine] == [1, 2, 3]
        assert [r["score"] for r in mine] == sorted((r["score"] for r in mine), reverse=True)


# ---- --output and errors in later chunks --------------------------------------------------------


def test_output_appears_whole_and_a_bad_row_later_leaves_none(run, tmp_path):
    src = write_rows(tmp_path / "in.tsv", ROWS)
    out = tmp_path / "pred.jsonl"
    result = cli("predict", "--model", run, "--input", src, "--chunk-rows", "7", "--output", out)
    assert result.stdout == ""
    same_predictions(jsonl(out.read_text()), jsonl(cli("predict", "--model", run, "--input", src).stdout))

    bad_rows = [{"id": i, **r} for i, r in enumerate(ROWS[:30])]  # two columns: an empty cell is not a blank line
    bad_rows[22]["sentence"] = ""  # row 23: in the third chunk of 10
    bad = write_rows(tmp_path / "bad.tsv", bad_rows)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = cli("predict", "--model", run, "--input", bad, "--chunk-rows", "10", "--output", tmp_path / "new.jsonl",
                 code=2)
    error = result.stderr.splitlines()[-1]
    assert error.startswith("error: ") and f"{bad}: row 23: empty text" in error, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temporary file left
    # An existing output stays as it was.
    kept = out.read_text()
    cli("predict", "--model", run, "--input", bad, "--chunk-rows", "10", "--output", out, code=2)
    assert out.read_text() == kept


# ---- memory ---------------------------------------------------------------------------------------

# Runs lmctl as a child and reports the child's peak resident memory (kB on Linux, bytes on macOS).
PEAK_RSS = ("import resource, subprocess, sys\n"
            "code = subprocess.run(sys.argv[1:]).returncode\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)\n")


def peak_rss_mb(run: Path, src: Path, out: Path) -> float:
    cmd = [sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "lmctl", "predict", "--model", str(run),
           "--input", str(src), "--output", str(out), "--chunk-rows", "2000", "--batch-size", "64"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # see one_thread() in conftest.py
    peak, code = proc.stdout.split()
    assert code == "0", proc.stderr
    return int(peak) / (1024 * 1024 if sys.platform == "darwin" else 1024)


@pytest.mark.slow
def test_memory_does_not_grow_with_the_input(run, tmp_path):
    small_rows = [{"sentence": r["sentence"]} for r in sentiment_rows(10_000, 3)]
    big_rows = small_rows * 10
    small = peak_rss_mb(run, write_rows(tmp_path / "small.tsv", small_rows), tmp_path / "small.jsonl")
    big = peak_rss_mb(run, write_rows(tmp_path / "big.tsv", big_rows), tmp_path / "big.jsonl")
    lines = (tmp_path / "big.jsonl").read_text().splitlines()
    assert len(lines) == len(big_rows)
    assert [json.loads(lines[i])["sentence"] for i in (0, 12_345, -1)] == \
        [big_rows[i]["sentence"] for i in (0, 12_345, -1)]
    # Most of the ~0.5 GB is torch and transformers, the same for any input, so a ratio would hide
    # growth: compare the difference (measured: under 1 MB). The input read whole cost about 135 MB
    # more here (1.5 kB a row); Accelerate keeping each chunk's loader, 21 MB.
    assert big - small < 10, (small, big)
