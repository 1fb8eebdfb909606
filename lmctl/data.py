"""Local files or hub data sets → `datasets.Dataset` splits, with errors that name the row.

Local files are parsed with pandas (which `datasets` itself uses) rather than
`load_dataset("csv")`: that keeps every text cell a string ("null", "NA" and "nan" are
words in a review, not missing values), lets us point at the exact row of a bad byte,
and skips an Arrow cache copy of each file.

CoNLL files (one word a line, its tag in the last column, a blank line between sentences) are
read as one row per sentence with the columns `tokens` and `tags`: a .conll file always, a .txt
file when its lines look like CoNLL (`is_conll`), as SQuAD's nested JSON is read flat.
"""

from __future__ import annotations

import csv
import io
import itertools
import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lmctl.errors import RowError, UserError, first_line

SUFFIXES = {
    ".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet",
    ".txt": "txt", ".text": "txt", ".tokens": "txt", ".raw": "txt",  # WikiText ships .tokens / .raw
    ".conll": "conll",
}


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
        raise _not_utf8(path, raw.count(b"\n", 0, exc.start) + 1, raw[exc.start:exc.start + 4]) from None


def _not_utf8(path: Path, line: int, bad: bytes) -> UserError:
    return UserError(f"{path}: line {line}: bytes that are not UTF-8 ({bad!r}); "
                     "re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)")


def _first_bad_line(path: Path) -> UserError:
    """The not-UTF-8 error for a file that was read in pieces: its line found by a second pass (a
    multi-byte character never holds a newline byte, so lines decode on their own)."""
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return _not_utf8(path, n, line[exc.start:exc.start + 4])
    return UserError(f"{path}: bytes that are not UTF-8; re-save the file as UTF-8")


def expand(spec: str, key: str) -> list[Path]:
    """A file, a folder (every data file below it) or a glob → the files, sorted."""
    import glob

    p = Path(spec)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES)
        if not files:
            raise UserError(f"{key}: folder {p} holds no data files ({', '.join(SUFFIXES)})")
        return files
    if any(ch in spec for ch in "*?["):
        files = sorted(Path(f) for f in glob.glob(spec, recursive=True) if Path(f).is_file())
        if not files:
            raise UserError(f"{key}: no file matches '{spec}'; check the pattern")
        return files
    return [p]


def csv_options(fmt: str) -> dict:
    """pandas' CSV options, shared by the in-memory reader and the streaming one (`datasets`' CSV
    builder passes them to pandas): only an empty cell is missing, so a review that reads "NA",
    "null" or "nan" stays text; TSV cells are taken as they are (GLUE's files hold bare quotes)."""
    options = dict(keep_default_na=False, na_values=[""])
    if fmt == "tsv":
        options.update(sep="\t", quoting=csv.QUOTE_NONE)
    return options


def split_documents(text: str, separator: str) -> list[str]:
    """One document per line, or documents separated by blank lines (lines inside joined by newlines)."""
    if separator == "line":
        return text.splitlines()
    import re

    return [doc.strip("\n") for doc in re.split(r"\n[ \t]*\n", text) if doc.strip()]


# ---- CoNLL: one word a line, the tag last, a blank line between sentences ------------------------
CONLL_COLUMNS = ("tokens", "tags")
SNIFF_LINES = 200
"""The lines of a .txt file (not blank, not -DOCSTART-) `is_conll` looks at."""
_TAG = re.compile(r"O|[A-Z]-\S+")


def _fields(line: str) -> list[str]:
    # Tab-separated CoNLL may hold a space inside a column; otherwise any run of spaces separates.
    return [f.strip() for f in line.split("\t")] if "\t" in line else line.split()


def _is_docstart(line: str) -> bool:
    return line.lstrip().startswith("-DOCSTART-")


def is_conll(lines: list[str]) -> bool:
    """Whether a text file whose first lines are `lines` is CoNLL: 9 in 10 of its first SNIFF_LINES
    lines (blank and -DOCSTART- lines aside) have two columns or more and a tag in the last one (O,
    or a capital, a hyphen and a type: B-PER, I-LOC, X-PER). Prose ends its lines in other words."""
    content = list(itertools.islice((line for line in lines if line.strip() and not _is_docstart(line)),
                                    SNIFF_LINES))
    tagged = sum(1 for line in content if len(f := _fields(line)) >= 2 and _TAG.fullmatch(f[-1]))
    return bool(content) and tagged >= 0.9 * len(content)


