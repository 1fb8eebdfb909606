"""Datasets → DataLoaders: length-grouped training batches, length-sorted inference batches.

Dynamic padding only pays when a batch holds texts of similar length, so training draws
batches from length-sorted megabatches (transformers' LengthGroupedSampler, seeded per
epoch) and inference runs longest-first, carrying each row's index so results are put
back in input order whatever order the batches ran in.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler

from lmctl.engine.light import longest_first


class Indexed(Dataset):
    """An encoded `datasets.Dataset` whose rows carry their position, to put results back in order."""

    def __init__(self, encoded):
        self.rows = encoded

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = self.rows[int(i)]
        row["index"] = int(i)
        return row

    def __getitems__(self, indices: list[int]) -> list[dict]:
        # The DataLoader asks for a whole batch at once: one Arrow read instead of one per row
        # (per-row reads took half of predict's time on a tiny model).
        columns = self.rows[[int(i) for i in indices]]
        return [{**{k: v[j] for k, v in columns.items()}, "index": int(i)} for j, i in enumerate(indices)]


def _model_features(collate, with_index: bool = False):
    """Drop bookkeeping fields (`length`, predict's `truncated`; `index`, returned beside the batch)
    before the task collates."""

    def fn(features: list[dict]) -> dict:
        for f in features:
            f.pop("length", None)
            f.pop("truncated", None)
        index = torch.tensor([f.pop("index") for f in features]) if with_index else None
        batch = collate(features)
        if with_index:
            batch["index"] = index
        return batch

    return fn


def train_dataloader(encoded, collate, batch_size: int, group_by_length: bool | str, seed: int,
                     num_workers: int = 0):
    """Returns (dataloader, sampler); reseed the sampler with `reseed(sampler, epoch)`.
    `group_by_length`: True, length-grouped batches in megabatch order; "shuffled", the same
    batches in random order; False, random batches.

    A streamed corpus (`datasets.IterableDataset`) has no sampler: it is shuffled through a
    buffer when read, and `reseed` sets its epoch instead.
    """
    from datasets import IterableDataset

    if isinstance(encoded, IterableDataset):
        loader = DataLoader(encoded, batch_size=batch_size, collate_fn=_model_features(collate))
        return loader, encoded
    generator = torch.Generator().manual_seed(seed)
    if group_by_length:
        from transformers.trainer_pt_utils import LengthGroupedSampler

        grouped = ShuffledLengthGroupedSampler if group_by_length == "shuffled" else LengthGroupedSampler
        sampler = grouped(batch_size, lengths=list(encoded["length"]), generator=generator)
    else:
        sampler = RandomSampler(range(len(encoded)), generator=generator)
    # The loader's own generator: creating an iterator then draws no number from the global RNG,
    # so a run resumed mid-epoch sees the same dropout masks as an uninterrupted one.
    loader = DataLoader(encoded, batch_size=batch_size, sampler=sampler, collate_fn=_model_features(collate),
                        num_workers=num_workers, drop_last=False, generator=torch.Generator().manual_seed(seed))
    return loader, sampler


class ShuffledLengthGroupedSampler(Sampler):
    """LengthGroupedSampler's batches (the same padding) in random order. Its own order runs each
    megabatch (50 batches) from the longest texts to the shortest, so the model sees long texts, then
    short ones, and again: on CoNLL-2003, where a sentence's length tells its kind (short headlines
    and score lines, long news prose), grouped batches cost ~1.6 entity-F1 points against random
    ones (docs/benchmarks.md#named-entities-conll-2003). The batch of the longest texts stays first
    (an out-of-memory error shows at once) and a short last batch stays last (the loader cuts
    batches from this order in `batch_size` steps)."""

    def __init__(self, batch_size: int, lengths: list[int], generator: torch.Generator):
        self.batch_size, self.lengths, self.generator = batch_size, lengths, generator

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        from transformers.trainer_pt_utils import get_length_grouped_indices

        indices = get_length_grouped_indices(self.lengths, self.batch_size, generator=self.generator)
        batches = [indices[i:i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        last = [batches.pop()] if len(batches) > 1 and len(batches[-1]) < self.batch_size else []
        first, rest = batches[:1], batches[1:]
        order = torch.randperm(len(rest), generator=self.generator).tolist()
        return iter([i for batch in first + [rest[k] for k in order] + last for i in batch])


def reseed(sampler, seed: int, epoch: int) -> None:
    # A fixed per-epoch seed makes the batch order a function of (seed, epoch) alone,
    # which is what lets a resumed run see exactly the batches an uninterrupted one would.
    if hasattr(sampler, "set_epoch") and not hasattr(sampler, "generator"):
        sampler.set_epoch(epoch)  # a streamed corpus: its shuffle buffer is seeded by epoch
    else:
        sampler.generator.manual_seed(seed + epoch)


class LongestFirst(Sampler):
    """Batches of indices, longest texts first (least padding, and memory errors show up at once).

    `max_tokens`: a budget of padded tokens per batch as well: a batch holds at most
    max(1, max_tokens // its longest length) rows, so the long texts at the start come in small
    batches (no out-of-memory on the first batch) and the short ones after them in full ones.
    """

    def __init__(self, lengths: list[int], batch_size: int, max_tokens: int | None = None):
        self.batch_size = batch_size  # Accelerate reads this to shard batches
        self.batches = longest_first(lengths, batch_size, max_tokens)  # the plan the torch-free loop runs too

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def inference_dataloader(encoded, collate, batch_size: int, max_tokens: int | None = None):
    # [:] reads the column into a list at once: item by item, each is an Arrow access.
    lengths = encoded["length"][:] if "length" in encoded.column_names else [0] * len(encoded)
    return DataLoader(Indexed(encoded), batch_sampler=LongestFirst(lengths, batch_size, max_tokens),
                      collate_fn=_model_features(collate, with_index=True), generator=torch.Generator())


def collated_batches(encoded, collate, batch_size: int) -> list[dict]:
    """All of `encoded` as model-input batches, longest first, without the row index: for code that
    runs a model outside the inference loop (an export's check, pruning's importance scores)."""
    batches = []
    for batch in inference_dataloader(encoded, collate, batch_size):
        batch.pop("index")
        batches.append(batch)
    return batches
