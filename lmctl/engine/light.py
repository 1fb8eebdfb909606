"""Inference without torch: an ONNX export's session run on numpy batches, rows in input order.

What `lmctl predict` and `Predictor.predict` run on an ONNX export of a task whose encoding
needs no transformers (`Task.light_inputs`). It batches as the PyTorch loop does (infer.py:
the same longest-first batches under the same budgets, `longest_first` being the plan both
use), pads as transformers' DataCollatorWithPadding pads, and returns the outputs the task's
`eval_step` would (an exportable task's `eval_step` reads only its `onnx_outputs`), so the
records are those of the PyTorch loop on the same export, byte for byte.
"""

from __future__ import annotations

import numpy as np


def longest_first(lengths: list[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Batches of row indices, longest rows first; with `max_tokens`, a batch holds at most
    max(1, max_tokens // its longest length) rows (and at most `batch_size`)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, start = [], 0
    while start < len(order):
        longest = max(lengths[order[start]], 1)  # rows are sorted: the first is the longest
        size = batch_size if max_tokens is None else max(1, min(batch_size, max_tokens // longest))
        batches.append(order[start:start + size])
        start += size
    return batches


def pad(encoded, rows: list[int], names: list[str], tokenizer) -> dict[str, np.ndarray]:
    """The columns `names` of `rows`, padded to the batch's longest row as DataCollatorWithPadding
    pads (input ids with the pad id, attention mask with 0, token type ids with the pad type id;
    on the tokenizer's padding side), as int64 arrays."""
    fill = {"input_ids": tokenizer.pad_token_id, "attention_mask": 0, "token_type_ids": tokenizer.pad_token_type_id}
    width = max(len(encoded["input_ids"][r]) for r in rows)
    left = tokenizer.padding_side == "left"
    batch = {}
    for name in names:
        out = np.full((len(rows), width), fill[name], dtype=np.int64)
        column = encoded[name]
        for j, r in enumerate(rows):
            values = column[r]
            if left:
                out[j, width - len(values):] = values
            else:
                out[j, :len(values)] = values
        batch[name] = out
    return batch


def run_inference(model, tokenizer, encoded, batch_size: int, progress=None, max_tokens: int | None = None) -> dict:
    """`model` (an `onnx_model.OnnxModel`) over `encoded` (a table with the graph's inputs and a
    `length` column); per-row arrays of each output in input order."""
    n = len(encoded)
    columns: dict[str, list] = {}
    seen = 0
    for rows in longest_first(list(encoded["length"]), batch_size, max_tokens):
        outputs = model.run(pad(encoded, rows, model.inputs, tokenizer))
        for name, values in outputs.items():
            store = columns.setdefault(name, [None] * n)
            for r, v in zip(rows, values.astype(np.float32, copy=False)):
                store[r] = v
        seen += len(rows)
        if progress is not None:
            progress.update(seen)
    return {k: stack(v) for k, v in columns.items()}


def stack(rows: list):
    """Per-row arrays → one array (rows of different shapes: an object array)."""
    shapes = {np.shape(r) for r in rows}
    if len(shapes) == 1:
        return np.stack(rows)
    out = np.empty(len(rows), dtype=object)
    for i, r in enumerate(rows):
        out[i] = r
    return out