def conll_sentences(numbered_lines, path) -> Iterator[tuple[list[str], list[str]]]:
    """(line number, line) pairs → (words, tags) per sentence: the word is the first column, the tag
    the last; blank lines end sentences, -DOCSTART- lines are skipped (and end one too)."""
    words: list[str] = []
    tags: list[str] = []
    for n, line in numbered_lines:
        if not line.strip() or _is_docstart(line):
            if words:
                yield words, tags
                words, tags = [], []
            continue
        fields = _fields(line)
        if len(fields) < 2 or not fields[-1] or not fields[0]:
            raise UserError(f"{path}: line {n}: {line.strip()!r} has no tag; a CoNLL line is the word, any "
                            "other columns, then its tag (e.g. 'Paris NNP B-LOC'), and sentences end at a blank line")
        words.append(fields[0])
        tags.append(fields[-1])
    if words:
        yield words, tags


def _conll_columns(sentences) -> dict[str, list]:
    sentences = list(sentences)
    return {CONLL_COLUMNS[0]: [w for w, _ in sentences], CONLL_COLUMNS[1]: [t for _, t in sentences]}


def _lines(f, fmt: str) -> tuple[bool, Iterator[str]]:
    """(whether it is CoNLL: a .conll file, or a .txt file that `is_conll`, its lines) of an open text file."""
    lines = (part for line in f for part in line.splitlines())  # splitlines: as split_documents
    head = list(itertools.islice(lines, 4 * SNIFF_LINES))
    return fmt == "conll" or is_conll(head), itertools.chain(head, lines)


def _text_chunks(f, path: Path, fmt: str, text_columns: tuple[str, ...], rows: int) -> Iterator[dict[str, list]]:
    """A .txt or .conll file read line by line, as column lists of up to `rows` rows: CoNLL sentences
    where the file is CoNLL, else one row per line (the first text column)."""
    conll, lines = _lines(f, fmt)
    if conll:
        yield from (_conll_columns(batch) for batch in _batches(conll_sentences(enumerate(lines, 1), path), rows))
    else:
        yield from ({_txt_column(text_columns): batch} for batch in _batches(lines, rows))


def read_frame(path: str | Path, text_columns: tuple[str, ...] = (), document_separator: str = "line"):
    """Read one local file into a pandas DataFrame; text columns stay strings."""
    import pandas as pd

    p = Path(path)
    fmt = file_format(p)
    with _parse_errors(p, fmt):
        if fmt == "parquet":
            return pd.read_parquet(p)
        text = _decode(p)
        if fmt in ("txt", "conll"):
            conll, lines = _lines(io.StringIO(text), fmt)
            if conll:
                sentences = conll_sentences(enumerate(lines, 1), p)
                return pd.DataFrame(_conll_columns(sentences), columns=list(CONLL_COLUMNS))
        if fmt == "txt":
            docs = split_documents(text, document_separator)
            return pd.DataFrame({_txt_column(text_columns): docs})
        if fmt in ("csv", "tsv"):
            return pd.read_csv(io.StringIO(text), dtype={c: str for c in text_columns}, **csv_options(fmt))
        if fmt == "jsonl":
            return pd.read_json(io.StringIO(text), lines=True, dtype=False)
        return _read_json_records(text, p)


def _txt_column(text_columns: tuple[str, ...]) -> str:
    """A .txt file's one column: the task's first text column."""
    return text_columns[0] if text_columns else "text"


@contextmanager
def _parse_errors(path: Path, fmt: str):
    """What pandas / pyarrow (or the plain readers) raise about a file's contents → one line naming the file."""
    try:
        yield
    except UserError:
        raise
    except UnicodeDecodeError:  # only from a file read in pieces: a whole one is decoded by _decode
        raise _first_bad_line(path) from None
    except ValueError as exc:  # pandas' ParserError and pyarrow's errors are ValueErrors
        raise UserError(f"{path}: cannot parse as {fmt}: {first_line(exc)}; check the file format") from None


def _read_json_records(text: str, path: Path):
    """A .json file: a list of records, or {"data": [...]} / {"version":..., "data": [...]}."""
    import json

    import pandas as pd

    obj = json.loads(text)
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if not isinstance(obj, list):
        raise UserError(f"{path}: expected a JSON list of records (or use .jsonl, one record per line)")
    if obj and all(isinstance(a, dict) and "paragraphs" in a for a in obj):
        return pd.DataFrame.from_records(_flatten_squad(obj, path))
    return pd.DataFrame.from_records(obj)


