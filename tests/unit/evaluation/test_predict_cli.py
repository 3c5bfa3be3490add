"""`promptfarm predict` on a user task's prompt: TEXT arguments, standard input and a --file of rows give the same
predictions; every bad input is one `error:` line and exit 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipeline import methods
from pipeline.artifact import save_prompt
from pipeline.cli import app
from pipeline.data.builtin import task_from
from pipeline.data.encode import Encoding
from pipeline.data.sources import with_data_labels
from pipeline.methods.pt import PTConfig
from tests.conftest import FIXTURES

INTENTS = FIXTURES / "intents_tiny"


@pytest.fixture
def prompt(backbones, tmp_path):
    """A PT artifact of the intents task (label words from its training file) over the tiny llama."""
    model, _, info = backbones["llama"]
    task = with_data_labels(task_from(str(INTENTS / "task.yaml")), str(INTENTS / "train.csv"))
    cfg = PTConfig(num_tokens=3)
    return save_prompt(tmp_path / "prompt", cfg, methods.build(cfg, info).state_dict(), info, task,
                       Encoding(64, 24, " Intent:"))


def _run(args, stdin=None):
    result = CliRunner().invoke(app, ["predict", *map(str, args)], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_arguments_stdin_and_a_file_predict_the_same(prompt, tiny_dirs):
    texts = ["i lost my card", "what is the exchange rate"]
    code, by_args, _ = _run([prompt, *texts, "--backbone", tiny_dirs["llama"]])
    assert code == 0
    lines = by_args.strip().splitlines()
    words = {"card arrival", "exchange rate", "lost or stolen card", "top up failed"}
    assert [ln.split("\t")[1] for ln in lines] == texts
    assert all(ln.split("\t")[0] in words for ln in lines)
    assert _run([prompt, "--backbone", tiny_dirs["llama"]], "\n".join(texts) + "\n")[1] == by_args
    assert _run([prompt, "-", "--backbone", tiny_dirs["llama"]], "\n".join(texts) + "\n")[1] == by_args  # `-`: stdin
    rows = FIXTURES / "intents_tiny" / "validation.csv"
    code, by_file, _ = _run([prompt, "--file", rows, "--backbone", tiny_dirs["llama"]])
    assert code == 0 and len(by_file.strip().splitlines()) == 8


@pytest.mark.parametrize(("args", "stdin", "match"), [
    (["--field", "query", "x"], None, "--field 'query' is not a column of task 'intents''s template; expected one "
                                      "of: text"),
    (["--file", "missing.csv"], None, "input file 'missing.csv' not found; expected a JSONL/CSV/TSV/Parquet file"),
    (["x", "--file", "rows.csv"], None, "give inputs as TEXT arguments or --file 'rows.csv', not both"),
    (["--file", "{bad}"], None, ":2: missing column 'text' of task 'intents''s template 'Query: {text}'"),
    ([], "\n", "no inputs to predict; expected TEXT arguments, --file ROWS or lines on standard input"),
    (["--field", "query"], "hello\n", "--field 'query' is not a column of task 'intents''s template"),
    (["--field", "text", "--file", "{bad}"], None, "--field 'text' fills a template column from TEXT or standard "
                                                   "input; a --file row names its columns itself"),
], ids=["field", "missing-file", "both", "columns", "no-input", "field-on-stdin", "field-with-file"])
def test_bad_input_is_one_line_and_exit_2(prompt, tiny_dirs, tmp_path, args, stdin, match):
    bad = tmp_path / "bad.csv"
    bad.write_text("utterance\nhello\n")
    args = [str(bad) if a == "{bad}" else a for a in args]
    code, out, err = _run([prompt, *args, "--backbone", tiny_dirs["llama"]], stdin)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], err


def test_an_uncached_hub_backbone_offline_is_one_line_at_once(prompt, monkeypatch):
    """Loading it would retry the hub for ~25 s and print a dozen lines; the pre-flight probe answers first."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = _run([prompt, "hello", "--backbone", "some-org/not-in-the-cache"])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: backbone 'some-org/not-in-the-cache' is not a local directory and not in "
                               "the Hugging Face cache") and "the hub is offline (HF_HUB_OFFLINE=1)" in lines[0]
