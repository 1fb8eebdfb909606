"""Rows as plain column lists, with the part of `datasets.Dataset`'s API that predict uses.

An ONNX export predicts without torch, transformers or datasets (`lmctl.engine.light`): its
input is read into a `Columns` instead of a `datasets.Dataset`, and the same task code encodes
it. A task that declares `light_inputs` reads its rows only through what this class has
(`ds[column]`, `len(ds)`, `ds.column_names`, `ds.map(fn, batched=True[, with_indices=True])`,
`ds.remove_columns`, `ds.select_columns`, `ds[:]`, `ds[[i, j]]`), so both kinds of table serve it
alike. A `Predictor` hands such a task its rows from Python as `Columns` on the PyTorch path too:
building and mapping a `datasets.Dataset` cost about half of a one-row call, which a server
pays on every batch.
"""

from __future__ import annotations

from typing import Callable, Iterable


class Columns:
    """Column name → list of values, every list one row per element."""

    def __init__(self, columns: dict[str, list]):
        self._columns = {name: list(values) for name, values in columns.items()}
        lengths = {len(values) for values in self._columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of different lengths: {sorted(lengths)}")
        self._rows = lengths.pop() if lengths else 0

    @classmethod
    def from_list(cls, records: list[dict]) -> "Columns":
        """Rows (dicts) → columns, as `Dataset.from_list`: the first row's keys, None where a row lacks one."""
        names = list(records[0]) if records else []
        return cls({name: [record.get(name) for record in records] for name in names})

    @classmethod
    def from_dict(cls, columns: dict[str, list]) -> "Columns":
        return cls(columns)

    @property
    def column_names(self) -> list[str]:
        return list(self._columns)

    def __len__(self) -> int:
        return self._rows

    def __getitem__(self, key):
        if isinstance(key, str):
            return self._columns[key]
        if key == slice(None):  # ds[:]: every column, as a dict
            return dict(self._columns)
        if isinstance(key, list):  # ds[[i, j]]: those rows, as a dict of columns (the PyTorch loop's batches)
            return {name: [values[i] for i in key] for name, values in self._columns.items()}
        raise TypeError(f"Columns reads a column by name, rows by a list of indices or all with [:], not {key!r}")

    def map(self, function: Callable, batched: bool = True, with_indices: bool = False,
            remove_columns: Iterable[str] = (), desc=None) -> "Columns":
        """`function` on all rows as one batch (a dict of column lists); its columns replace or join
        the table's, less `remove_columns`."""
        if not batched:
            raise ValueError("Columns.map runs batched functions only")
        args = (self._columns, list(range(self._rows))) if with_indices else (self._columns,)
        added = dict(function(*args))
        removed = set(remove_columns or ())
        kept = {name: values for name, values in self._columns.items() if name not in removed}
        return Columns({**kept, **added})

    def remove_columns(self, names: Iterable[str]) -> "Columns":
        names = set(names)
        return Columns({name: values for name, values in self._columns.items() if name not in names})

    def select_columns(self, names: Iterable[str]) -> "Columns":
        return Columns({name: self._columns[name] for name in names})
