"""`lmctl evaluate --fail-under METRIC=VALUE`: the CI gate.

Exit codes are the contract a CI job reads: 0 passed, 1 a gate failed, 2 the gate
itself is wrong (unknown metric, bad syntax), so a typo never passes as green.
"""

from __future__ import annotations

import json
import random
from functools import partial

import pytest

from helpers import NEGATIVE, POSITIVE, cli, sentence, sentiment_rows, write_config, write_rows

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread: see conftest.py

invoke = partial(cli, code=None)  # these tests check the exit code themselves


def three_class_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    kinds = {"positive": POSITIVE, "negative": NEGATIVE, "neutral": ["quiet", "slow", "strange"]}
    labels = list(kinds)
    return [{"sentence": sentence(rng, rng.choice(kinds[label])), "label": label}
            for label in (labels[i % 3] for i in range(n))]


def regression_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"sentence": sentence(rng, rng.choice(POSITIVE + NEGATIVE)), "label": rng.random()} for _ in range(n)]


@pytest.fixture(scope="module")
def trained(tiny_models, tmp_path_factory) -> dict:
    """A binary, a 3-class and a regression run; a few steps each (gates test the CLI, not quality)."""
    root = tmp_path_factory.mktemp("gates")
    out = {}
    for kind, rows in [("binary", sentiment_rows), ("multiclass", three_class_rows), ("regression", regression_rows)]:
        train = write_rows(root / f"{kind}-train.tsv", rows(48, 1))
        dev = write_rows(root / f"{kind}-dev.tsv", rows(24, 2))
        config = write_config(root / f"{kind}.yaml", tiny_models["bert"], train, dev, root / kind,
                              training={"max_steps": 4})
        result = invoke("finetune", config)
        assert result.exit_code == 0, result.stderr
        out[kind] = {"run": root / kind, "dev": dev}
    return out


def metrics_of(trained, kind: str, tmp_path) -> dict:
    out = tmp_path / f"{kind}.json"
    result = invoke("evaluate", "--model", trained[kind]["run"], "--data", trained[kind]["dev"], "--output", out)
    assert result.exit_code == 0, result.stderr
    return json.loads(out.read_text())


def test_gate_below_the_metric_passes(trained, tmp_path):
    out = tmp_path / "eval.json"
    result = invoke("evaluate", "--model", trained["binary"]["run"], "--data", trained["binary"]["dev"],
                    "--fail-under", "accuracy=0.0", "--output", out)
    assert result.exit_code == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["gates"] == {"thresholds": {"accuracy": 0.0}, "failed": []}
    assert "gate failed" not in result.stderr


def test_gate_equal_to_the_metric_passes(trained, tmp_path):
    # "below" is strict: a model exactly at the bar passes.
    accuracy = metrics_of(trained, "binary", tmp_path)["metrics"]["accuracy"]
    result = invoke("evaluate", "--model", trained["binary"]["run"], "--data", trained["binary"]["dev"],
                    "--fail-under", f"accuracy={accuracy!r}")
    assert result.exit_code == 0, result.stderr


def test_gate_above_the_metric_fails_with_exit_1(trained, tmp_path):
    out = tmp_path / "eval.json"
    result = invoke("evaluate", "--model", trained["binary"]["run"], "--data", trained["binary"]["dev"],
                    "--fail-under", "accuracy=1.01", "--fail-under", "f1=0", "--output", out)
    assert result.exit_code == 1, result.stderr
    assert "gate failed: accuracy" in result.stderr
    assert "f1" not in result.stderr.split("gate failed:")[1]  # only the failing gate is named
    # The report is still written, so CI can show what failed.
    report = json.loads(out.read_text())
    assert report["gates"]["thresholds"] == {"accuracy": 1.01, "f1": 0.0}
    assert len(report["gates"]["failed"]) == 1 and report["gates"]["failed"][0].startswith("accuracy")
    assert "accuracy" in result.stdout  # the metrics table is printed before the verdict


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_unknown_metric_exits_2_naming_the_metrics(trained, kind, tmp_path):
    reported = set(metrics_of(trained, kind, tmp_path)["metrics"])
    result = invoke("evaluate", "--model", trained[kind]["run"], "--data", trained[kind]["dev"],
                    "--fail-under", "loss=0", "--fail-under", "acuracy=0.5")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    # One line, and nothing else: the gate is checked before inference runs (no progress lines).
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: --fail-under: unknown metric 'acuracy'")
    named = set(lines[0].split("this task reports: ")[1].split(", "))
    # The names offered are exactly what the task reports (a gate on any of them works).
    assert named == reported
    assert result.stdout == ""


@pytest.mark.parametrize("gate", ["accuracy", "accuracy=", "accuracy=high", "=0.5", "accuracy:0.5"])
def test_bad_gate_syntax_exits_2(trained, gate):
    result = invoke("evaluate", "--model", trained["binary"]["run"], "--data", trained["binary"]["dev"],
                    "--fail-under", gate)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --fail-under '{gate}'") and "METRIC=NUMBER" in lines[0]
    assert result.stdout == ""
