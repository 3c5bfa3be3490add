"""Local data files: pre-flight reads every row in constant memory; bad bytes or rows are one line naming the file."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from pipeline.data.builtin import get_task
from pipeline.data.readers import MAX_LINE_BYTES
from pipeline.data.sources import check_file, load_examples
from pipeline.preflight import PreflightError, check_data_file
from tests.unit.test_preflight import fails, home  # noqa: F401  (home: the CLI fixture)

SST2, RTE, STSB = get_task("sst2"), get_task("rte"), get_task("stsb")


def both_fail(task, path, pattern: str) -> str:
    """Pre-flight and the trial's reader refuse `path` with the same one-line message matching `pattern`."""
    with pytest.raises(ValueError, match=pattern) as pre:
        check_file(task, "train", str(path))
    with pytest.raises(ValueError) as trial:
        load_examples(task, "train", str(path))
    assert str(pre.value) == str(trial.value) and "\n" not in str(pre.value)
    return str(pre.value)


def sst2_tsv(path, rows: int, bad_at: int | None = None, bad: str = "7"):
    lines = ["sentence\tlabel"] + [f"film number {i}\t{i % 2}" for i in range(1, rows + 1)]
    if bad_at is not None:
        lines[bad_at] = f"film number {bad_at}\t{bad}"
    path.write_text("\n".join(lines) + "\n")
    return path


def rte_jsonl(path, rows: int, broken_line: int | None = None):
    lines = [json.dumps({"idx": i, "sentence1": "a", "sentence2": "b", "label": i % 2}) for i in range(rows)]
    if broken_line is not None:
        lines[broken_line - 1] = '{"idx": 1, "sentence1": "a", '
    path.write_text("\n".join(lines) + "\n")
    return path


# --- every row is checked, not the first 100 -------------------------------------------------------------------


def test_label_out_of_range_at_row_5000_fails_preflight_naming_the_line(tmp_path):
    path = sst2_tsv(tmp_path / "train.tsv", 6000, bad_at=5000)
    both_fail(SST2, path, rf"^{path}:5001: label '7' is not in the label set of task 'sst2'")
    with pytest.raises(PreflightError, match=rf"^data.train_file: {path}:5001: label '7'"):
        check_data_file("sst2", "data.train_file", str(path), "train")


def test_malformed_jsonl_line_150_fails_preflight(tmp_path):
    path = rte_jsonl(tmp_path / "train.jsonl", 300, broken_line=150)
    both_fail(RTE, path, rf"^{path}:150: invalid JSON \(")


def test_cli_preflight_sees_a_bad_row_past_the_first_hundred(home):  # noqa: F811  (the imported fixture)
    sst2_tsv(home / "data" / "late.tsv", 400, bad_at=350, bad="-1")
    fails(["search", "exp.yaml", "data.train_file=data/late.tsv"], "late.tsv:351: label '-1'")


