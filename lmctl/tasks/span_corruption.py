"""T5 span corruption: spans of the input replaced by sentinels, the model writes them out.

As in the T5 paper (Raffel et al., 2020, section 3.1.4): noise density 0.15, mean span
length 3; span lengths come from a random segmentation, each noise span becomes one
`<extra_id_k>` in the inputs (k counting up from 0), and the targets are the sentinels
followed by the tokens they replaced, then eos. Hugging Face ships this collator for
Flax only; this is a PyTorch port of the same algorithm. Blocks hold as many raw
tokens as make exactly `max_length` input tokens after corruption.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmctl.errors import UserError
from lmctl.families import T5
from lmctl.tasks.lm_common import (
    LanguageModelTask, decode_generated, encode_prompts, generate, generated_tokens, pad_batch,
    perplexity_metrics, token_nll,
)

if TYPE_CHECKING:
    import torch  # imported where tensors are made: config validation reads this module's class


def inputs_and_targets_length(inputs_length: int, noise_density: float, mean_span: float) -> tuple[int, int]:
    """Raw tokens per block, and target length, such that corrupted inputs are `inputs_length` long."""

    def lengths(tokens: int) -> tuple[int, int]:
        noise, spans = _noise_counts(tokens, noise_density, mean_span)
        return tokens - noise + spans + 1, noise + spans + 1

    # Corruption never lengthens by more than eos, so inputs_length - 1 raw tokens always fit.
    tokens = inputs_length - 1
    while lengths(tokens + 1)[0] <= inputs_length:
        tokens += 1
    return tokens, lengths(tokens)[1]


def _noise_counts(length: int, noise_density: float, mean_span: float) -> tuple[int, int]:
    """Noise tokens and noise spans in a block of `length`: at least one of each, and one kept token."""
    num_noise = min(max(int(round(length * noise_density)), 1), length - 1)
    num_spans = max(int(round(num_noise / mean_span)), 1)
    return num_noise, min(num_spans, num_noise, length - num_noise)


def _random_segmentation(num_items: int, num_segments: int) -> torch.Tensor:
    """Split `num_items` into `num_segments` non-empty parts at random; returns the part lengths."""
    import torch

    first = torch.zeros(num_items, dtype=torch.long)
    cuts = torch.randperm(num_items - 1)[: num_segments - 1] + 1
    first[cuts] = 1
    segment_id = torch.cumsum(first, 0)
    return torch.bincount(segment_id, minlength=num_segments)


def noise_mask(length: int, noise_density: float, mean_span: float) -> torch.Tensor:
    """Boolean mask of noise positions: about `noise_density` of the tokens in spans of mean `mean_span`."""
    import torch

    num_noise, num_spans = _noise_counts(length, noise_density, mean_span)
    noise_lengths = _random_segmentation(num_noise, num_spans)
    keep_lengths = _random_segmentation(length - num_noise, num_spans)
    interleaved = torch.stack([keep_lengths, noise_lengths], 1).reshape(-1)  # keep, noise, keep, noise, ...
    starts = torch.cumsum(interleaved, 0)[:-1]
    indicator = torch.zeros(length, dtype=torch.long)
    indicator[starts] = 1
    return torch.cumsum(indicator, 0) % 2 == 1


def corrupt(ids: list[int], mask: torch.Tensor, sentinels: list[int], eos: int) -> tuple[list[int], list[int]]:
    """Inputs keep the non-noise tokens with one sentinel per noise span; targets are the inverse."""

    def fill(keep: torch.Tensor) -> list[int]:
        out, span, prev = [], 0, False
        for token, drop in zip(ids, (~keep).tolist()):
            if drop:
                if not prev:
                    out.append(sentinels[span])
                    span += 1
                prev = True
            else:
                out.append(token)
                prev = False
        return out + [eos]

    return fill(~mask), fill(mask)


class SpanCorruptionTask(LanguageModelTask):
    name = "span-corruption"
    auto_class = "AutoModelForSeq2SeqLM"
    predict_modes = ("generate",)
    pretraining = True
    finetunes = False  # no downstream use of its own: T5 is finetuned as seq2seq

    @classmethod
    def check_config(cls, cfg) -> None:
        # A corrupted block holds at least one kept token, one sentinel and eos.
        if cfg.training.max_length < 3:
            raise ValueError(f"training.max_length: span corruption needs at least 3 tokens, "
                             f"not {cfg.training.max_length}")

    def __init__(self, cfg, console):
        super().__init__(cfg, console)
        self.sentinels: list[int] = []
        self.sentinel_index: dict[int, int] = {}  # token id -> k of <extra_id_k>

    # ---- data -------------------------------------------------------------------
    def on_bind(self) -> None:
        tokenizer = self.tokenizer
        ids = []
        for k in range(1000):
            token_id = tokenizer.convert_tokens_to_ids(T5.sentinel.format(k))
            if token_id is None or token_id == tokenizer.unk_token_id:
                break
            ids.append(token_id)
        if not ids:
            raise UserError("model: the tokenizer has no <extra_id_N> sentinel tokens; span-corruption needs a "
                            "T5-family tokenizer")
        self.sentinels = ids
        self.sentinel_index = {token_id: k for k, token_id in enumerate(ids)}

    def encode(self, ds, split: str, source: str):
        tokenizer = self.tokenizer
        if split == "predict":
            return encode_prompts(ds, self.corpus.column, tokenizer, self.max_length, source, self.console,
                                  add_special_tokens=True)
        p = self.cfg.pretraining
        raw_length, _ = inputs_and_targets_length(self.max_length, p.noise_density, p.mean_noise_span_length)
        tokenized = self.corpus.tokenize(ds, tokenizer, add_special_tokens=False, append_eos=False)
        tokenized = tokenized.select_columns(["input_ids"])
        return self.corpus.blocks(tokenized, raw_length, source)

    def collate(self, features: list[dict]) -> dict:
        p = self.cfg.pretraining
        rows = []
        for f in features:
            ids = list(f["input_ids"])
            if len(ids) < 2:
                inputs, labels = ids + [self.tokenizer.eos_token_id], [self.tokenizer.eos_token_id]
            else:
                mask = noise_mask(len(ids), p.noise_density, p.mean_noise_span_length)
                if int(mask.sum()) > 0 and len(self.sentinels) < _count_spans(mask):
                    raise UserError(f"span-corruption: a block needs {_count_spans(mask)} sentinels but the "
                                    f"tokenizer has {len(self.sentinels)}; lower training.max_length")
                inputs, labels = corrupt(ids, mask, self.sentinels, self.tokenizer.eos_token_id)
            rows.append({"input_ids": inputs, "labels": labels})
        batch = pad_batch([{"input_ids": r["input_ids"]} for r in rows], self.tokenizer.pad_token_id)
        labels = pad_batch([{"input_ids": r["labels"]} for r in rows], -100)["input_ids"]
        batch["labels"] = labels.contiguous()  # T5's loss in transformers v5 refuses strided labels
        return batch

    # ---- evaluation and prediction ------------------------------------------------
    def eval_step(self, model, batch) -> dict:
        if self.mode == "generate":
            return {"generated": generate(model, batch["input_ids"], batch["attention_mask"], self.cfg, self.tokenizer)}
        labels = batch.pop("labels")
        logits = model(**batch, labels=labels).logits
        nll, tokens = token_nll(logits, labels, shift=False)
        return {"nll": nll, "tokens": tokens}

    def compute_metrics(self, outputs: dict, encoded=None) -> dict:
        return perplexity_metrics(outputs)

    def predict_records(self, outputs: dict, encoded=None) -> list[dict]:
        records = []
        for i, ids in enumerate(outputs["generated"]):
            spans = self.spans(generated_tokens(self.tokenizer, ids))
            record = {"generated": decode_generated(self.tokenizer, ids),
                      "spans": {T5.sentinel.format(k): self.tokenizer.decode(v).strip() for k, v in spans.items()}}
            if encoded is not None:
                record["filled"] = self.fill(encoded[i]["input_ids"], spans)
            records.append(record)
        return records

    def spans(self, generated: list[int]) -> dict[int, list[int]]:
        """The model's answer `<extra_id_0> a <extra_id_1> b ...` → {0: ids of a, 1: ids of b}."""
        spans: dict[int, list[int]] = {}
        current = None
        for token_id in generated:
            if token_id in self.sentinel_index:
                current = self.sentinel_index[token_id]
                spans.setdefault(current, [])
            elif current is not None:
                spans[current].append(token_id)
        return spans

    def fill(self, input_ids: list[int], spans: dict[int, list[int]]) -> str:
        """The input text with each sentinel replaced by the model's span for it (empty if none)."""
        index = self.sentinel_index
        ids = [t for token_id in input_ids
               for t in (spans.get(index[token_id], []) if token_id in index else [token_id])]
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def _count_spans(mask: torch.Tensor) -> int:
    m = mask.long()
    return int(((m[1:] - m[:-1]) == 1).sum() + m[0])
