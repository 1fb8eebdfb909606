"""Local files or hub data sets → `datasets.Dataset` splits, with errors that name the row.

Local files are parsed with pandas (which `datasets` itself uses) rather than
`load_dataset("csv")`: that keeps every text cell a string ("null", "NA" and "nan" are
words in a review, not missing values), lets us point at the exact row of a bad byte,
and skips an Arrow cache copy of each file.
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

from lmctl.errors import UserError

SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet", ".txt": "txt"}


def file_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise UserError(
            f"{path}: unsupported file type '{suffix or '(none)'}'; use one of {', '.join(SUFFIXES)}"
        )
    return SUFFIXES[suffix]


def check_file(path: str | Path, key: str) -> None:
    p = Path(path)
    if not p.exists():
        raise UserError(f"{key}: file not found: {p}; check the path (relative paths start at the working directory)")
    if p.is_dir():
        raise UserError(f"{key}: {p} is a folder; give a data file")
    file_format(p)
    try:
        with p.open("rb") as f:
            head = f.read(1)
    except OSError as exc:
        raise UserError(f"{key}: cannot read {p} ({exc.strerror}); check its permissions") from None
    if not head:
        raise UserError(f"{key}: {p} is empty; give a file with a header and data rows")


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")  # -sig: GLUE's MRPC files start with a byte-order mark
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise UserError(
            f"{path}: line {line}: bytes that are not UTF-8 ({raw[exc.start:exc.start + 4]!r}); "
            "re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def read_frame(path: str | Path, text_columns: tuple[str, ...] = ()):
    """Read one local file into a pandas DataFrame; text columns stay strings."""
    import pandas as pd

    p = Path(path)
    fmt = file_format(p)
    try:
        if fmt == "parquet":
            return pd.read_parquet(p)
        text = _decode(p)
        if fmt == "txt":
            lines = text.splitlines()
            return pd.DataFrame({(text_columns[0] if text_columns else "text"): lines})
        if fmt in ("csv", "tsv"):
            dtypes = {c: str for c in text_columns}
            kwargs = dict(sep="\t", quoting=csv.QUOTE_NONE) if fmt == "tsv" else {}
            return pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""], dtype=dtypes, **kwargs)
        if fmt == "jsonl":
            return pd.read_json(io.StringIO(text), lines=True, dtype=False)
        return _read_json_records(text, p)
    except UserError:
        raise
    except (ValueError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{p}: cannot parse as {fmt}: {first}; check the file format") from None


def _read_json_records(text: str, path: Path):
    """A .json file: a list of records, or {"data": [...]} / {"version":..., "data": [...]}."""
    import json

    import pandas as pd

    obj = json.loads(text)
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if not isinstance(obj, list):
        raise UserError(f"{path}: expected a JSON list of records (or use .jsonl, one record per line)")
    return pd.DataFrame.from_records(obj)


def read_table(path: str | Path, key: str, text_columns: tuple[str, ...] = ()):
    """Read a local data file into a `datasets.Dataset`, with clear errors."""
    from datasets import Dataset

    check_file(path, key)
    frame = read_frame(path, text_columns)
    if len(frame) == 0:
        raise UserError(f"{key}: {path} has a header but no data rows")
    return Dataset.from_pandas(frame, preserve_index=False)


def check_columns(ds, columns: dict[str, str | None], source: str) -> None:
    """`columns` maps config key → column name; None means the column is not used."""
    have = list(ds.column_names)
    for key, name in columns.items():
        if name is not None and name not in have:
            raise UserError(
                f"{source}: no column '{name}' (from {key}); columns are: {', '.join(have)}. "
                f"Set {key} to one of them"
            )


def check_text(ds, column: str, source: str) -> None:
    for i, value in enumerate(ds[column]):
        if value is None or (isinstance(value, str) and not value.strip()):
            raise UserError(f"{source}: row {i + 1}: empty text in column '{column}'; fill or remove that row")
        if not isinstance(value, str):
            raise UserError(f"{source}: row {i + 1}: column '{column}' holds {value!r}, not text")


def subsample(ds, n: int | None, seed: int):
    """A seeded random subset that keeps file order (files are often sorted by label)."""
    if n is None or n >= len(ds):
        return ds
    rng = random.Random(seed)
    return ds.select(sorted(rng.sample(range(len(ds)), n)))


def load_hub_dataset(name: str, config: str | None):
    import os

    from datasets import load_dataset

    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "TRUE"):
        raise UserError(f"data.dataset_name '{name}': cannot reach the hub (HF_HUB_OFFLINE is set); give data.train_file")
    try:
        return load_dataset(name, config)
    except Exception as exc:  # network, auth and missing-dataset errors all end here
        raise UserError(
            f"data.dataset_name '{name}': cannot load it from the hub ({type(exc).__name__}); "
            "check the name and your network, or give data.train_file"
        ) from None


def load_splits(cfg, text_columns: tuple[str, ...]) -> tuple[dict, dict]:
    """Train and validation splits from the config, plus their fingerprints."""
    from lmctl.rundir import file_fingerprint

    d = cfg.data
    fingerprints: dict = {}
    if d.dataset_name:
        hub = load_hub_dataset(d.dataset_name, d.dataset_config)
        train = hub["train"]
        validation = hub.get("validation")
        fingerprints["dataset"] = {"name": d.dataset_name, "config": d.dataset_config}
    else:
        if not d.train_file:
            raise UserError("data.train_file: not set; give a training file (csv, tsv, json, jsonl or parquet)")
        train = read_table(d.train_file, "data.train_file", text_columns)
        fingerprints["train_file"] = file_fingerprint(d.train_file)
        validation = None
        if d.validation_file:
            validation = read_table(d.validation_file, "data.validation_file", text_columns)
            fingerprints["validation_file"] = file_fingerprint(d.validation_file)
    if validation is None:
        parts = train.train_test_split(test_size=d.validation_split, seed=cfg.training.seed)
        train, validation = parts["train"], parts["test"]
        fingerprints["validation_split"] = d.validation_split
    train = subsample(train, d.max_train_samples, cfg.training.seed)
    validation = subsample(validation, d.max_eval_samples, cfg.training.seed)
    fingerprints["rows"] = {"train": len(train), "validation": len(validation)}
    return {"train": train, "validation": validation}, fingerprints
