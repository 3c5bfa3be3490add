"""A user's own task: defined in the YAML (or a file it names), read from every file format, labels from a mapping
or from the data, generation rows grouped into references; bad definitions and rows are one line."""

from __future__ import annotations

import csv
import json

import pytest

from pipeline.config import ConfigError, load_config
from pipeline.data.builtin import get_task, task_from, task_names
from pipeline.data.sources import check_file, load_examples, with_data_labels
from pipeline.data.tasks import Task, readable
from tests.conftest import FIXTURES

INTENTS = FIXTURES / "intents_tiny"
D2T = FIXTURES / "d2t_tiny"
TICKETS = {"name": "tickets", "kind": "classification", "template": "Query: {text}", "label_column": "intent"}
ROWS = [("my card never came", "card_arrival"), ("what rate do you use", "exchange_rate"),
        ("i lost my card", "lost_or_stolen_card"), ("the card is late", "card_arrival")]


def _write(path, rows, columns=("text", "intent")):
    """`rows` as a file of `path`'s format (csv, tsv, jsonl, parquet)."""
    dicts = [dict(zip(columns, r, strict=True)) for r in rows]
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(d) + "\n" for d in dicts))
    elif path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(dicts), path)
    else:
        with path.open("w", newline="") as f:
            w = csv.writer(f, delimiter="\t" if path.suffix == ".tsv" else ",")
            w.writerow(columns)
            w.writerows(rows)
    return path


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_a_user_task_reads_every_file_format_the_same(tmp_path, ext):
    path = _write(tmp_path / f"train{ext}", ROWS)
    task = with_data_labels(task_from(TICKETS), str(path))
    assert task.label_values == ("card_arrival", "exchange_rate", "lost_or_stolen_card")  # sorted values
    assert task.label_words == ("card arrival", "exchange rate", "lost or stolen card")
    rows = load_examples(task, "train", str(path))
    assert [task.source_text(r) for r in rows] == [f"Query: {t}" for t, _ in ROWS]
    assert [task.target_text(r) for r in rows] == ["card arrival", "exchange rate", "lost or stolen card",
                                                   "card arrival"]
    assert check_file(task, "train", str(path)) == (path, 4)


def test_label_words_from_a_mapping_and_from_a_list():
    mapped = task_from({**TICKETS, "labels": {"card_arrival": "card late", "exchange_rate": "rates"}})
    assert mapped.label_values == ("card_arrival", "exchange_rate") and mapped.label_words == ("card late", "rates")
    assert not mapped.needs_labels and with_data_labels(mapped, "never-read.csv") is mapped  # as given
    listed = task_from({**TICKETS, "labels": ["no", "yes"]})
    assert listed.labels == {"0": "no", "1": "yes"}
    row = {"text": "x", "intent": "yes"}  # a row may carry the word itself, as GLUE files may
    assert listed.label({**row, "intent": 1}) == 1
    assert readable("Refund_not_showing_up") == "Refund not showing up"


def test_a_label_outside_a_mapping_names_the_file_and_row(tmp_path):
    path = _write(tmp_path / "train.csv", ROWS)
    task = task_from({**TICKETS, "labels": {"card_arrival": "card late", "exchange_rate": "rates"}})
    with pytest.raises(ValueError, match=rf"^{path}:4: label 'lost_or_stolen_card' is not in the label set of task "
                                         r"'tickets'; expected one of 'card_arrival', 'exchange_rate'"):
        check_file(task, "train", str(path))


def test_a_validation_label_the_training_data_lacks_names_the_file_and_row(tmp_path):
    train = _write(tmp_path / "train.csv", ROWS[:2])
    val = _write(tmp_path / "validation.csv", [ROWS[0], ROWS[2]])
    task = with_data_labels(task_from(TICKETS), str(train))
    with pytest.raises(ValueError, match=rf"^{val}:3: label 'lost_or_stolen_card' is not in the label set"):
        load_examples(task, "validation", str(val))


@pytest.mark.parametrize(("rows", "match"), [
    ([("", "card_arrival")], r":2: empty input \(the columns text are all empty\)"),
    ([("hi", "card_arrival"), ("hi",)], r":3: row does not have the 2 columns of the header"),
], ids=["empty-input", "short-row"])
def test_bad_rows_are_one_line(tmp_path, rows, match):
    path = tmp_path / "train.csv"
    path.write_text("text,intent\n" + "\n".join(",".join(r) for r in rows) + "\n")
    task = task_from({**TICKETS, "labels": ["card_arrival"]})
    with pytest.raises(ValueError, match=match) as e:
        check_file(task, "train", str(path))
    assert "\n" not in str(e.value)


def test_a_missing_template_column_names_the_columns_found(tmp_path):
    path = _write(tmp_path / "train.csv", ROWS)
    task = task_from({**TICKETS, "template": "Query: {query}", "labels": ["x"]})
    with pytest.raises(ValueError, match=r"train.csv:2: missing column 'query' for task 'tickets'; found columns: "
                                         r"text, intent"):
        check_file(task, "train", str(path))