def _flatten_squad(articles: list, path: Path) -> list[dict]:
    """SQuAD's nesting (articles → paragraphs → questions) → one row per question, in file order:
    id, title, context, question, answers {text: [...], answer_start: [...]} (+ is_impossible, v2)."""
    rows = []
    for a, article in enumerate(articles):
        for p, paragraph in enumerate(article.get("paragraphs") or []):
            if not isinstance(paragraph, dict) or "context" not in paragraph:
                raise UserError(f"{path}: data[{a}].paragraphs[{p}] has no 'context'; is this a SQuAD file?")
            for qa in paragraph.get("qas") or []:
                answers = qa.get("answers") or []
                row = {
                    "id": str(qa.get("id", len(rows))),
                    "title": article.get("title", str(a)),
                    "context": paragraph["context"],
                    "question": qa.get("question"),
                    "answers": {"text": [x.get("text") for x in answers],
                                "answer_start": [x.get("answer_start") for x in answers]},
                }
                if "is_impossible" in qa:
                    row["is_impossible"] = bool(qa["is_impossible"])
                rows.append(row)
    if not rows:
        raise UserError(f"{path}: a SQuAD file with no questions ('qas'); check the file")
    if any("is_impossible" in r for r in rows):  # one type per column: no NaN where a file omits it
        for r in rows:
            r.setdefault("is_impossible", False)
    return rows


def read_table(spec: str | Path, key: str, text_columns: tuple[str, ...] = (), document_separator: str = "line"):
    """Read a local data file (or a folder / glob of them) into a `datasets.Dataset`, with clear errors."""
    import pandas as pd

    frames = []
    for path in expand(str(spec), key):
        check_file(path, key)
        frame = read_frame(path, text_columns, document_separator)
        if len(frame) == 0:
            raise _no_rows(path, key)
        frames.append(frame)
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return _to_dataset(frame, spec, key)


class NoRows(UserError):
    """An input with no data rows: an error for training and evaluation; `predict` writes an empty
    output instead (a nightly job with no new rows is not a failure)."""


def _no_rows(path: Path | str, key: str) -> NoRows:
    return NoRows(f"{key}: {path} has a header but no data rows")


def _to_dataset(frame, source, key: str, first_row: int = 0):
    """A DataFrame → `datasets.Dataset`; `first_row`: the frame's first row in the whole input, for messages."""
    from datasets import Dataset

    try:
        return Dataset.from_pandas(frame, preserve_index=False)
    except (TypeError, ValueError) as exc:  # pyarrow's ArrowTypeError / ArrowInvalid
        # JSON cells keep their own types, and Arrow cannot store text and numbers in one
        # column: name the column and the first row that differs instead of a pyarrow traceback.
        # Inside lists (multi-label rows such as ["joy", 3]) no row differs in kind: Arrow's own words.
        raise _mixed_column_error(_frame_columns(frame), source, key, first_row) or UserError(
            f"{key}: {source}: cannot hold its rows as a table ({'; '.join(map(str, exc.args))}); use one kind "
            "of value in each column, inside lists too") from None


def _frame_columns(frame) -> dict[str, list]:
    """A DataFrame as column lists, missing cells (NaN) as None: the values `Dataset.from_pandas` holds."""
    return {c: [None if isinstance(v, float) and v != v else v for v in frame[c].tolist()] for c in frame.columns}


def _to_columns(columns: dict[str, list], source, key: str, first_row: int = 0):
    """Column lists → `lmctl.table.Columns`, refused where `Dataset.from_pandas` refuses them (one
    column holding text and numbers), so both kinds of table read a file alike."""
    from lmctl.table import Columns

    error = _mixed_column_error(columns, source, key, first_row)
    if error is not None:
        raise error
    return Columns(columns)


def _mixed_column_error(columns: dict[str, list], source, key: str, first_row: int = 0) -> UserError | None:
    def kind(value) -> str | None:
        if value is None or (isinstance(value, float) and value != value):  # missing / NaN
            return None
        if isinstance(value, str):
            return "text"
        if isinstance(value, (bool, int, float)):
            return "numbers"
        return type(value).__name__

    for column, values in columns.items():
        first = None
        for i, value in enumerate(values):
            k = kind(value)
            if k is None:
                continue
            if first is None:
                first = (i, k, value)
            elif k != first[1]:
                return UserError(
                    f"{key}: {source}: column '{column}' mixes {first[1]} and {k}: row {first_row + first[0] + 1} "
                    f"holds {first[2]!r}, row {first_row + i + 1} holds {value!r}; use one kind of value in every row"
                )
    return None


