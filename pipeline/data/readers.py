"""Row readers of local data files, each row with its 1-based line (or row) number so an error names it.

JSONL/JSON (one object per line), CSV and TSV are decoded line by line in bounded memory; Parquet is read
through pyarrow one record batch at a time. Every reader yields (number, row dict) and raises a one-line
ValueError naming the file and the line for anything it cannot read.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from pipeline.schema import DuplicateKeyError, loads_unique

Row = tuple[int, dict]  # (1-based line number, raw row)
# Longest line read: GLUE/SuperGLUE examples are a few KiB (MultiRC paragraphs the longest); memory stays
# bounded whatever a file holds.
MAX_LINE_BYTES = 1 << 20


def _lines(path: Path) -> Iterator[str]:
    """The lines of ``path`` (endings kept), decoded one by one so an error names its line: a line over
    MAX_LINE_BYTES is refused before it is held whole (a binary, or a JSON array on one line), and so is one
    that is not UTF-8."""
    with path.open("rb") as handle:
        for line_no in itertools.count(1):
            raw = handle.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise ValueError(
                    f"{path}:{line_no}: line is longer than {MAX_LINE_BYTES} bytes; expected one "
                    "example per line (a text file, not a binary or a one-line JSON array)"
                )
            try:
                yield raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path}:{line_no}: not UTF-8 text (byte 0x{raw[err.start]:02x} at column "
                    f"{err.start + 1}); expected a UTF-8 JSONL/CSV/TSV file"
                ) from None


def _read_jsonl(path: Path) -> Iterator[Row]:
    for line_no, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            row = loads_unique(line)
        except DuplicateKeyError as err:
            raise ValueError(f"{path}:{line_no}: {err}") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{line_no}: invalid JSON ({err.msg})") from None
        except RecursionError:
            raise ValueError(f"{path}:{line_no}: invalid JSON (nested too deeply)") from None
        if isinstance(row, dict):
            yield line_no, row
            continue
        kind = type(row).__name__
        raise ValueError(f"{path}:{line_no}: expected a JSON object, got {kind}")


def _read_delimited(path: Path, **dialect) -> Iterator[Row]:
    read = [0]  # lines handed to the csv reader: on a csv.Error its line_num lags the line it failed in

    def lines() -> Iterator[str]:
        for read[0], line in enumerate(_lines(path), start=1):
            yield line

    reader = csv.DictReader(lines(), **dialect)
    kind = "TSV" if dialect.get("delimiter") == "\t" else "CSV"
    try:
        _unique_columns(path, reader.fieldnames or ())  # DictReader keeps the last of two same-named columns
    except csv.Error as err:
        raise ValueError(f"{path}:1: the header is not valid {kind} ({err})") from None
    for count in itertools.count(1):
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:  # e.g. "field larger than field limit (131072)": one line, not a traceback
            raise ValueError(
                f"{path}:{read[0]}: row {count} is not valid {kind} ({err}); expected "
                f"text fields of at most {csv.field_size_limit()} characters"
            ) from None
        # A short row leaves None values, a long one a None key: both mean the
        # columns are misaligned (e.g. a tab inside a text field).
        if None in row or None in row.values():
            raise ValueError(
                f"{path}:{reader.line_num}: row does not have the "
                f"{len(reader.fieldnames or ())} columns of the header"
            )
        yield reader.line_num, row


def _unique_columns(path: Path, names) -> None:
    """A header naming one column twice is an error naming it (readers would keep one of them silently)."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{path}:1: the header names column {name!r} twice; expected each column once")
        seen.add(name)


def _read_csv(path: Path) -> Iterator[Row]:
    return _read_delimited(path)


def _read_tsv(path: Path) -> Iterator[Row]:
    # GLUE TSVs contain unbalanced quote characters inside sentences, so quoting must
    # be off or the csv module would swallow tabs and newlines into one field.
    return _read_delimited(path, delimiter="\t", quoting=csv.QUOTE_NONE)


def _read_parquet(path: Path) -> Iterator[Row]:
    """Rows of a Parquet file (row numbers from 1), one record batch in memory at a time."""
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except Exception as e:  # ArrowInvalid and friends: not a Parquet file
        raise ValueError(f"{path}: not a valid Parquet file ({str(e).splitlines()[0]})") from None
    _unique_columns(path, handle.schema_arrow.names)
    number = 0
    for batch in handle.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            number += 1
            yield number, row


READERS: dict[str, Callable[[Path], Iterator[Row]]] = {
    ".jsonl": _read_jsonl,
    ".json": _read_jsonl,
    ".csv": _read_csv,
    ".tsv": _read_tsv,
    ".parquet": _read_parquet,
}


def read_rows(path: Path) -> Iterator[Row]:
    """(number, row) of every row of `path`, by its extension."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"unsupported data file extension {path.suffix!r} for {path}; "
                         f"expected one of: {', '.join(READERS)}")
    return reader(path)


