"""Pre-flight of a user's task before Ray starts: template columns, label set, empty inputs or targets, and the
lengths the encoding cuts (a warning with the count; an error where a label word or a target would be cut)."""

from __future__ import annotations

import io
import shutil

import pytest
import yaml

from pipeline.config import load_config
from pipeline.preflight import PreflightError, check_lengths, task_labels
from tests.conftest import FIXTURES
from tests.unit.test_preflight import fails, home  # noqa: F401  (home: the CLI fixture)


@pytest.fixture
def user_home(home):  # noqa: F811  (the imported fixture)
    """`home` with the user-task fixtures under data/ and exp.yaml on the intents task."""
    for name in ("intents_tiny", "d2t_tiny"):
        shutil.copytree(FIXTURES / name, home / name)
    raw = yaml.safe_load((home / "exp.yaml").read_text())
    raw["search"].pop("metric")  # the task's main metric
    raw["data"].update(task="intents_tiny/task.yaml", train_file="intents_tiny/train.csv",
                       validation_file="intents_tiny/validation.csv", max_target_length=24)
    (home / "exp.yaml").write_text(yaml.safe_dump(raw))
    return home


def test_a_template_column_the_file_lacks_is_one_line(user_home):
    fails(["search", "exp.yaml", "data.task.template='Query: {query}'"], "intents_tiny/train.csv:2: missing column "
          "'query' for task 'intents'; found columns: text, category")


def test_a_task_file_that_is_missing_is_one_line(user_home):
    fails(["search", "exp.yaml", "data.task=nope.yaml"], "config file 'nope.yaml' not found; expected a YAML task "
          "definition file")


def test_a_validation_label_outside_the_training_labels_names_the_row(user_home):
    (user_home / "intents_tiny" / "validation.csv").write_text("text,category\nhello,card_arrival\nhi,refund\n")
    fails(["search", "exp.yaml"], "data.validation_file: ", "validation.csv:3: label 'refund' is not in the label "
          "set of task 'intents'")


def test_an_empty_generation_target_names_the_row(user_home):
    (user_home / "d2t_tiny" / "train.jsonl").write_text('{"mr": "a", "ref": "b"}\n{"mr": "c", "ref": ""}\n')
    fails(["search", "exp.yaml", "data.task=d2t_tiny/task.yaml", "data.train_file=d2t_tiny/train.jsonl",
           "data.validation_file=d2t_tiny/validation.jsonl"], "train.jsonl:2: empty target in column 'ref'")


def _cfg(user_home, tiny_dirs, *overrides: str):
    return load_config(user_home / "exp.yaml", [f"backbone.name_or_path={tiny_dirs['llama']}", *overrides])


def test_truncated_inputs_are_counted_in_one_warning(user_home, tiny_dirs):
    cfg = _cfg(user_home, tiny_dirs, "data.max_length=12")
    out = io.StringIO()
    check_lengths(cfg, task_labels(cfg), out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("[promptfarm] warning: data.train_file: ")
    assert " of 16 inputs are longer than data.max_length=12 tokens and lose their end" in lines[0]
    quiet = io.StringIO()
    check_lengths(_cfg(user_home, tiny_dirs, "data.max_length=256"), task_labels(cfg), quiet)
    assert quiet.getvalue() == ""


def test_a_label_word_or_target_that_would_be_cut_is_an_error(user_home, tiny_dirs):
    cfg = _cfg(user_home, tiny_dirs, "data.max_target_length=4")
    with pytest.raises(PreflightError, match=r"^label word '.*' of task 'intents' is \d+ tokens with its EOS; "
                                             r"expected at most data.max_target_length=4 \(raise it\)$"):
        check_lengths(cfg, task_labels(cfg))
    gen = _cfg(user_home, tiny_dirs, "data.task=d2t_tiny/task.yaml", "data.train_file=d2t_tiny/train.jsonl",
               "data.validation_file=d2t_tiny/validation.jsonl", "data.max_target_length=6")
    with pytest.raises(PreflightError, match=r"train.jsonl:1: the target is \d+ tokens with its EOS; expected "
                                             r"at most data.max_target_length=6"):
        check_lengths(gen, task_labels(gen))
