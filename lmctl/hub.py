"""Whether the Hugging Face hub may be asked: one answer for models and data sets alike."""

from __future__ import annotations

import os


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub itself reads it (1, true, on, yes; any case), so lmctl
    never tries the hub when the libraries it calls would refuse to."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "TRUE", "ON", "YES"}
