"""`promptfarm config`: every config field is shown with its type, default, range and its docstring from the code."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

from pipeline import methods
from pipeline.cli import app
from pipeline.config import ExperimentConfig, TrainConfig
from pipeline.config_doc import describe, experiment_fields, field_docstrings


def test_every_field_of_every_section_and_method_has_its_docstring():
    rows = experiment_fields()
    keys = {(r.key, r.method) for r in rows}
    for f in dataclasses.fields(TrainConfig):
        assert (f"train.{f.name}", "") in keys
    for name in methods.names():
        for f in dataclasses.fields(methods.config_class(name)):
            assert (f"method.{f.name}", name) in keys
    missing = [r.key + (f" ({r.method})" if r.method else "") for r in rows if not r.doc]
    assert not missing, f"fields without a docstring: {missing}"  # the config style: one line per field


def test_values_are_read_from_the_code():
    (row,) = [r for r in describe(ExperimentConfig) if r.key == "train.max_steps"]
    assert row.type == "int" and row.default == repr(TrainConfig().max_steps) and row.range == "[1, inf]"
    assert row.doc == field_docstrings(TrainConfig)["max_steps"]
    (lr,) = [r for r in experiment_fields("pt") if r.key == "method.lr"]
    assert lr.range.startswith("(0.0,")  # lo_open bound shown as an open interval


def test_cli_prints_a_section_and_refuses_an_unknown_one_in_one_line():
    out = CliRunner().invoke(app, ["config", "dept"])
    assert out.exit_code == 0
    assert "method.lr_lowrank: float = 0.03" in out.output and "(method.name: dept)" in out.output
    assert "\ntrain." not in out.output and not out.output.startswith("train.")  # no field of another section
    bad = CliRunner().invoke(app, ["config", "trian"])
    assert bad.exit_code == 2
    assert "config section 'trian' does not exist; expected one of: backbone, data" in bad.output
    assert bad.output.strip().count("\n") == 0


@pytest.mark.parametrize("section", ["backbone", "data", "train", "search", "tracking"])
def test_each_section_lists_only_its_own_keys(section):
    rows = experiment_fields(section)
    assert rows and all(r.key.startswith(section + ".") for r in rows)


def test_output_says_floats_take_exponent_spellings():
    out = CliRunner().invoke(app, ["config", "pt"])
    assert out.exit_code == 0
    note = out.output.strip().splitlines()[-1]
    assert note.startswith("note: float values") and "1e-4" in note and "NaN and inf are refused" in note
    assert "note:" not in CliRunner().invoke(app, ["config", "tracking"]).output  # no float field there


def test_the_task_section_is_documented_field_by_field():
    from pipeline.data.tasks import Task

    keys = {r.key: r for r in experiment_fields("data")}
    for f in dataclasses.fields(Task):
        assert f"data.task.{f.name}" in keys and keys[f"data.task.{f.name}"].doc
    assert keys["data.task.kind"].type == "Literal['classification', 'generation', 'regression']"
    assert keys["data.chat_template"].default == "False"
