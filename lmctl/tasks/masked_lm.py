"""Masked language modelling (BERT family): 15% of tokens, 80% [MASK] / 10% random / 10% kept.

Evaluation reports masked-token loss and perplexity: the exponent of the mean loss over
the masked positions only, with masks drawn from a seed fixed by the batch's content,
so the same model on the same file gets the same figure. It is not comparable with a
causal LM's perplexity. `predict --mode fill-mask` returns the top-k tokens for each
mask token in each input line.
"""

from __future__ import annotations

import numpy as np

from lmctl.tasks.lm_common import (
    LanguageModelTask, encode_prompts, perplexity_metrics, token_nll,
)


class MaskedLMTask(LanguageModelTask):
    name = "masked-lm"
    auto_class = "AutoModelForMaskedLM"
    pretraining = True
    predict_modes = ("fill-mask",)

    # ---- data -------------------------------------------------------------------
    def on_bind(self) -> None:
        from transformers import DataCollatorForLanguageModeling

        from lmctl.errors import UserError

        tokenizer = self.tokenizer
        if tokenizer.mask_token is None:
            raise UserError(f"model: tokenizer {type(tokenizer).__name__} has no mask token; masked-lm needs a "
                            "BERT-family tokenizer")
        self._collator = DataCollatorForLanguageModeling(
            tokenizer, mlm_probability=self.cfg.pretraining.mlm_probability,
            whole_word_mask=self.cfg.pretraining.whole_word_masking)

    def encode(self, ds, split: str, source: str):
        tokenizer = self.tokenizer
        wwm = self.cfg.pretraining.whole_word_masking
        if split == "predict":
            return encode_prompts(ds, self.corpus.column, tokenizer, self.max_length, source, self.console,
                                  add_special_tokens=True)
        extra = {"return_special_tokens_mask": True}
        if wwm:
            extra["return_offsets_mapping"] = True  # word boundaries for whole-word masking
        tokenized = self.corpus.tokenize(ds, tokenizer, add_special_tokens=True, append_eos=False, extra=extra)
        return self.corpus.blocks(tokenized, self.max_length, source)

    def collate(self, features: list[dict]) -> dict:
        return self._collator(features)

    # ---- evaluation and prediction ------------------------------------------------
    def eval_step(self, model, batch) -> dict:
        import torch

        labels = batch.pop("labels", None)
        logits = model(**batch).logits
        if self.mode == "fill-mask":
            k = self.cfg.generation.fill_mask_top_k
            probs, ids = torch.softmax(logits.float(), -1).topk(k, dim=-1)
            return {"top_ids": ids, "top_probs": probs, "input_ids": batch["input_ids"]}
        nll, tokens = token_nll(logits, labels, shift=False)
        return {"nll": nll, "tokens": tokens}

    def compute_metrics(self, outputs: dict, encoded=None) -> dict:
        return perplexity_metrics(outputs)

    def predict_records(self, outputs: dict, encoded=None) -> list[dict]:
        tok = self.tokenizer
        records = []
        for ids, top_ids, top_probs in zip(outputs["input_ids"], outputs["top_ids"], outputs["top_probs"]):
            ids = np.asarray(ids)
            positions = np.nonzero(ids == tok.mask_token_id)[0]
            masks = [[{"token": tok.convert_ids_to_tokens(int(t)), "score": round(float(p), 6)}
                      for t, p in zip(top_ids[pos], top_probs[pos])] for pos in positions]
            filled = ids.copy()
            for pos in positions:
                filled[pos] = top_ids[pos][0]
            keep = [int(t) for t in filled if t >= 0 and t != tok.pad_token_id]
            records.append({"masks": masks, "filled": tok.decode(keep, skip_special_tokens=True)})
        return records
