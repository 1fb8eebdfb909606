"""Sequence to sequence (T5, or any `AutoModelForSeq2SeqLM`): write a target text for a source text.

Summarisation, translation, rewriting: the source (data.text_column, with
data.source_prefix such as "summarize: " in front, as T5 was trained) goes to the
encoder, the target (data.target_column) is the decoder's label; sources are cut at
training.max_length tokens and targets at training.max_target_length, and both cuts are
reported. Evaluation is by generation: one pass per batch scores the targets with
teacher forcing (`loss`) and generates with the `generation.*` settings, and the outputs
are compared with the full reference texts (ROUGE-1/2/L, BLEU, exact match, mean
generated length). `predict` generates a target for each source.
"""

from __future__ import annotations

from lmctl.tasks.base import check_column_values_are_text, map_batches, report_truncation
from lmctl.tasks.lm_common import (
    GENERATION_METRICS, LanguageModelTask, decode_generated, generate, generation_metrics, pad_batch,
    perplexity_metrics, token_nll,
)


class Seq2SeqTask(LanguageModelTask):
    """Model building and loading come from `LanguageModelTask` (through `auto_class`); the data,
    evaluation and metrics are this task's own."""

    name = "seq2seq"
    auto_class = "AutoModelForSeq2SeqLM"
    # The generated text is what a seq2seq model is for; rougeL also rewards partly right outputs,
    # where exact match stays at 0 for a long time on real data.
    main_metric = "rougeL"
    higher_is_better = GENERATION_METRICS
    lower_is_better = ("loss",)
    metric_names = GENERATION_METRICS + ("loss",)
    predict_modes = ("generate",)

    def __init__(self, cfg, console):
        super().__init__(cfg, console)
        self.source_column = cfg.data.text_column
        self.target_column = cfg.data.target_column
        self.prefix = cfg.data.source_prefix
        self.max_target_length = cfg.training.max_target_length

    def columns(self, with_labels: bool) -> dict:
        return {"data.text_column": self.source_column,
                "data.target_column": self.target_column if with_labels else None}

    def texts(self, ds):
        # A from-scratch tokenizer must cover both sides (and the prefix, which then becomes one piece).
        for source, target in zip(ds[self.source_column], ds[self.target_column]):
            yield self.prefix + source
            yield target

    def fit(self, train) -> None:
        # Checked before a tokenizer is trained on them (`texts`), not only when encoding.
        source = self.cfg.data.train_file or "train data"
        check_column_values_are_text(train, self.source_column, source)
        check_column_values_are_text(train, self.target_column, source)

    # ---- data -------------------------------------------------------------------
    def encode(self, ds, split: str, source: str):
        tokenizer = self.tokenizer
        with_targets = split != "predict"
        check_column_values_are_text(ds, self.source_column, source)
        if with_targets:
            check_column_values_are_text(ds, self.target_column, source)

        def cut(texts: list[str], limit: int, target: bool) -> tuple[dict, list[int]]:
            kwargs = {"text_target" if target else "text": texts, "verbose": False}
            full = tokenizer(**kwargs)["input_ids"]
            # The tokenizer truncates the text and keeps its special tokens (T5's closing eos).
            return tokenizer(**kwargs, truncation=True, max_length=limit), [len(x) for x in full]

        def run(batch):
            enc, n_source = cut([self.prefix + s for s in batch[self.source_column]], self.max_length, False)
            out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                   "length": [len(x) for x in enc["input_ids"]], "source_tokens": n_source}
            if not with_targets:  # predict's records say which sources were cut
                out["truncated"] = [n > self.max_length for n in n_source]
            if with_targets:
                targets = batch[self.target_column]
                labels, n_target = cut(targets, self.max_target_length, True)
                out.update(labels=labels["input_ids"], target_tokens=n_target)
                if split == "eval":
                    out["reference"] = targets  # metrics compare with the whole text, not the cut labels
            return out

        encoded = map_batches(ds, run, remove_columns=ds.column_names)
        total = len(encoded)
        report_truncation(self.console, sum(n > self.max_length for n in encoded["source_tokens"]), total,
                          self.max_length, f"{source} (sources, column '{self.source_column}')")
        if with_targets:
            report_truncation(self.console, sum(n > self.max_target_length for n in encoded["target_tokens"]),
                              total, self.max_target_length, f"{source} (targets, column '{self.target_column}')",
                              key="max_target_length")
            encoded = encoded.remove_columns(["target_tokens"])
        return encoded.remove_columns(["source_tokens"])

    def collate(self, features: list[dict]) -> dict:
        pad = self.tokenizer.pad_token_id
        batch = pad_batch([{"input_ids": f["input_ids"], "attention_mask": f["attention_mask"]} for f in features], pad)
        if "labels" in features[0]:
            # Labels have their own width; -100 on padding. The model builds decoder inputs from them.
            labels = pad_batch([{"input_ids": f["labels"]} for f in features], -100)["input_ids"]
            batch["labels"] = labels.contiguous()  # T5's loss in transformers v5 refuses strided labels
        return batch

    # ---- evaluation and prediction ------------------------------------------------
    def eval_step(self, model, batch) -> dict:
        labels = batch.pop("labels", None)
        out = {"generated": generate(model, batch["input_ids"], batch["attention_mask"], self.cfg, self.tokenizer)}
        if labels is not None:
            logits = model(**batch, labels=labels).logits
            out["nll"], out["tokens"] = token_nll(logits, labels, shift=False)
        return out

    def compute_metrics(self, outputs: dict, encoded=None) -> dict:
        result = generation_metrics(self.tokenizer, outputs["generated"], encoded["reference"])
        result["loss"] = perplexity_metrics(outputs)["loss"]
        return result

    def predict_records(self, outputs: dict, encoded=None) -> list[dict]:
        return [{"generated": decode_generated(self.tokenizer, ids)} for ids in outputs["generated"]]
