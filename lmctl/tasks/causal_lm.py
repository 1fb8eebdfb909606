"""Causal language modelling (GPT-2 family): next-token prediction on every token.

Pretraining and finetuning on plain text. Evaluation reports token-level loss and
perplexity; with `pretraining.eval_stride` smaller than max_length, perplexity is
computed with a sliding window (each token scored with up to max_length tokens of
context, as in the Hugging Face perplexity guide). `predict` generates continuations
(`--mode generate`) or scores each line (`--mode score`: total log-probability in
nats, token count and perplexity), the language model as a probability of text.
"""

from __future__ import annotations

import math

import numpy as np

from lmctl.tasks.lm_common import (
    LanguageModelTask, encode_prompts, generation_kwargs, pad_batch, perplexity_metrics, token_nll,
)


class CausalLMTask(LanguageModelTask):
    name = "causal-lm"
    auto_class = "AutoModelForCausalLM"
    predict_modes = ("generate", "score")

    # ---- data -------------------------------------------------------------------
    def _bos(self, tokenizer) -> list[int]:
        # Documents are separated by eos in training, so a text starts after bos/eos: score it that way.
        token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        return [token] if token is not None else []

    def encode(self, ds, tokenizer, split: str, source: str):
        self.tokenizer = tokenizer
        if split == "predict":
            encoded = encode_prompts(ds, self.corpus.column, tokenizer, self.max_length - 1, source, self.console,
                                     add_special_tokens=False)
            bos = self._bos(tokenizer)
            return encoded.map(lambda b: {"input_ids": [bos + x for x in b["input_ids"]],
                                          "attention_mask": [[1] * (len(bos) + len(x)) for x in b["input_ids"]]},
                               batched=True)
        tokenized = self.corpus.tokenize(ds, tokenizer, add_special_tokens=False, append_eos=True)
        stride = self.cfg.pretraining.eval_stride
        if split == "eval" and stride and stride < self.max_length and self.corpus.packing:
            return self._sliding_windows(tokenized, stride)
        return self.corpus.blocks(tokenized, self.max_length, source)

    def _sliding_windows(self, tokenized, stride: int):
        """Overlapping windows over the whole stream; only the tokens new to each window are scored."""
        from datasets import Dataset

        stream = [t for ids in tokenized["input_ids"] for t in ids]
        rows, prev_end = {"input_ids": [], "labels": [], "length": []}, 0
        for begin in range(0, len(stream), stride):
            end = min(begin + self.max_length, len(stream))
            window = stream[begin:end]
            new = end - prev_end
            labels = [-100] * (len(window) - new) + window[len(window) - new:]
            rows["input_ids"].append(window)
            rows["labels"].append(labels)
            rows["length"].append(len(window))
            prev_end = end
            if end == len(stream):
                break
        return Dataset.from_dict(rows)

    def collate(self, features: list[dict]) -> dict:
        batch = pad_batch(features, self.tokenizer.pad_token_id)
        if "labels" not in batch:
            # Labels are the inputs (the model shifts them); padding is ignored, not predicted.
            batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        return batch

    def eval_collate(self, features: list[dict]) -> dict:
        if self.mode == "generate":
            return pad_batch(features, self.tokenizer.pad_token_id, left=True)  # decoder-only: prompts end flush
        return self.collate(features)

    # ---- evaluation and prediction ------------------------------------------------
    def eval_step(self, model, batch) -> dict:
        if self.mode == "generate":
            prompt_len = batch["input_ids"].shape[1]
            out = model.generate(**batch, **generation_kwargs(self.cfg, self.tokenizer))
            return {"generated": out[:, prompt_len:]}
        labels = batch.pop("labels")
        logits = model(**batch).logits
        nll, tokens = token_nll(logits, labels, shift=True)
        return {"nll": nll, "tokens": tokens}

    def compute_metrics(self, outputs: dict, encoded=None) -> dict:
        return perplexity_metrics(outputs)

    def predict_records(self, outputs: dict, encoded=None) -> list[dict]:
        if self.mode == "generate":
            return [{"generated": decode_generated(self.tokenizer, ids)} for ids in outputs["generated"]]
        records = []
        for nll, n in zip(np.asarray(outputs["nll"], dtype=float), np.asarray(outputs["tokens"], dtype=float)):
            records.append({"log_prob": round(-nll, 4), "num_tokens": int(n),
                            "perplexity": round(math.exp(min(nll / max(n, 1), 50.0)), 4)})
        return records


def decode_generated(tokenizer, ids) -> str:
    """Generated ids → text: stop at eos, drop padding (including cross-process -100 padding)."""
    out = []
    for t in np.asarray(ids).tolist():
        if t < 0 or t == tokenizer.pad_token_id and t != tokenizer.eos_token_id:
            continue
        if t == tokenizer.eos_token_id:
            break
        out.append(t)
    return tokenizer.decode(out, skip_special_tokens=False)
