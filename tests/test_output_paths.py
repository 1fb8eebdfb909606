"""Every path a command writes is checked before any model loads (one line, exit 2), and predict
on an input with a header but no rows writes an empty output with a warning (exit 0)."""

from __future__ import annotations

import pytest

from helpers import cli, sentiment_rows, write_rows


@pytest.fixture
def places(tmp_path):
    """A folder, a file, and a path under that file."""
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("kept")
    afile = tmp_path / "afile"
    afile.write_text("kept")
    return folder, afile, afile / "x.jsonl"


def _one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("flag", ["--output", "--explain-html"])
def test_predict_paths_fail_before_the_model_loads(places, tmp_path, flag):
    folder, afile, under = places
    rows = write_rows(tmp_path / "in.tsv", sentiment_rows(4, 1))
    # --model names nothing at all: the path check comes first, so it is the error a user sees.
    for target, words in ((folder, "is a directory"), (under, "is a file, not a folder")):
        line = _one_line(cli("predict", "--model", tmp_path / "no-model", "--input", rows, flag, target, code=2))
        assert line.startswith(f"error: {flag} {target}: ") and words in line
    assert afile.read_text() == "kept" and (folder / "keep.txt").read_text() == "kept"


def test_evaluate_compare_export_and_prune_paths_fail_up_front(places, tmp_path):
    folder, afile, under = places
    line = _one_line(cli("evaluate", "--model", tmp_path / "no-model", "--data", afile, "--output", folder, code=2))
    assert line.startswith(f"error: --output {folder}: is a directory")
    line = _one_line(cli("compare", str(tmp_path / "runs-*"), "--plot", under, code=2))
    assert line.startswith(f"error: --plot {under}: {afile} is a file, not a folder")
    line = _one_line(cli("export", "--model", tmp_path / "no-model", "--output", afile, code=2))
    assert line.startswith(f"error: --output {afile}: exists and is a file")
    line = _one_line(cli("prune", "--model", tmp_path / "no-model", "--output", under, "--layers", "1",
                         "--data", afile, code=2))
    assert line.startswith(f"error: --output {under}: {afile} is a file, not a folder")


def test_predict_creates_missing_folders_of_its_output(tiny_models, tmp_path):
    rows = write_rows(tmp_path / "in.tsv", [{"text": r["sentence"]} for r in sentiment_rows(3, 1)])
    output = tmp_path / "new" / "nested" / "preds.jsonl"
    cli("predict", "--model", tiny_models["bert"], "--input", rows, "--output", output)
    assert len(output.read_text().splitlines()) == 3


def test_predict_on_a_header_without_rows_writes_an_empty_output(tiny_models, tmp_path):
    header_only = tmp_path / "nightly.tsv"
    header_only.write_text("text\n")
    output = tmp_path / "preds.jsonl"
    result = cli("predict", "--model", tiny_models["bert"], "--input", header_only, "--output", output)
    assert output.read_text() == ""
    assert "has a header but no data rows; no predictions written" in result.stderr
    # A wrong model path is still an error, rows or not.
    line = _one_line(cli("predict", "--model", tmp_path / "no-model", "--input", header_only, "--output", output,
                         code=2))
    assert "--model" in line and "not found" in line