def fingerprint(spec: str, key: str) -> dict | list:
    from lmctl.rundir import file_fingerprint

    files = expand(spec, key)
    prints = [file_fingerprint(f) for f in files]
    return prints[0] if len(prints) == 1 else prints


_BUILDERS = {"csv": "csv", "tsv": "csv", "json": "json", "jsonl": "json", "parquet": "parquet", "txt": "text"}


def stream_table(spec: str, key: str, document_separator: str = "line"):
    """A corpus read lazily (`data.streaming`): `datasets`' own builders, one pass, nothing in memory."""
    from datasets import load_dataset

    files = [str(f) for f in expand(spec, key)]
    for f in files:
        check_file(f, key)
    fmt = file_format(files[0])
    if fmt not in _BUILDERS:
        raise UserError(f"{key}: {files[0]} is a {fmt} file, which is not read as a stream; set data.streaming: false")
    kwargs = csv_options(fmt) if fmt in ("csv", "tsv") else {}
    if fmt == "txt" and document_separator == "blank_line":
        kwargs = dict(sample_by="paragraph")
    return load_dataset(_BUILDERS[fmt], data_files=files, split="train", streaming=True, **kwargs)


CHUNK_ROWS = 10_000
"""Rows predict reads, encodes and runs at a time: enough for longest-first batches to pay, few
enough that memory stays flat whatever the size of the input."""


def read_chunks(spec: str, key: str, text_columns: tuple[str, ...] = (),
                chunk_rows: int | None = CHUNK_ROWS, plain: bool = False) -> Iterator:
    """A local file (or a folder / glob of them), or '-' for stdin, as `datasets.Dataset` chunks of
    up to `chunk_rows` rows in input order (None: the whole input in one chunk). Parsed and checked
    as `read_table` does; row numbers in messages count from the start of the input. A .json file
    (a list, or SQuAD's nesting) cannot be read in pieces: it is parsed whole, then cut.

    `plain`: `lmctl.table.Columns` chunks instead, for predict's torch-free path (an ONNX export):
    JSON lines, CSV, TSV and text files are read without pandas or datasets (`_plain_chunks`, which
    reads the text columns' cells as pandas does: only an empty cell is missing), .json and
    parquet through pandas as above."""
    if spec == "-":
        yield from _stdin_chunks(text_columns, chunk_rows, plain)
        return
    if chunk_rows is None:
        if not plain:
            yield read_table(spec, key, text_columns)
            return
        from lmctl.table import Columns

        chunks = list(read_chunks(spec, key, text_columns, CHUNK_ROWS, plain))
        names = dict.fromkeys(c for chunk in chunks for c in chunk.column_names)  # JSON lines may add keys later
        yield Columns({c: [v for chunk in chunks for v in (chunk[c] if c in chunk.column_names else [None] * len(chunk))]
                       for c in names})
        return
    paths = expand(spec, key)
    for path in paths:  # a missing or empty file fails before the first one is read
        check_file(path, key)
    first_row = 0
    for path in paths:
        if not plain:
            tables = (_to_dataset(frame, spec, key, first_row) for frame in _frame_chunks(path, text_columns, chunk_rows))
        elif file_format(path) in PLAIN_FORMATS:
            tables = (_to_columns(columns, spec, key, first_row) for columns in _plain_chunks(path, text_columns,
                                                                                              chunk_rows))
        else:
            tables = (_to_columns(_frame_columns(frame), spec, key, first_row)
                      for frame in _frame_chunks(path, text_columns, chunk_rows))
        for table in tables:
            if len(table):
                yield table
                first_row += len(table)
    if first_row == 0:  # a file with a header and no rows among others adds none; all of them: none at all
        raise _no_rows(spec, key)


PLAIN_FORMATS = ("jsonl", "csv", "tsv", "txt", "conll")
"""What `_plain_chunks` reads with the standard library (pandas takes half a second to import)."""


