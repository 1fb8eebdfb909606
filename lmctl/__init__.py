"""lmctl: one CLI for the pretrain → finetune workflow on Hugging Face models."""

__version__ = "0.1.0"

# Installs the task registry that config validation asks for each task's rules (lmctl.wiring).
# Cheap: the registry holds import paths, and no task module loads until a config names its task.
from lmctl import tasks as _tasks  # noqa: E402,F401

__all__ = ["Predictor", "__version__"]


def __getattr__(name: str):
    # `from lmctl import Predictor` without importing torch for `lmctl --help` or config checks.
    if name == "Predictor":
        from lmctl.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'lmctl' has no attribute {name!r}")
