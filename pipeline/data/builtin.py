"""The built-in GLUE and SuperGLUE tasks: entries of the same `Task` schema a user writes (DePT / T5 text-to-text
format), so `data.task: sst2` is the table row below and nothing else.

An input reads "<task> <field>: <value> <field>: <value>", e.g. "rte sentence1: A cat sat. sentence2: An animal
sat.", and the target is a label word ("entailment") or, for STS-B, a score rounded to 0.2 ("3.8").

SuperGLUE ReCoRD is deliberately out of scope: it is span extraction over a list of candidate entities, not
classification into a fixed label set. SuperGLUE RTE is the same data as GLUE RTE, so only the GLUE one exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.data.tasks import Task
from pipeline.schema import ConfigError, build_dataclass, read_yaml


def _task(name: str, hub_path: str, fields: tuple[str, ...], labels: tuple[str, ...] | None, *,
          metrics: tuple[str, ...] = ("accuracy",), hub_config: str | None = None,
          splits: dict[str, str] | None = None) -> Task:
    """A GLUE-style task: template '<name> <field>: {field} ...', labels indexed 0..k-1, main metric first."""
    template = " ".join([name, *(f"{f}: {{{f}}}" for f in fields)])
    return Task(name=name, kind="classification" if labels else "regression", template=template,
                labels=list(labels) if labels else None, metrics=metrics, hub_path=hub_path,
                hub_config=hub_config or name,
                splits=dict(splits or {"train": "train", "validation": "validation", "test": "test"}))


_PAIR = ("sentence1", "sentence2")
_NLI = ("premise", "hypothesis")
_ENTAIL2 = ("entailment", "not_entailment")
_BOOL = ("false", "true")
_F1_ACC = ("f1", "accuracy")
_MNLI_SPLITS = {"train": "train", "validation": "validation_matched",
                "validation_mismatched": "validation_mismatched", "test": "test_matched"}

# Main metric choice: GLUE reports F1 and accuracy for MRPC/QQP and Pearson and Spearman for STS-B; we select on F1
# and Pearson (the first number GLUE lists). SuperGLUE reports macro-F1 and accuracy for CB; we select on macro-F1
# because CB's validation set is heavily imbalanced. MultiRC's F1a is binary F1 over all answer options; its
# exact-match score needs question grouping and is not computed.
_TASKS: dict[str, Task] = {t.name: t for t in (
    _task("cola", "glue", ("sentence",), ("unacceptable", "acceptable"), metrics=("matthews",)),
    _task("sst2", "glue", ("sentence",), ("negative", "positive")),
    _task("mrpc", "glue", _PAIR, ("not_equivalent", "equivalent"), metrics=_F1_ACC),
    _task("qqp", "glue", ("question1", "question2"), ("not_duplicate", "duplicate"), metrics=_F1_ACC),
    _task("stsb", "glue", _PAIR, None, metrics=("pearson", "spearman")),
    _task("mnli", "glue", _NLI, ("entailment", "neutral", "contradiction"), splits=_MNLI_SPLITS),
    _task("qnli", "glue", ("question", "sentence"), _ENTAIL2),
    _task("rte", "glue", _PAIR, _ENTAIL2),
    # WNLI's label order is the reverse of RTE's: 1 means entailment.
    _task("wnli", "glue", _PAIR, ("not_entailment", "entailment")),
    _task("boolq", "super_glue", ("question", "passage"), _BOOL),
    _task("cb", "super_glue", _NLI, ("entailment", "contradiction", "neutral"), metrics=("macro_f1", "accuracy")),
    # "question" is "cause" or "effect": which relation the right choice has.
    _task("copa", "super_glue", ("premise", "question", "choice1", "choice2"), ("choice1", "choice2")),
    _task("wic", "super_glue", ("word", "sentence1", "sentence2"), _BOOL),
    # "wsc.fixed" repairs span indices that are off in the original "wsc" config.
    _task("wsc", "super_glue", ("text", "span1_text", "span2_text"), _BOOL, hub_config="wsc.fixed"),
    _task("multirc", "super_glue", ("question", "answer", "paragraph"), _BOOL, metrics=_F1_ACC),
)}


def task_names() -> list[str]:
    """All built-in task names, in table order (GLUE first)."""
    return list(_TASKS)


def get_task(name: str) -> Task:
    """A built-in task by name; an unknown name raises a ValueError listing the valid ones."""
    try:
        return _TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; expected one of: {', '.join(_TASKS)}, a task definition "
                         "(a mapping with name, kind, template, ...) or a YAML file holding one") from None


def task_from(value: Any, key: str = "data.task") -> Task:
    """The task `value` names or defines: a built-in name, a YAML file (*.yaml / *.yml) holding a definition, a
    mapping (a definition, validated key by key), or a Task already built."""
    if isinstance(value, Task):
        return value
    if isinstance(value, str) and value.endswith((".yaml", ".yml")):
        raw = read_yaml(Path(value).expanduser(), kind="task definition")
        return task_from(raw.get("task", raw) if isinstance(raw.get("task"), dict) else raw, key)
    if isinstance(value, str):
        if value not in _TASKS:
            raise ConfigError(f"{key}={value!r} is not a known task; expected one of: {', '.join(_TASKS)}, a task "
                              "definition (a mapping: name, kind, template, ...) or a YAML file holding one")
        return _TASKS[value]
    if isinstance(value, dict):
        if "name" not in value:
            raise ConfigError(f"{key}: a task definition needs a 'name' (letters, digits, '-', '_', '.')")
        return build_dataclass(Task, value, key + ".")
    raise ConfigError(f"{key}={value!r:.80} has the wrong type; expected a built-in task name, a YAML file or a "
                      "task definition mapping")