def _plain_chunks(path: Path, text_columns: tuple[str, ...], rows: int) -> Iterator[dict[str, list]]:
    """One file as column lists of up to `rows` rows, as `_frame_chunks` reads the text columns:
    CSV (quoted cells, doubled quotes, blank lines skipped) and TSV (cells as they are); a row with
    fewer cells than the header is missing the rest, one with more is an error; an empty cell is
    missing (None), every other cell is text. JSON lines: one object per line, blank lines skipped.
    Other columns are read as text too (pandas would infer numbers): predict reads only text."""
    fmt = file_format(path)
    with _parse_errors(path, fmt), path.open(encoding="utf-8-sig", newline="") as f:
        if fmt in ("txt", "conll"):
            yield from _text_chunks(f, path, fmt, text_columns, rows)
        elif fmt == "jsonl":
            numbered = ((n, line) for n, line in enumerate(f, 1) if line.strip())
            for batch in _batches(numbered, rows):
                records = [_json_object(n, line) for n, line in batch]
                yield {c: [r.get(c) for r in records] for c in dict.fromkeys(c for r in records for c in r)}
        else:
            options = dict(delimiter="\t", quoting=csv.QUOTE_NONE) if fmt == "tsv" else {}
            reader = csv.reader(f, **options)
            header = _unique(next(reader, []))
            cells = (row for row in reader if row)
            for batch in _batches(cells, rows):
                columns: list[list] = [[] for _ in header]
                for row in batch:
                    if len(row) > len(header):
                        raise ValueError(f"Error tokenizing data. Expected {len(header)} fields in line "
                                         f"{reader.line_num}, saw {len(row)}")
                    for i, column in enumerate(columns):
                        column.append(row[i] if i < len(row) and row[i] != "" else None)
                yield dict(zip(header, columns))


def _json_object(n: int, line: str) -> dict:
    import json

    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {n}: {exc.msg}") from None
    if not isinstance(value, dict):
        raise ValueError(f"line {n}: {type(value).__name__}, not a JSON object")
    return value


