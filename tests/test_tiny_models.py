"""The tiny checkpoints load offline through the Auto* classes and train.

Everything else in the suite builds on these fixtures, so this file pins the
properties the other tests silently rely on: special-token ids, the eos that
T5's classification head pools on, GPT-2's pad token, and that a padded row
gives the same logits as the same text run alone.
"""

from __future__ import annotations

import math

import pytest
import torch

from tiny_models import FIXTURE_CORPUS, T5_NUM_SENTINELS, make_corpus

FAMILIES = ["bert", "gpt2", "t5"]
TEXTS = ["The cat watched the movie.", "A tired student cooked a loaf of bread in the kitchen at night."]
PAIRS = (
    ["The garden was quiet.", "My sister opened the old letter from the engineer in the city."],
    ["It was warm by the sea.", "Why?"],
)


def _tok(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _classifier(path):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()


def test_corpus_is_deterministic_and_varied():
    assert 150 <= len(FIXTURE_CORPUS) <= 250
    assert len(set(FIXTURE_CORPUS)) == len(FIXTURE_CORPUS)
    assert make_corpus() == FIXTURE_CORPUS
    assert all("\t" not in s and "\n" not in s for s in FIXTURE_CORPUS)


def test_build_writes_safetensors_checkpoints(tiny_models):
    assert set(tiny_models) == set(FAMILIES)
    for family in FAMILIES:
        d = tiny_models[family]
        assert d == d.parent / family
        for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
            assert (d / name).is_file(), (family, name)


def test_bert_tokenizer(tiny_models):
    tok = _tok(tiny_models["bert"])
    assert type(tok).__name__ == "BertTokenizer"
    ids = {t: tok.convert_tokens_to_ids(t) for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]}
    assert ids == {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    assert (tok.pad_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (0, 2, 3, 4)
    assert 400 <= len(tok) <= 600

    single = tok("The Cat watched")
    toks = tok.convert_ids_to_tokens(single["input_ids"])
    assert toks[0] == "[CLS]" and toks[-1] == "[SEP]"
    assert "cat" in toks  # lower-cased

    enc = tok("the cat", "a dog")
    toks = tok.convert_ids_to_tokens(enc["input_ids"])
    assert toks == ["[CLS]", "the", "cat", "[SEP]", "a", "dog", "[SEP]"]
    assert enc["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]

    # Words never seen in the corpus still split into pieces rather than [UNK].
    out = tok("Zebras quizzically juggled 42 xylophones!")["input_ids"]
    assert tok.unk_token_id not in out


def test_gpt2_tokenizer(tiny_models):
    tok = _tok(tiny_models["gpt2"])
    assert type(tok).__name__ == "GPT2Tokenizer"
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    assert tok.eos_token_id == tok.bos_token_id == tok.pad_token_id == eos
    assert 400 <= len(tok) <= 600
    text = "Any bytes at all: é, 漢, 🙂."
    assert tok.decode(tok(text)["input_ids"]) == text

    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(tiny_models["gpt2"])
    assert cfg.pad_token_id == cfg.eos_token_id == cfg.bos_token_id == eos
    assert cfg.vocab_size == len(tok)


def test_t5_tokenizer(tiny_models):
    tok = _tok(tiny_models["t5"])
    assert type(tok).__name__ == "T5Tokenizer"
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert "token_type_ids" not in tok("x")  # T5's forward has no such argument

    sentinels = [f"<extra_id_{i}>" for i in range(T5_NUM_SENTINELS)]
    assert list(tok.extra_special_tokens) == sentinels
    ids = tok.convert_tokens_to_ids(sentinels)
    # T5 layout: <extra_id_0> is the last id, counting down from there.
    assert ids == list(range(len(tok) - 1, len(tok) - 1 - T5_NUM_SENTINELS, -1))
    enc = tok("the cat <extra_id_0> the dog <extra_id_1>")["input_ids"]
    assert ids[0] in enc and ids[1] in enc

    assert tok("the cat")["input_ids"][-1] == tok.eos_token_id
    pair = tok("the cat", "a dog")["input_ids"]
    assert pair.count(tok.eos_token_id) == 2 and pair[-1] == tok.eos_token_id
    first = tok("the cat")["input_ids"]
    assert pair[: len(first)] == first

    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(tiny_models["t5"])
    assert cfg.decoder_start_token_id == cfg.pad_token_id == 0
    assert cfg.eos_token_id == 1
    assert cfg.vocab_size == len(tok)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("paired", [False, True], ids=["single", "pair"])
def test_sequence_classification_on_padded_batch(tiny_models, family, paired):
    tok = _tok(tiny_models[family])
    model = _classifier(tiny_models[family])
    args = PAIRS if paired else (TEXTS,)
    batch = tok(*args, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any(), "batch should need padding"

    out = model(**batch, labels=torch.tensor([0, 1]))
    assert out.logits.shape == (2, 2)
    assert math.isfinite(out.loss.item())
    out.loss.backward()

    # Padding must not change a row's prediction: this fails if GPT-2 pools at
    # a pad position or T5 pools at a missing eos.
    with torch.no_grad():
        padded = model(**batch).logits
        for i in range(2):
            row_args = [a[i] for a in args]
            alone = model(**tok(*row_args, return_tensors="pt")).logits[0]
            torch.testing.assert_close(padded[i], alone, atol=1e-5, rtol=1e-4)


def test_bert_masked_lm(tiny_models):
    from transformers import AutoModelForMaskedLM

    tok = _tok(tiny_models["bert"])
    model = AutoModelForMaskedLM.from_pretrained(tiny_models["bert"])
    assert type(model).__name__ == "BertForMaskedLM"
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 2
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, 2] = batch["input_ids"][:, 2]
    batch["input_ids"][:, 2] = tok.mask_token_id
    out = model(**batch, labels=labels)
    assert out.logits.shape[-1] == len(tok)
    assert math.isfinite(out.loss.item())


def test_gpt2_causal_lm(tiny_models):
    from transformers import AutoModelForCausalLM

    tok = _tok(tiny_models["gpt2"])
    model = AutoModelForCausalLM.from_pretrained(tiny_models["gpt2"])
    assert type(model).__name__ == "GPT2LMHeadModel"
    assert model.config.n_embd == 32 and model.config.n_layer == 2
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    out = model(**batch, labels=labels)
    assert math.isfinite(out.loss.item())

    tok.padding_side = "left"
    prompt = tok(TEXTS, padding=True, return_tensors="pt")
    gen = model.generate(**prompt, max_new_tokens=3, do_sample=False)
    assert gen.shape == (2, prompt["input_ids"].shape[1] + 3)


def test_t5_seq2seq_lm(tiny_models):
    from transformers import AutoModelForSeq2SeqLM

    tok = _tok(tiny_models["t5"])
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_models["t5"])
    assert type(model).__name__ == "T5ForConditionalGeneration"
    assert model.config.d_model == 32 and model.config.num_decoder_layers == 2
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    labels = tok(["positive", "a short target"], padding=True, return_tensors="pt")["input_ids"]
    labels = labels.masked_fill(labels == tok.pad_token_id, -100)
    out = model(**batch, labels=labels)
    assert out.logits.shape[:2] == labels.shape
    assert math.isfinite(out.loss.item())

    gen = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert gen[0, 0].item() == model.config.decoder_start_token_id
