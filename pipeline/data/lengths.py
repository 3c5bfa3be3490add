"""Length checks of a task's data against its encoding, for pre-flight: how many inputs `max_length` cuts (a
warning: the model still sees their start), and whether any target or label word would lose tokens to
`max_target_length` (an error: the model would learn, and be scored on, a cut answer)."""

from __future__ import annotations

from pathlib import Path

from pipeline.data.encode import Encoder
from pipeline.data.sources import file_examples, split_file
from pipeline.data.tasks import Task


def check_label_words(task: Task, encoder: Encoder) -> None:
    """Every label word fits max_target_length with its EOS; else a ValueError naming the longest one."""
    for word in task.label_words or ():
        need = len(encoder.target_tokens(word)) + 1
        if need > encoder.max_target_length:
            raise ValueError(f"label word {word!r} of task {task.name!r} is {need} tokens with its EOS; expected at "
                             f"most data.max_target_length={encoder.max_target_length} (raise it)")


def count_truncated(task: Task, encoder: Encoder, path: str, split: str) -> tuple[int, int]:
    """(inputs longer than max_length, rows) of a local file; a generation target longer than max_target_length
    is a ValueError naming its file and row."""
    file: Path = split_file(Path(path), task, split)
    cut = rows = 0
    for where, ex in file_examples(file, task):
        rows += 1
        cut += encoder.source_truncated(task.source_text(ex))
        if task.kind == "generation":
            need = len(encoder.target_tokens(task.target_text(ex))) + 1
            if need > encoder.max_target_length:
                raise ValueError(f"{where}: the target is {need} tokens with its EOS; expected at most "
                                 f"data.max_target_length={encoder.max_target_length} (raise it)")
    return cut, rows
