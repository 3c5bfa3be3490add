"""Tests for task definitions (pipeline.data.tasks) and example loading (sources)."""

import sys
import types

import pytest

from pipeline.data.builtin import get_task, task_names
from pipeline.data.sources import load_examples
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures"
SST2_TEST = ROOT.parent / "shared" / "data" / "sst2" / "test.tsv"

GLUE = ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"]
SUPERGLUE = ["boolq", "cb", "copa", "wic", "wsc", "multirc"]


def test_registry_has_glue_and_superglue_but_not_record():
    assert task_names() == GLUE + SUPERGLUE
    assert "record" not in task_names()
    for name in GLUE:
        assert get_task(name).hub_path == "glue"
    for name in SUPERGLUE:
        assert get_task(name).hub_path == "super_glue"


def test_unknown_task_error_lists_valid_names():
    with pytest.raises(
        ValueError, match=r"^unknown task 'record'; expected one of: cola, sst2, "
    ):
        get_task("record")


def test_sst2_format():
    task = get_task("sst2")
    example = {"sentence": "a gripping film ", "label": 1}
    assert task.source_text(example) == "sst2 sentence: a gripping film"
    assert task.target_text(example) == "positive"
    assert task.target_text({"label": 0}) == "negative"
    assert task.metrics == ("accuracy",)
    assert task.metric == "accuracy"


def test_pair_task_formats():
    rte = get_task("rte")
    assert (
        rte.source_text(
            {"sentence1": "A cat sat.", "sentence2": "An animal sat.", "label": 1}
        )
        == "rte sentence1: A cat sat. sentence2: An animal sat."
    )
    assert rte.label_words == ("entailment", "not_entailment")
    mnli = get_task("mnli")
    assert (
        mnli.source_text({"premise": "P.", "hypothesis": "H."})
        == "mnli premise: P. hypothesis: H."
    )
    assert mnli.label_words == ("entailment", "neutral", "contradiction")
    assert get_task("qqp").source_text({"question1": "a?", "question2": "b?"}) == (
        "qqp question1: a? question2: b?"
    )
    assert get_task("cola").label_words == ("unacceptable", "acceptable")
    assert get_task("cb").label_words == ("entailment", "contradiction", "neutral")
    assert get_task("copa").label_words == ("choice1", "choice2")
    assert get_task("boolq").target_text({"label": 1}) == "true"


def test_hub_configs_and_splits():
    assert get_task("wsc").hub_config == "wsc.fixed"
    assert get_task("sst2").hub_config == "sst2"
    assert get_task("mnli").splits["validation"] == "validation_matched"
    assert get_task("mnli").splits["test"] == "test_matched"
    assert get_task("rte").splits == {
        "train": "train",
        "validation": "validation",
        "test": "test",
    }


def test_main_metric_choices():
    assert get_task("cola").metric == "matthews"
    assert get_task("stsb").metrics == ("pearson", "spearman")
    assert get_task("mrpc").metric == "f1"
    assert get_task("cb").metrics == ("macro_f1", "accuracy")
    for name in task_names():
        task = get_task(name)
        assert task.metric in task.metrics
        hash(task)  # frozen tasks stay usable as dict keys despite the splits dict


@pytest.mark.parametrize("name", [n for n in GLUE + SUPERGLUE if n != "stsb"])
def test_label_word_round_trip(name):
    task = get_task(name)
    assert task.is_classification
    for index, word in enumerate(task.label_words):
        assert task.target_text({"label": index}) == word
        assert task.parse_prediction(word) == index
        assert task.parse_prediction(f"  {word.upper()}.\n") == index


def test_parse_prediction_unknown_and_noisy():
    sst2 = get_task("sst2")
    assert sst2.parse_prediction("positive review") == 1
    assert sst2.parse_prediction("negative</s>") == -1
    assert sst2.parse_prediction("neutral") == -1
    assert sst2.parse_prediction("") == -1
    assert get_task("rte").parse_prediction("not_entailment") == 1


def test_target_text_rejects_unlabelled_example():
    with pytest.raises(
        ValueError, match=r"label -1 has no label word; expected 0\.\.1"
    ):
        get_task("sst2").target_text({"sentence": "x", "label": -1})


def test_source_text_missing_field_names_it():
    with pytest.raises(
        ValueError, match="needs column 'sentence2'; row has: label, sentence1"
    ):
        get_task("rte").source_text({"sentence1": "a", "label": 0})


@pytest.mark.parametrize(
    ("score", "text"),
    [
        (3.79, "3.8"),
        (3.7, "3.8"),
        (2.49, "2.4"),
        (1.11, "1.2"),
        (0.0, "0.0"),
        (5.0, "5.0"),
        (0.05, "0.0"),
        (4.95, "5.0"),
        (2.5, "2.6"),
    ],
)
def test_stsb_target_rounds_to_nearest_fifth(score, text):
    task = get_task("stsb")
    assert not task.is_classification
    assert task.target_text({"label": score}) == text


def test_stsb_targets_lie_on_grid():
    task = get_task("stsb")
    for step in range(501):
        score = step / 100
        text = task.target_text({"label": score})
        value = float(text)
        assert abs(value * 5 - round(value * 5)) < 1e-9
        assert abs(value - score) <= 0.1 + 1e-9
        assert len(text.split(".")[1]) == 1


def test_stsb_parse_prediction():
    task = get_task("stsb")
    assert task.parse_prediction("3.8") == pytest.approx(3.8)
    assert task.parse_prediction(" about 4 out of 5") == pytest.approx(4.0)
    assert task.parse_prediction(".5") == pytest.approx(0.5)
    assert task.parse_prediction("no idea") == 0.0
    assert isinstance(task.label({"label": "2"}), float)


