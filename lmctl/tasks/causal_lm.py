"""Causal language modelling (GPT-2 family): next-token prediction.

Plain text (data.text_column): pretraining and finetuning on every token. Evaluation
reports token-level loss and perplexity; with `pretraining.eval_stride` smaller than
max_length, perplexity is computed with a sliding window (each token scored with up to
max_length tokens of context, as in the Hugging Face perplexity guide).

Prompt/completion pairs (data.prompt_column + data.completion_column): one example per
row, bos + prompt + completion + eos, with the loss on the completion and eos only
(prompt labels are -100), so the model learns to answer rather than to write prompts.
Evaluation reports loss/perplexity on those tokens and, in the same pass, generates from
each prompt and scores the output against the completion (ROUGE, BLEU, exact match).

`predict` generates continuations of the text (or prompt) column (`--mode generate`) or
scores each line (`--mode score`: total log-probability in nats, token count and
perplexity), the language model as a probability of text.
"""

from __future__ import annotations

import numpy as np

from lmctl.errors import UserError
from lmctl.tasks.base import check_column_values_are_text, map_batches, report_truncation
from lmctl.tasks.lm_common import (
    GENERATION_METRICS, PERPLEXITY_METRICS, LanguageModelTask, decode_generated, encode_prompts, generate,
    generation_metrics, pad_batch, perplexity, perplexity_metrics, token_nll,
)


