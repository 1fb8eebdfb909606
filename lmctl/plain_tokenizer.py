"""A saved fast tokenizer (tokenizer.json) called as the tasks call a transformers tokenizer,
without transformers: what an ONNX export's torch-free predict tokenizes with.

transformers' fast tokenizers are this same `tokenizers.Tokenizer` underneath: the saved
tokenizer.json holds the normalizer, the vocabulary and the post-processor that adds the family's
special tokens ([CLS] … [SEP] with token type ids; nothing for GPT-2), and transformers' own
`truncation=True` is the backend's longest-first truncation. tokenizer_config.json adds the pad
token and the padding and truncation sides. tests/test_onnx_light.py checks the ids, type ids
and masks against transformers' for BERT and GPT-2 exports.
"""

from __future__ import annotations

import json
from pathlib import Path

from lmctl.errors import UserError, first_line

FILE = "tokenizer.json"


def has_tokenizer_file(path) -> bool:
    return (Path(path) / FILE).is_file()


class PlainTokenizer:
    """`tokenizer(texts, pairs, truncation=..., max_length=...)` → {input_ids, token_type_ids,
    attention_mask} (lists per text), as a transformers fast tokenizer returns them; and the pad id
    and side its collator pads with. Safe to share between threads: nothing a call does changes it."""

    def __init__(self, path: str | Path, key: str = "model"):
        from tokenizers import Tokenizer

        root = Path(path)
        try:
            self._json = (root / FILE).read_text(encoding="utf-8")
            self._plain = Tokenizer.from_str(self._json)
            config = _read_json(root / "tokenizer_config.json")
        except Exception as exc:  # OSError, bad JSON, and tokenizers' own plain Exceptions for a bad file
            raise UserError(f"{key}: cannot read the tokenizer in {root} ({first_line(exc)}); export the model "
                            "again") from None
        self._plain.no_padding()
        self._plain.no_truncation()
        self._cut: dict[int, object] = {}  # max_length → a copy that truncates to it
        special = {**_read_json(root / "special_tokens_map.json"), **config}
        pad = _content(special.get("pad_token"))
        self.pad_token_id = self._plain.token_to_id(pad) if pad is not None else None
        self.padding_side = config.get("padding_side", "right")
        self.truncation_side = config.get("truncation_side", "right")
        self.pad_token_type_id = 0

    def __call__(self, text: list[str], text_pair: list[str] | None = None, truncation: bool = False,
                 max_length: int | None = None, verbose: bool = True) -> dict[str, list]:
        tokenizer = self._truncating(max_length) if truncation else self._plain
        inputs = text if text_pair is None else list(zip(text, text_pair))
        encodings = tokenizer.encode_batch(inputs)
        return {"input_ids": [e.ids for e in encodings], "token_type_ids": [e.type_ids for e in encodings],
                "attention_mask": [e.attention_mask for e in encodings]}

    def _truncating(self, max_length: int | None):
        if max_length is None:
            raise ValueError("truncation needs max_length")
        tokenizer = self._cut.get(max_length)
        if tokenizer is None:  # built once per length; two threads building it at once build the same
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_str(self._json)
            tokenizer.no_padding()
            tokenizer.enable_truncation(max_length, strategy="longest_first", direction=self.truncation_side)
            self._cut[max_length] = tokenizer
        return tokenizer


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _content(token) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or {"content": ...}."""
    return token.get("content") if isinstance(token, dict) else token