def test_generation_rows_of_one_input_are_its_references():
    task = task_from(str(D2T / "task.yaml"))
    train = load_examples(task, "train", str(D2T / "train.jsonl"))
    val = load_examples(task, "validation", str(D2T / "validation.jsonl"))
    assert len(train) == 8  # every (input, reference) row trains
    assert [task.source_text(v) for v in val] == ["name[Strada], eatType[pub]", "name[Wildwood], area[city centre]",
                                                  "name[Giraffe], familyFriendly[yes]",
                                                  "name[Aromi], eatType[coffee shop]"]
    assert task.references(val[2]) == ["Giraffe is family friendly.", "Giraffe welcomes families."]
    assert task.target_text(val[2]) == "Giraffe is family friendly."  # the loss is taken on the first
    assert len(load_examples(task, "validation", str(D2T / "validation.jsonl"), limit=2)) == 2  # inputs, not rows


def test_an_empty_generation_target_names_the_row(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"mr": "a", "ref": "b"}) + "\n" + json.dumps({"mr": "a", "ref": " "}) + "\n")
    with pytest.raises(ValueError, match=r"train.jsonl:2: empty target in column 'ref'"):
        check_file(task_from(str(D2T / "task.yaml")), "train", str(path))


def test_the_builtin_tasks_are_rows_of_the_same_schema():
    for name in task_names():
        task = get_task(name)
        assert isinstance(task, Task) and task_from(task.to_dict()) == task  # a definition round-trips
    sst2 = get_task("sst2")
    assert sst2.template == "sst2 sentence: {sentence}" and sst2.source_text({"sentence": " fine "}) == \
        "sst2 sentence: fine"
    assert get_task("rte").source_text({"sentence1": "A", "sentence2": "B"}) == "rte sentence1: A sentence2: B"


def test_a_task_in_the_yaml_or_in_a_file_it_names(tmp_path):
    inline = load_config(None, ["data.task={name: intents, template: 'Query: {text}', label_column: category}"])
    from_file = load_config(None, [f"data.task={INTENTS / 'task.yaml'}"])
    assert inline.data.task == from_file.data.task
    assert load_config(None, []).data.task == get_task("sst2")
    assert from_file.to_dict()["data"]["task"]["template"] == "Query: {text}"
    assert load_config(None, [f"data.task={INTENTS / 'task.yaml'}"]).data.task.digest() == from_file.data.task.digest()


@pytest.mark.parametrize(("task", "match"), [
    ({"name": "a/b", "template": "{x}"}, r"data.task.name='a/b' is not a plain name"),
    ({"name": "", "template": "{x}"}, r"data.task.name='' is not a plain name"),
    ({"template": "{x}"}, r"data.task: a task definition needs a 'name'"),
    ({"name": "t", "template": "no fields"}, r"task 't': template 'no fields' reads no column"),
    ({"name": "t", "template": "{x.y}"}, r"template field \{x.y\} is not allowed"),
    ({"name": "t", "template": "{x"}, r"template '\{x' is not a format string"),
    ({"name": "t", "template": "{label} {x}"}, r"the template uses \{label\}, the column the model must predict"),
    ({"name": "t", "template": "{x}", "kind": "generation", "metrics": ["accuracy"]},
     r"metric 'accuracy' is not computed for a generation task; expected one of: bleu"),
    ({"name": "t", "template": "{x}", "labels": ["a", "A"]}, r"label word 'a' is given to two labels"),
    ({"name": "t", "template": "{x}", "stop": ["tab"]}, r"stop 'tab' is not allowed"),
    ({"name": "t", "template": "{x}", "bogus": 1}, r"unknown key 'data.task.bogus'"),
    ("sst3", r"data.task='sst3' is not a known task; expected one of: cola, sst2"),
], ids=["slash", "empty", "no-name", "no-field", "attribute", "brace", "answer", "metric", "dup-word", "stop",
        "unknown-key", "unknown-name"])
def test_bad_task_definitions_are_one_line(task, match):
    with pytest.raises(ConfigError, match=match) as e:
        load_config(None, [f"data.task={json.dumps(task)}"])
    assert "\n" not in str(e.value)


def test_a_hub_dataset_source_with_renamed_columns(monkeypatch):
    """`hub_path` goes to `datasets.load_dataset` (here a local directory of CSV files, which it reads offline like
    a hub dataset): split names, the column mapping, labels from the train split and the seeded subset."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    task = with_data_labels(task_from({"name": "intents", "template": "Query: {query}", "label_column": "category",
                                       "columns": {"text": "query"}, "hub_path": str(INTENTS)}), None)
    assert task.label_words == ("card arrival", "exchange rate", "lost or stolen card", "top up failed")
    val = load_examples(task, "validation", None)
    assert len(val) == 8 and task.source_text(val[0]) == "Query: my card has not arrived"
    assert task.target_text(val[0]) == "card arrival"
    # the hub split and the same CSV read as a local file give the same seeded subset
    assert load_examples(task, "train", None, limit=5, seed=0) == load_examples(
        task, "train", str(INTENTS / "train.csv"), limit=5, seed=0)
