"""Training batch order: `training.group_by_length` true, "shuffled" or false."""

from __future__ import annotations

import pytest
import torch

from lmctl import config as config_lib
from lmctl.engine.batching import ShuffledLengthGroupedSampler, reseed


def batches(sampler, size: int) -> list[tuple[int, ...]]:
    order = list(sampler)
    return [tuple(order[i:i + size]) for i in range(0, len(order), size)]


def test_shuffled_grouping_keeps_the_batches_and_changes_their_order():
    """400 texts of random lengths, batch 8 (10 batches a megabatch, 5 megabatches, a short last batch of
    6): every text once, the very batches of transformers' grouping, the longest batch first, the
    short one last, the rest in another order; the order is a function of the seed (exact resume)."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    lengths = torch.randint(1, 200, (406,), generator=torch.Generator().manual_seed(0)).tolist()
    grouped = batches(LengthGroupedSampler(8, lengths=lengths, generator=torch.Generator().manual_seed(3)), 8)
    sampler = ShuffledLengthGroupedSampler(8, lengths, torch.Generator().manual_seed(3))
    shuffled = batches(sampler, 8)
    assert sorted(i for b in shuffled for i in b) == list(range(406))
    assert sorted(shuffled) == sorted(grouped)  # the same batches: the same padding
    assert shuffled[0] == grouped[0] and max(lengths) in [lengths[i] for i in shuffled[0]]
    assert len(shuffled[-1]) == 6 and shuffled[-1] == grouped[-1]
    assert shuffled != grouped
    # Grouped batches come sorted within each megabatch: their longest texts fall batch after batch.
    longest = [max(lengths[i] for i in b) for b in grouped[1:10]]
    assert longest == sorted(longest, reverse=True)
    assert [max(lengths[i] for i in b) for b in shuffled[1:10]] != longest
    reseed(sampler, 3, 0)
    assert batches(sampler, 8) == shuffled
    reseed(sampler, 3, 1)
    assert batches(sampler, 8) != shuffled


@pytest.mark.parametrize("value,expected", [(True, True), (False, False), ("shuffled", "shuffled")])
def test_group_by_length_values(value, expected):
    cfg = config_lib.validate({"task": "text-classification", "training": {"group_by_length": value}})
    assert cfg.training.group_by_length == expected


def test_an_unknown_grouping_is_refused():
    with pytest.raises(Exception, match="group_by_length"):
        config_lib.validate({"task": "text-classification", "training": {"group_by_length": "sorted"}})
