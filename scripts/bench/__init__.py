"""Benchmarks of lmctl against a plain Hugging Face Trainer script; common.py is what they share."""
