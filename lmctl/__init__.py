"""lmctl: one CLI for the pretrain → finetune workflow on Hugging Face models."""

__version__ = "0.1.0"