def _unique(names: list[str]) -> list[str]:
    """Header names made unique as pandas makes them ('a', 'a.1', 'a.2')."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if name in seen:
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        seen.setdefault(name, 0)
        out.append(name)
    return out


def _frame_chunks(path: Path, text_columns: tuple[str, ...], rows: int) -> Iterator:
    """One file as DataFrames of up to `rows` rows, parsed as `read_frame` parses it whole."""
    import pandas as pd

    fmt = file_format(path)
    if fmt == "json":
        frame = read_frame(path, text_columns)
        yield from (frame.iloc[i:i + rows] for i in range(0, len(frame), rows))
        return
    with _parse_errors(path, fmt):
        if fmt == "parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
                yield batch.to_pandas()
            return
        # newline="": cells and lines keep their own line breaks, as in a file decoded whole.
        with path.open(encoding="utf-8-sig", newline="") as f:
            if fmt in ("txt", "conll"):
                yield from (pd.DataFrame(columns) for columns in _text_chunks(f, path, fmt, text_columns, rows))
            elif fmt in ("csv", "tsv"):
                with pd.read_csv(f, dtype={c: str for c in text_columns}, chunksize=rows,
                                 **csv_options(fmt)) as reader:
                    yield from reader
            else:
                with pd.read_json(f, lines=True, dtype=False, chunksize=rows) as reader:
                    yield from reader


def _stdin_chunks(text_columns: tuple[str, ...], rows: int | None, plain: bool = False) -> Iterator:
    """stdin: JSON lines if the first line is a JSON object, else one text per line (the first text
    column); blank lines are skipped. `plain`: `lmctl.table.Columns` chunks (read_chunks)."""
    import sys

    if plain:
        from lmctl.table import Columns as Dataset
    else:
        from datasets import Dataset

    lines = ((n, part) for n, line in enumerate(sys.stdin, 1) for part in line.splitlines() if part.strip())
    json_lines = None
    for batch in _batches(lines, rows):
        if json_lines is None:
            json_lines = batch[0][1].lstrip().startswith("{")
        if json_lines:
            yield Dataset.from_list([_json_line(n, text) for n, text in batch])
        else:
            yield Dataset.from_dict({_txt_column(text_columns): [text for _, text in batch]})
    if json_lines is None:
        # Unlike a file with a header and no rows, nothing at all on a pipe is taken as a broken upstream.
        raise UserError("stdin: no input lines; pipe one text (or JSON object) per line")


def _json_line(n: int, text: str):
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise UserError(f"stdin: line {n}: not valid JSON; send one JSON object per line or plain text") from None


def _batches(items, n: int | None) -> Iterator[list]:
    """Lists of `n` items (None: all of them), the last one shorter."""
    import itertools

    items = iter(items)
    while batch := list(itertools.islice(items, n)):
        yield batch


def count_rows(spec: str, key: str) -> int | None:
    """An input's rows counted without parsing it, for a progress bar: line breaks (less a header) in
    text files, sentences in CoNLL files, the footer's count in parquet; None for stdin and .json. A
    CSV cell that holds a line break makes it an overestimate."""
    if spec == "-":
        return None
    total = 0
    for path in expand(spec, key):
        fmt = file_format(path)
        if fmt == "json":
            return None
        if fmt == "parquet":
            import pyarrow.parquet as pq

            with _parse_errors(path, fmt):
                total += pq.ParquetFile(path).metadata.num_rows
            continue
        if fmt in ("txt", "conll"):
            sentences = _count_sentences(path, fmt)
            if sentences is not None:
                total += sentences
                continue
        lines, last = 0, b"\n"
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                lines += block.count(b"\n")
                last = block[-1:]
        total += lines + (last != b"\n") - (fmt in ("csv", "tsv"))
    return total


def _count_sentences(path: Path, fmt: str) -> int | None:
    """The sentences of a CoNLL file (runs of lines that are not blank or -DOCSTART-); None when it is
    not CoNLL."""
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        conll, lines = _lines(f, fmt)
        if not conll:
            return None
        count, inside = 0, False
        for line in lines:
            content = bool(line.strip()) and not _is_docstart(line)
            count += content and not inside
            inside = content
        return count


def check_columns(ds, columns: dict[str, str | None], source: str) -> None:
    """`columns` maps config key → column name; None means the column is not used."""
    names = ds.column_names
    if names is None:  # a stream whose columns are only known once read
        names = list(next(iter(ds)).keys())
    have = list(names)
    for key, name in columns.items():
        if name is not None and name not in have:
            raise UserError(
                f"{source}: no column '{name}' (from {key}); columns are: {', '.join(have)}. "
                f"Set {key} to one of them"
            )


def check_text(ds, column: str, source: str, words: bool = False) -> None:
    """Every cell of `column` is text that is not blank. `words`: a cell may be a list of words instead
    (text split already, token-classification's `tokens`), each word text that is not blank; one kind
    of cell in every row, as a table's column holds one type."""
    first = None
    for i, value in enumerate(ds[column]):
        if words and isinstance(value, (list, tuple)):
            if not value:
                raise RowError(source, i + 1, f"no words in column '{column}'; fill or remove that row", column=column)
            bad = [w for w in value if not isinstance(w, str) or not w.strip()]
            if bad:
                raise RowError(source, i + 1, f"column '{column}' holds the word {bad[0]!r}; every word must be "
                                              "text that is not blank", column=column)
        elif value is None or (isinstance(value, str) and not value.strip()):
            raise RowError(source, i + 1, f"empty text in column '{column}'; fill or remove that row",
                           column=column)
        elif not isinstance(value, str):
            raise RowError(source, i + 1, f"column '{column}' holds {value!r}, not text", column=column)
        kind = isinstance(value, str)
        if first is None:
            first = kind
        elif kind != first:
            raise RowError(source, i + 1, f"column '{column}' holds {'text' if kind else 'a list of words'} here "
                                          f"but {'text' if first else 'lists of words'} in the rows before; give "
                                          "one kind in every row", column=column)


@contextmanager
def rows_from(first_row: int):
    """Errors about the rows of one chunk of an input name the row by its place in the whole input."""
    try:
        yield
    except RowError as exc:
        raise exc.shifted(first_row) from None


def subsample(ds, n: int | None, seed: int):
    """A seeded random subset that keeps file order (files are often sorted by label)."""
    if n is None or n >= len(ds):
        return ds
    rng = random.Random(seed)
    return ds.select(sorted(rng.sample(range(len(ds)), n)))


def load_hub_dataset(name: str, config: str | None):
    from datasets import load_dataset

    from lmctl.hub import hub_offline

    if hub_offline():
        raise UserError(f"data.dataset_name '{name}': cannot reach the hub (HF_HUB_OFFLINE is set); give data.train_file")
    try:
        return load_dataset(name, config)
    except Exception as exc:  # network, auth and missing-dataset errors all end here
        raise UserError(
            f"data.dataset_name '{name}': cannot load it from the hub ({type(exc).__name__}); "
            "check the name and your network, or give data.train_file"
        ) from None


def hold_out(train, size: float, split_by: str | None, seed: int):
    """Train minus a validation part: `size` rows at random (a share < 1 or a count), or with
    `split_by`, the last `size` groups of that column in file order (e.g. whole articles),
    so no group has rows on both sides."""
    count = int(size) if size >= 1 else None
    if split_by is None:
        if count is not None and count >= len(train):
            raise UserError(f"data.validation_split: {count} rows asked but train has {len(train)}; use fewer")
        parts = train.train_test_split(test_size=count if count is not None else size, seed=seed)
        return parts["train"], parts["test"]
    if split_by not in train.column_names:
        raise UserError(f"data.split_by: no column '{split_by}' in the train data; columns are: "
                        f"{', '.join(train.column_names)}")
    keys = train[split_by]
    groups = list(dict.fromkeys(keys))  # file order
    n_held = count if count is not None else max(1, round(size * len(groups)))
    if n_held >= len(groups):
        raise UserError(f"data.split_by: '{split_by}' has {len(groups)} groups; validation_split={size:g} would "
                        "leave none for training")
    held = set(groups[len(groups) - n_held:])
    train_rows = [i for i, k in enumerate(keys) if k not in held]
    val_rows = [i for i, k in enumerate(keys) if k in held]
    return train.select(train_rows), train.select(val_rows)


def load_splits(cfg, text_columns: tuple[str, ...]) -> tuple[dict, dict]:
    """Train and validation splits from the config, plus their fingerprints."""
    d = cfg.data
    fingerprints: dict = {}
    if d.dataset_name:
        hub = load_hub_dataset(d.dataset_name, d.dataset_config)
        train = hub["train"]
        evals = {None: hub["validation"]} if "validation" in hub else None
        fingerprints["dataset"] = {"name": d.dataset_name, "config": d.dataset_config}
    else:
        if not d.train_file:
            raise UserError("data.train_file: not set; give a training file (csv, tsv, json, jsonl or parquet)")
        sep = d.document_separator
        if d.streaming:
            train = stream_table(d.train_file, "data.train_file", sep)
        else:
            train = read_table(d.train_file, "data.train_file", text_columns, sep)
        fingerprints["train_file"] = fingerprint(d.train_file, "data.train_file")
        files = d.eval_files()
        evals = {name: read_table(path, eval_key(name), text_columns, sep) for name, path in files.items()} or None
        if files:
            prints = {name: fingerprint(path, eval_key(name)) for name, path in files.items()}
            fingerprints["validation_file"] = prints[None] if None in prints else prints
    if d.streaming:
        if evals is None:
            raise UserError("data.streaming: a held-out split cannot be carved from a stream; set data.validation_file")
        train = train.shuffle(seed=cfg.training.seed, buffer_size=10_000)
        evals = {name: subsample(ds, d.max_eval_samples, cfg.training.seed) for name, ds in evals.items()}
        fingerprints["rows"] = {"train": "streamed", "validation": _rows(evals)}
        return {"train": train, "eval": evals}, fingerprints
    if evals is None:
        train, held = hold_out(train, d.validation_split, d.split_by, cfg.training.seed)
        evals = {None: held}
        fingerprints["validation_split"] = d.validation_split
        if d.split_by:
            fingerprints["split_by"] = d.split_by
    train = subsample(train, d.max_train_samples, cfg.training.seed)
    evals = {name: subsample(ds, d.max_eval_samples, cfg.training.seed) for name, ds in evals.items()}
    fingerprints["rows"] = {"train": len(train), "validation": _rows(evals)}
    return {"train": train, "eval": evals}, fingerprints


def eval_key(name: str | None) -> str:
    """The config key of an evaluation set, for messages."""
    return f"data.validation_file.{name}" if name else "data.validation_file"


def _rows(evals: dict) -> int | dict:
    return len(evals[None]) if None in evals else {name: len(ds) for name, ds in evals.items()}


def source_name(cfg, split: str, eval_set: str | None = None) -> str:
    """How messages name a split's data: its file, or where it was carved from."""
    if split == "train":
        return cfg.data.train_file or f"{cfg.data.dataset_name}[train]"
    files = cfg.data.eval_files()
    return files.get(eval_set) or f"validation split of {cfg.data.train_file or cfg.data.dataset_name}"
