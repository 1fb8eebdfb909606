"""What the language-modelling tasks share: corpus columns, packing, token NLL, perplexity.

Tasks hold these helpers rather than inherit them: each objective file reads as the
whole story of that objective.
"""

from __future__ import annotations

import math
import zlib
from contextlib import contextmanager

import numpy as np

from lmctl.errors import UserError
from lmctl.tasks.base import Task, check_column_values_are_text, map_batches, report_truncation


class TextCorpus:
    """The text column of a corpus, tokenized and packed into blocks (or kept line by line)."""

    def __init__(self, cfg, console):
        self.column = cfg.data.text_column
        self.packing = cfg.data.packing
        self.max_length = cfg.training.max_length
        self.console = console

    def columns(self) -> dict[str, str | None]:
        return {"data.text_column": self.column}

    def texts(self, ds):
        if _is_stream(ds):
            yield from (row[self.column] for row in ds)
        else:
            yield from ds[self.column]

    def tokenize(self, ds, tokenizer, add_special_tokens: bool, append_eos: bool, extra: dict | None = None):
        """Documents → token ids (no truncation yet); empty documents (blank lines) are dropped."""
        eos = tokenizer.eos_token_id

        def run(batch):
            enc = tokenizer(batch[self.column], add_special_tokens=add_special_tokens, verbose=False, **(extra or {}))
            if append_eos and eos is not None:
                enc["input_ids"] = [ids + [eos] for ids in enc["input_ids"]]
                for key in ("attention_mask", "special_tokens_mask"):
                    if key in enc:
                        enc[key] = [m + [1] for m in enc[key]]
                if "offset_mapping" in enc:
                    enc["offset_mapping"] = [o + [(0, 0)] for o in enc["offset_mapping"]]
            return enc

        ds = ds.select_columns([self.column])
        ds = ds.filter(lambda b: [isinstance(t, str) and bool(t.strip()) for t in b[self.column]], batched=True)
        if not _is_stream(ds) and len(ds) == 0:
            raise UserError(f"column '{self.column}': no non-empty text; check data.text_column and the file")
        return map_batches(ds, run, remove_columns=[self.column])

    def blocks(self, tokenized, block_size: int, source: str):
        """Pack: concatenate documents and cut `block_size` blocks (the tail of each 1,000 documents is
        dropped, as in run_clm); line by line: one truncated example per document."""
        if not self.packing:
            if not _is_stream(tokenized):
                n_long = sum(1 for ids in tokenized["input_ids"] if len(ids) > block_size)
                report_truncation(self.console, n_long, len(tokenized), block_size, source)

            def cut(batch):
                return {k: [v[:block_size] for v in vals] for k, vals in batch.items()}

            out = map_batches(tokenized, cut)
        else:
            def pack(batch):
                joined = {k: [x for seq in vals for x in seq] for k, vals in batch.items()}
                total = len(joined["input_ids"])
                if total >= block_size:
                    total = (total // block_size) * block_size
                # A corpus shorter than one block still yields one (short) block.
                return {k: [v[i:i + block_size] for i in range(0, total, block_size)] for k, v in joined.items()}

            out = map_batches(tokenized, pack, batch_size=1000)
        return map_batches(out, lambda b: {"length": [len(x) for x in b["input_ids"]]})


def _is_stream(ds) -> bool:
    from datasets import IterableDataset

    return isinstance(ds, IterableDataset)


def pad_batch(features: list[dict], pad_id: int, left: bool = False) -> dict:
    """Pad input_ids (pad_id), attention_mask (0) and labels (-100) to the longest row."""
    import torch

    width = max(len(f["input_ids"]) for f in features)
    out: dict[str, list] = {}
    for key, fill in (("input_ids", pad_id), ("attention_mask", 0), ("labels", -100)):
        if key == "attention_mask" and "attention_mask" not in features[0]:
            rows = [[1] * len(f["input_ids"]) for f in features]
        elif key not in features[0]:
            continue
        else:
            rows = [list(f[key]) for f in features]
        out[key] = [([fill] * (width - len(r)) + r) if left else (r + [fill] * (width - len(r))) for r in rows]
    return {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}


@contextmanager
def seeded(features: list[dict], seed: int):
    """Seed torch's RNG from the batch's content, so evaluation noise (masks, spans) is the same on
    every evaluation of the same data, and training randomness is left untouched afterwards."""
    import torch

    key = zlib.crc32(np.asarray(features[0]["input_ids"], dtype=np.int64).tobytes()) ^ len(features)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + key)
        yield


def token_nll(logits, labels, shift: bool):
    """Per-example summed negative log-likelihood and target count (labels == -100 ignored)."""
    import torch.nn.functional as F

    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    loss = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none")
    mask = labels != -100
    return (loss * mask).sum(1), mask.sum(1)


PERPLEXITY_METRICS = ("loss", "perplexity", "tokens")
GENERATION_METRICS = ("rouge1", "rouge2", "rougeL", "bleu", "exact_match", "gen_len")