# --- loading ------------------------------------------------------------------------


def test_load_sst2_fixture_tsv():
    rows = load_examples(
        get_task("sst2"), "train", path=str(FIXTURES / "sst2_tiny" / "train.tsv")
    )
    assert len(rows) == 64
    assert sum(row["label"] for row in rows) == 32
    assert all(isinstance(row["label"], int) for row in rows)
    assert all(row["sentence"] == row["sentence"].rstrip() for row in rows)
    # Quotes are literal characters in GLUE TSVs, not CSV quoting.
    assert 'a "feel-good" movie that earns the label' in [
        row["sentence"] for row in rows
    ]


def test_load_from_directory_by_split():
    rows = load_examples(
        get_task("sst2"), "validation", path=str(FIXTURES / "sst2_tiny")
    )
    assert len(rows) == 32
    assert sorted(row["label"] for row in rows) == [0] * 16 + [1] * 16


def test_tsv_unbalanced_quote_does_not_swallow_rows(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text(
        'sentence\tlabel\nhe said " wow \t1\nplain row \t0\n', encoding="utf-8"
    )
    rows = load_examples(get_task("sst2"), "train", path=str(path))
    assert rows == [
        {"sentence": 'he said " wow', "label": 1},
        {"sentence": "plain row", "label": 0},
    ]


def test_load_rte_jsonl():
    task = get_task("rte")
    rows = load_examples(task, "validation", path=str(FIXTURES / "rte_tiny.jsonl"))
    assert [row["idx"] for row in rows] == list(range(6))
    assert [row["label"] for row in rows] == [0, 1, 0, 1, 0, 1]
    assert task.source_text(rows[0]).startswith(
        "rte sentence1: The bakery on Elm Street"
    )
    assert task.target_text(rows[1]) == "not_entailment"


def test_csv_labels_coerced_for_regression_and_words(tmp_path):
    path = tmp_path / "stsb.csv"
    path.write_text(
        'sentence1,sentence2,label,idx\n"a, b",c,3.75,7\n', encoding="utf-8"
    )
    (row,) = load_examples(get_task("stsb"), "train", path=str(path))
    assert row == {"sentence1": "a, b", "sentence2": "c", "label": 3.75, "idx": 7}
    words = tmp_path / "words.jsonl"
    words.write_text('{"sentence": "ok", "label": "positive"}\n', encoding="utf-8")
    assert load_examples(get_task("sst2"), "train", path=str(words))[0]["label"] == 1


def test_limit_is_seeded_subset_in_file_order():
    task, path = get_task("sst2"), str(FIXTURES / "sst2_tiny" / "train.tsv")
    everything = load_examples(task, "train", path=path)
    first = load_examples(task, "train", path=path, limit=10, seed=3)
    assert first == load_examples(task, "train", path=path, limit=10, seed=3)
    assert first != load_examples(task, "train", path=path, limit=10, seed=4)
    positions = [everything.index(row) for row in first]
    assert len(first) == 10
    assert positions == sorted(positions)
    assert load_examples(task, "train", path=path, limit=5, seed=None) == everything[:5]
    assert len(load_examples(task, "train", path=path, limit=1000)) == 64


def test_missing_column_error_names_file_column_and_found(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("text\tlabel\nhello\t1\n", encoding="utf-8")
    with pytest.raises(
        ValueError,
        match=r"bad\.tsv:2: missing column 'sentence'.*found columns: text, label",
    ):
        load_examples(get_task("sst2"), "train", path=str(path))


def test_missing_file_and_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data file not found: .*nope\.tsv"):
        load_examples(get_task("sst2"), "train", path=str(tmp_path / "nope.tsv"))
    with pytest.raises(ValueError, match="unknown split 'dev' for task 'sst2'"):
        load_examples(get_task("sst2"), "dev", path=str(FIXTURES / "sst2_tiny"))
    txt = tmp_path / "data.txt"
    txt.write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match=r"unsupported data file extension '\.txt'"):
        load_examples(get_task("sst2"), "train", path=str(txt))
    bad_label = tmp_path / "bad_label.jsonl"
    bad_label.write_text('{"sentence": "x", "label": "maybe"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="label 'maybe' is not in the label set of task 'sst2'"):
        load_examples(get_task("sst2"), "train", path=str(bad_label))


def test_hub_loading_maps_split_without_network(monkeypatch):
    calls = []

    class FakeDataset(list):
        def select(self, indices):
            return FakeDataset(self[i] for i in indices)

    def load_dataset(path, config, split):
        calls.append((path, config, split))
        return FakeDataset(
            {"premise": f"p{i} ", "hypothesis": "h", "label": i % 3} for i in range(9)
        )

    monkeypatch.setitem(
        sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset)
    )
    rows = load_examples(get_task("mnli"), "validation", limit=4, seed=0)
    assert calls == [("glue", "mnli", "validation_matched")]
    assert len(rows) == 4
    assert all(not row["premise"].endswith(" ") for row in rows)


@pytest.mark.skipif(not SST2_TEST.is_file(), reason="shared SST-2 data not present")
def test_real_sst2_test_split():
    rows = load_examples(get_task("sst2"), "test", path=str(SST2_TEST))
    assert len(rows) == 872
    assert sum(row["label"] == 1 for row in rows) == 444
    assert all(set(row) == {"sentence", "label"} for row in rows)
