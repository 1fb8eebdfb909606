"""The inference loop shared by evaluation during training, `lmctl evaluate` and `lmctl predict`."""

from __future__ import annotations

import numpy as np
import torch

from lmctl.engine.batching import inference_dataloader
from lmctl.engine.light import stack


def run_inference(accelerator, model, task, encoded, batch_size: int, progress=None,
                  max_tokens: int | None = None) -> dict:
    """Run `task.eval_step` over `encoded`; return per-example arrays in input order.

    Works the same on one process and many: batches are sharded by Accelerate, outputs
    gathered with `gather_for_metrics` (which drops the padding duplicates of the last
    batch), and rows put back by the index each one carried. `max_tokens`: a budget of
    padded tokens per batch besides `batch_size` (batching.LongestFirst; one process only, as
    Accelerate splits every batch between the processes and expects them all one size).
    """
    loader = accelerator.prepare(inference_dataloader(encoded, task.eval_collate, batch_size, max_tokens))
    was_training = model.training
    model.eval()
    n = len(encoded)
    columns: dict[str, list] = {}
    seen = 0
    with torch.no_grad():
        for batch in loader:
            index = batch.pop("index")
            out = task.eval_step(model, batch)
            out = {k: _pad(accelerator, v) for k, v in out.items()}
            if max_tokens:
                # gather_for_metrics trims the last batch to len % batch_size rows, which is wrong for
                # batches of varying size; they run on one process (run.py), with no duplicates to drop.
                gathered = accelerator.gather({"index": index, **out})
            else:
                gathered = accelerator.gather_for_metrics({"index": index, **out})
            rows = gathered["index"].cpu().numpy()
            for key, value in gathered.items():
                if key == "index":
                    continue
                store = columns.setdefault(key, [None] * n)
                for r, v in zip(rows, value.cpu().numpy()):
                    store[r] = v
            seen += len(rows)
            if progress is not None:
                progress.update(min(seen, n))
    # Accelerate keeps every loader it prepared (for save_state); kept, this one would hold its
    # encoded rows, and predict's chunks would add up (measured: 145 MB more for 1M rows than for 100k).
    accelerator._dataloaders.remove(loader)
    model.train(was_training)
    return {k: stack(v) for k, v in columns.items()}


def _pad(accelerator, value):
    # Sequence outputs (generated ids) differ in length between processes; gather needs one shape.
    if isinstance(value, torch.Tensor) and value.ndim >= 2 and accelerator.num_processes > 1:
        return accelerator.pad_across_processes(value, dim=1, pad_index=-100)
    return value