def test_full_check_counts_every_row_in_constant_memory(tmp_path):
    path = sst2_tsv(tmp_path / "train.tsv", 50_000)
    tracemalloc.start()
    try:
        file, rows = check_file(SST2, "train", str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (file, rows) == (path, 50_000)
    assert peak < 2_000_000, peak  # the 50,000 examples as dicts would take ~20 MB


def test_non_finite_regression_label_is_refused(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence1\tsentence2\tlabel\na\tb\t3.2\nc\td\tnan\n")
    both_fail(STSB, path, rf"^{path}:3: label 'nan' is not a finite number$")


# --- bytes and fields the csv/json readers would choke on ------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "line"), [(".tsv", "{}\t1"), (".csv", "{},1"), (".csv", '"{}",1')])
def test_field_over_the_csv_limit_is_one_line_naming_file_and_row(tmp_path, suffix, line):
    path = tmp_path / f"train{suffix}"
    sep = "\t" if suffix == ".tsv" else ","
    path.write_text(f"sentence{sep}label\nfine{sep}1\n" + line.format("x" * 200_000) + "\n")
    kind = suffix[1:].upper()
    both_fail(SST2, path, rf"^{path}:3: row 2 is not valid {kind} \(field larger than field limit \(131072\)\); "
                          r"expected text fields of at most 131072 characters$")


@pytest.mark.parametrize("suffix", [".tsv", ".jsonl"])
def test_a_line_of_many_megabytes_is_refused_without_being_held(tmp_path, suffix):
    path = tmp_path / f"train{suffix}"
    first = '{"sentence": "fine", "label": 1}' if suffix == ".jsonl" else "sentence\tlabel"
    path.write_text(f"{first}\n" + "x" * (8 * MAX_LINE_BYTES) + "\n")  # no newline in the next 8 MiB
    tracemalloc.start()
    try:
        message = both_fail(SST2, path, rf"^{path}:2: line is longer than {MAX_LINE_BYTES} bytes; expected one")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_LINE_BYTES, (peak, message)  # the whole line would be 8 MiB (as str, more)


def test_binary_data_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes(b"sentence\tlabel\nok\t1\n\x80\x81\xff\t0\n")
    both_fail(SST2, path, rf"^{path}:3: not UTF-8 text \(byte 0x80 at column 1\); expected a UTF-8")


def test_a_utf8_bom_and_crlf_endings_still_read(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes(b"\xef\xbb\xbfsentence\tlabel\r\na fine film\t1\r\na dull one\t0\r\n")
    assert [r["label"] for r in load_examples(SST2, "train", str(path), seed=None)] == [1, 0]
    assert check_file(SST2, "train", str(path))[1] == 2


def test_deeply_nested_jsonl_is_one_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("[" * 100_000 + "\n")
    both_fail(RTE, path, rf"^{path}:1: invalid JSON \(nested too deeply\)$")


def test_cli_huge_field_and_binary_data_are_one_error_line(home):  # noqa: F811  (the imported fixture)
    (home / "data" / "huge.tsv").write_text("sentence\tlabel\nfine\t1\n" + "x" * 300_000 + "\t0\n")
    fails(["train-one", "exp.yaml", "data.train_file=data/huge.tsv"],
          "data.train_file: ", "huge.tsv:3: row 2 is not valid TSV (field larger than field limit (131072))")
    (home / "data" / "bin.tsv").write_bytes(bytes((i * 167 + 13) % 256 for i in range(4096)))
    fails(["evaluate", "exp.yaml", "--file", "data/bin.tsv"], "bin.tsv:1: not UTF-8 text")


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".parquet"])
def test_a_header_naming_one_column_twice_is_refused(tmp_path, suffix):
    """csv.DictReader (and a Parquet row dict) keep the last of two same-named columns: training would read it."""
    path = tmp_path / f"twice{suffix}"
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table([pa.array(["a"]), pa.array([1]), pa.array(["b"])],
                                names=["sentence", "label", "sentence"]), path)
    else:
        sep = "\t" if suffix == ".tsv" else ","
        path.write_text(sep.join(["sentence", "label", "sentence"]) + "\n" + sep.join(["a", "1", "b"]) + "\n")
    both_fail(SST2, path, rf"{path}:1: the header names column 'sentence' twice; expected each column once")


def test_a_jsonl_row_naming_one_key_twice_is_refused_by_line(tmp_path):
    path = rte_jsonl(tmp_path / "rte.jsonl", 5)
    lines = path.read_text().splitlines()
    lines[3] = '{"idx": 3, "sentence1": "a", "sentence2": "b", "label": 0, "label": 1}'
    path.write_text("\n".join(lines) + "\n")
    both_fail(RTE, path, rf"{path}:4: key 'label' appears twice in one object; expected each key once")


@pytest.mark.parametrize(("value", "shown"), [
    (None, "null 'None'"), (3, "a number '3'"), (["a"], "a list \"\\['a'\\]\""), ({"t": 1}, "an object"),
    (True, "a boolean"),
])
def test_a_jsonl_text_field_that_is_not_a_string_is_refused_by_line(tmp_path, value, shown):
    """Rendered through the template it would be scored as the text 'None', '3', "['a']"."""
    path = rte_jsonl(tmp_path / "rte.jsonl", 5)
    lines = path.read_text().splitlines()
    lines[2] = json.dumps({"idx": 2, "sentence1": value, "sentence2": "b", "label": 0})
    path.write_text("\n".join(lines) + "\n")
    both_fail(RTE, path, rf"{path}:3: column 'sentence1' holds {shown}.*; expected text \(a string\)")