class CausalLMTask(LanguageModelTask):
    name = "causal-lm"
    auto_class = "AutoModelForCausalLM"
    predict_modes = ("generate", "score")
    pretraining = True

    def __init__(self, cfg, console):
        super().__init__(cfg, console)
        self.prompt_column = cfg.data.prompt_column
        self.completion_column = cfg.data.completion_column
        self.pairs = self.prompt_column is not None
        if self.pairs:
            self.metric_names = PERPLEXITY_METRICS + GENERATION_METRICS
            if cfg.data.streaming:
                raise UserError("data.streaming: prompt/completion pairs are read whole (one example per row); "
                                "set data.streaming to false or drop data.prompt_column")

    def columns(self, with_labels: bool) -> dict:
        if not self.pairs:
            return self.corpus.columns()
        return {"data.prompt_column": self.prompt_column,
                "data.completion_column": self.completion_column if with_labels else None}

    def texts(self, ds):
        if not self.pairs:
            return self.corpus.texts(ds)
        return (p + c for p, c in zip(ds[self.prompt_column], ds[self.completion_column]))

    def fit(self, train) -> None:
        # Checked before a tokenizer is trained on them (`texts`), not only when encoding.
        if self.pairs:
            source = self.cfg.data.train_file or "train data"
            check_column_values_are_text(train, self.prompt_column, source)
            check_column_values_are_text(train, self.completion_column, source)

    # ---- data -------------------------------------------------------------------
    def _bos(self, tokenizer) -> list[int]:
        # Documents are separated by eos in training, so a text starts after bos/eos: score it that way.
        token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        return [token] if token is not None else []

    def encode(self, ds, split: str, source: str):
        tokenizer = self.tokenizer
        if split == "predict":
            column = self.prompt_column or self.corpus.column
            encoded = encode_prompts(ds, column, tokenizer, self.max_length - 1, source, self.console,
                                     add_special_tokens=False)
            bos = self._bos(tokenizer)
            return map_batches(encoded, lambda b: {"input_ids": [bos + x for x in b["input_ids"]],
                                                   "attention_mask": [[1] * (len(bos) + len(x)) for x in b["input_ids"]]})
        if self.pairs:
            return self._encode_pairs(ds, tokenizer, split, source)
        tokenized = self.corpus.tokenize(ds, tokenizer, add_special_tokens=False, append_eos=True)
        stride = self.cfg.pretraining.eval_stride
        if split == "eval" and stride and stride < self.max_length and self.corpus.packing:
            return self._sliding_windows(tokenized, stride)
        return self.corpus.blocks(tokenized, self.max_length, source)

    def _encode_pairs(self, ds, tokenizer, split: str, source: str):
        """bos + prompt + completion + eos per row, labels -100 on bos and the prompt. The two parts are
        tokenized apart, so the prompt's tokens are exactly those `predict` feeds the model; the
        completion is appended as is (a separating space or newline belongs in the data)."""
        check_column_values_are_text(ds, self.prompt_column, source)
        check_column_values_are_text(ds, self.completion_column, source)
        bos = self._bos(tokenizer)
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        limit = self.max_length

        def run(batch):
            prompts = tokenizer(batch[self.prompt_column], add_special_tokens=False, verbose=False)["input_ids"]
            completions = tokenizer(batch[self.completion_column], add_special_tokens=False, verbose=False)["input_ids"]
            out = {"input_ids": [], "labels": [], "num_tokens": [], "prompt_length": []}
            for p_ids, c_ids in zip(prompts, completions):
                prompt = bos + p_ids
                ids, labels = prompt + c_ids + eos, [-100] * len(prompt) + c_ids + eos
                # Cut at the right, as predict cuts prompts: the start of a prompt is what it is about.
                out["input_ids"].append(ids[:limit])
                out["labels"].append(labels[:limit])
                out["num_tokens"].append(len(ids))
                out["prompt_length"].append(min(len(prompt), limit))
            out["length"] = [len(x) for x in out["input_ids"]]
            if split == "eval":
                out["reference"] = batch[self.completion_column]
            return out

        encoded = map_batches(ds, run, remove_columns=ds.column_names)
        report_truncation(self.console, sum(1 for n in encoded["num_tokens"] if n > limit), len(encoded), limit,
                          source)
        no_target = sum(1 for n in encoded["prompt_length"] if n >= limit)
        self.console.warn_count(no_target, len(encoded), lambda n, total: (
            f"{source}: in {n} of {total} examples the prompt fills max_length={limit} tokens: no completion "
            "token is left to learn from; raise training.max_length or shorten the prompts"))
        drop = ["num_tokens"] if split == "eval" else ["num_tokens", "prompt_length"]
        return encoded.remove_columns(drop)

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
        pad = self.tokenizer.pad_token_id
        if self.mode == "generate":
            return pad_batch(features, pad, left=True)  # decoder-only: prompts end flush, generation follows
        batch = self.collate(features)
        if "prompt_length" in features[0]:  # pairs with references (not `predict --mode score`)
            # One evaluation pass: the whole examples for the loss, their prompts (left-padded) to generate from.
            prompts = pad_batch([{"input_ids": f["input_ids"][:f["prompt_length"]]} for f in features], pad, left=True)
            batch["prompt_input_ids"], batch["prompt_attention_mask"] = prompts["input_ids"], prompts["attention_mask"]
        return batch

    # ---- evaluation and prediction ------------------------------------------------
    def eval_step(self, model, batch) -> dict:
        if self.mode == "generate":
            prompt_len = batch["input_ids"].shape[1]
            out = generate(model, batch["input_ids"], batch["attention_mask"], self.cfg, self.tokenizer)
            return {"generated": out[:, prompt_len:]}
        prompts, prompt_mask = batch.pop("prompt_input_ids", None), batch.pop("prompt_attention_mask", None)
        labels = batch.pop("labels")
        logits = model(**batch).logits
        nll, tokens = token_nll(logits, labels, shift=True)
        out = {"nll": nll, "tokens": tokens}
        if prompts is not None:
            out["generated"] = generate(model, prompts, prompt_mask, self.cfg, self.tokenizer)[:, prompts.shape[1]:]
        return out

    def compute_metrics(self, outputs: dict, encoded=None) -> dict:
        result = perplexity_metrics(outputs)
        if "generated" in outputs:
            result.update(generation_metrics(self.tokenizer, outputs["generated"], encoded["reference"]))
        return result

    def predict_records(self, outputs: dict, encoded=None) -> list[dict]:
        if self.mode == "generate":
            return [{"generated": decode_generated(self.tokenizer, ids)} for ids in outputs["generated"]]
        records = []
        for nll, n in zip(np.asarray(outputs["nll"], dtype=float), np.asarray(outputs["tokens"], dtype=float)):
            records.append({"log_prob": round(-nll, 4), "num_tokens": int(n),
                            "perplexity": round(perplexity(nll, n), 4)})
        return records

