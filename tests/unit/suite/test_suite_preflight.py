"""A suite checks every task before MLflow or Ray: a missing report file (found after that task's whole search
before) or a bad data file is one line naming the task (the `home` fixture makes Ray unimportable)."""

from __future__ import annotations

import pytest
import yaml

from tests.unit.test_preflight import fails, home  # noqa: F401  (home: the CLI fixture)


@pytest.fixture
def suite(home, tiny_dirs):  # noqa: F811
    raw = yaml.safe_load((home / "exp.yaml").read_text())
    raw["backbone"]["name_or_path"] = str(tiny_dirs["llama"])
    (home / "exp.yaml").write_text(yaml.safe_dump(raw))

    def write(second: dict) -> str:
        tasks = [{"name": "first", "data": {"task": "sst2", "train_file": "data/train.tsv",
                                            "validation_file": "data/validation.tsv"},
                  "report_file": "data/validation.tsv"},
                 {"name": "second", "data": {"task": "sst2", "train_file": "data/train.tsv",
                                             "validation_file": "data/validation.tsv"}, **second}]
        (home / "suite.yaml").write_text(yaml.safe_dump({"name": "s", "experiment": "exp.yaml", "tasks": tasks}))
        return "suite.yaml"

    return write


def test_a_missing_report_file_of_a_later_task_fails_before_anything_runs(suite):
    fails(["suite", suite({"report_file": "data/nope.tsv"})], "suite task 'second': report_file='data/nope.tsv': "
          "data file", "not found")


def test_a_bad_data_file_of_a_later_task_names_the_task(suite, home):  # noqa: F811
    (home / "data" / "broken.tsv").write_text("sentence\tlabel\nfine\t7\n")
    fails(["suite", suite({"data": {"task": "sst2", "train_file": "data/broken.tsv",
                                    "validation_file": "data/validation.tsv"}})],
          "suite task 'second': data.train_file: ", "broken.tsv:2: label")