class LanguageModelTask(Task):
    """What the three objectives share word for word: corpus columns, no labels to fit, and
    building/loading the model through the objective's `Auto*` class. Each subclass names
    that class and writes its own encode / collate / eval_step / predict_records."""

    main_metric = "loss"
    lower_is_better = ("loss", "perplexity")
    # `tokens` (scored) and `gen_len` (mean generated length) are sizes, not scores: declared
    # higher-is-better, as the name rule read them before, so every reported metric has a direction.
    higher_is_better = ("tokens",) + GENERATION_METRICS
    mode = "eval"
    metric_names = PERPLEXITY_METRICS
    auto_class = "AutoModelForCausalLM"  # a transformers name, imported only when a model is built

    def __init__(self, cfg, console):
        self.cfg = cfg
        self.console = console
        self.corpus = TextCorpus(cfg, console)
        self.max_length = cfg.training.max_length

    def columns(self, with_labels: bool) -> dict:
        return self.corpus.columns()

    def texts(self, ds):
        return self.corpus.texts(ds)

    def eval_collate(self, features: list[dict]) -> dict:
        """Predicting: the prompts, padded. Evaluating: the training collator with its noise (masks,
        spans) seeded by the batch's content, so the same model scores the same on the same file."""
        if self.mode != "eval":
            return pad_batch(features, self.tokenizer.pad_token_id)
        with seeded(features, self.cfg.training.seed):
            return self.collate(features)

    def build_model(self, name_or_path, tokenizer):
        from lmctl.models import build_model

        return build_model(self.auto_class, self.cfg.model, name_or_path, tokenizer, self.max_length)

    def load_model(self, path: str, tokenizer, source: str):
        from transformers import set_seed

        from lmctl.models import load_model

        set_seed(self.cfg.generation.seed)  # sampling in `predict` is repeatable
        return load_model(self.auto_class, path, tokenizer, key=source,
                          allow_pickle=self.cfg.model.allow_pickle_weights)


def perplexity(nll: float, tokens: float) -> float:
    """exp(mean token NLL); an empty text counts as one token and exp is capped at e^50 (no overflow)."""
    return math.exp(min(nll / max(tokens, 1.0), 50.0))


def perplexity_metrics(outputs: dict) -> dict[str, float]:
    nll = float(np.sum(outputs["nll"]))
    count = float(np.sum(outputs["tokens"]))
    return {"loss": nll / max(count, 1.0), "perplexity": perplexity(nll, count), "tokens": count}


def generation_kwargs(cfg, tokenizer) -> dict:
    g = cfg.generation
    kwargs = dict(max_new_tokens=g.max_new_tokens, num_beams=g.num_beams, do_sample=g.do_sample,
                  pad_token_id=tokenizer.pad_token_id)
    if g.do_sample:
        kwargs.update(temperature=g.temperature, top_k=g.top_k, top_p=g.top_p)
    return kwargs


def generate(model, input_ids, attention_mask, cfg, tokenizer):
    """`model.generate` with the `generation.*` settings; a DDP-wrapped model has no `generate`,
    the module inside it does."""
    return getattr(model, "module", model).generate(input_ids=input_ids, attention_mask=attention_mask,
                                                    **generation_kwargs(cfg, tokenizer))


def generated_tokens(tokenizer, ids) -> list[int]:
    """Generated ids up to eos, without padding (including the -100 of cross-process padding and
    T5's decoder start, which is pad)."""
    out = []
    for t in np.asarray(ids).tolist():
        if t < 0 or t == tokenizer.pad_token_id and t != tokenizer.eos_token_id:
            continue
        if t == tokenizer.eos_token_id:
            break
        out.append(t)
    return out


def decode_generated(tokenizer, ids) -> str:
    """Generated ids → text: stop at eos, drop padding."""
    return tokenizer.decode(generated_tokens(tokenizer, ids), skip_special_tokens=False)


def _squash(text: str) -> str:
    return " ".join(text.split())


def exact_match(predictions: list[str], references: list[str]) -> float:
    """Share of predictions equal to their reference, in [0, 1]. Case and punctuation count; only
    whitespace is normalised (runs of spaces, leading/trailing), which detokenisation may change."""
    if not references:
        return 0.0
    return sum(_squash(p) == _squash(r) for p, r in zip(predictions, references)) / len(references)


def text_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Texts against reference texts: ROUGE-1/2/L F-measures and exact match in [0, 1], corpus BLEU in
    [0, 100] (sacrebleu, 13a tokenisation). ROUGE stems words (Porter), as the summarisation literature
    and transformers' run_summarization do, so figures compare with published ones."""
    from lmctl import metrics

    rouge = metrics.load("rouge").compute(predictions=predictions, references=references,
                                          rouge_types=["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    bleu = metrics.load("bleu").compute(predictions=predictions, references=references)["bleu"]
    return {**{k: float(v) for k, v in rouge.items()}, "bleu": float(bleu),
            "exact_match": exact_match(predictions, references)}


def generation_metrics(tokenizer, generated, references: list[str]) -> dict[str, float]:
    """Generated ids (one row per example) against reference texts: `text_metrics` plus
    gen_len, the mean number of generated tokens (a model that stops too early shows here first)."""
    tokens = [generated_tokens(tokenizer, ids) for ids in generated]
    predictions = [tokenizer.decode(t, skip_special_tokens=False).strip() for t in tokens]
    result = text_metrics(predictions, [str(r) for r in references])
    result["gen_len"] = float(np.mean([len(t) for t in tokens])) if tokens else 0.0
    return result


def encode_prompts(ds, column: str, tokenizer, max_length: int, source: str, console, add_special_tokens: bool):
    """Predict-time inputs: one example per row, truncated (and reported) at max_length."""
    check_column_values_are_text(ds, column, source)

    def run(batch):
        enc = tokenizer(batch[column], add_special_tokens=add_special_tokens, verbose=False)
        enc["num_tokens"] = [len(x) for x in enc["input_ids"]]
        enc = {k: [v[:max_length] for v in vals] if k != "num_tokens" else vals for k, vals in enc.items()}
        enc["length"] = [len(x) for x in enc["input_ids"]]
        enc["truncated"] = [n > max_length for n in enc["num_tokens"]]  # predict's records say which
        return enc

    encoded = map_batches(ds, run, remove_columns=ds.column_names)
    n_long = sum(1 for n in encoded["num_tokens"] if n > max_length)
    report_truncation(console, n_long, len(encoded), max_length, source)
    return encoded.remove_columns(["num_tokens"])
