"""A task is data: how a row of the user's table becomes a model input, what the model should produce, and how
that is scored. One record (`Task`) serves the built-in GLUE/SuperGLUE tasks (pipeline.data.builtin) and every
task a user defines in the experiment YAML (`data.task: {...}`) or in a file it names (`data.task: my-task.yaml`).

Three kinds:
- classification: the label column's values map to label words (a mapping, a list indexed by value, or taken from
  the training data with a readable default, `card_arrival` -> "card arrival"); predictions are rank
  classification over all label words (pipeline.evaluation.label_scores), compared by summed or mean token
  log-probability (`scoring`).
- generation: the target column is the text to write; rows sharing one rendered input are its alternative
  references (BLEU over all of them); decoded greedily up to `max_new_tokens`, stopping at EOS and/or a newline.
- regression: a number written as text (STS-B), generated and read back.

The template is `str.format` over the row's columns with plain names only (`"Query: {text}"`): each value is
stripped of surrounding whitespace, so "sst2 sentence: {sentence}" renders the GLUE rows exactly as before.
Prior art: NeMo's prompt-learning `task_templates` (a template with named fields and an answer field).
"""

from __future__ import annotations

import dataclasses
import math
import re
import string
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.schema import ConfigError, bounds, check_plain_name

_FLOAT_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")
# Punctuation a decoder tends to tack onto a label word ("positive." / "true,").
_TRAILING_PUNCT = ".,;:!?\"'"
KIND_METRICS = {
    "classification": ("accuracy", "macro_f1"),
    "generation": ("bleu", "rouge_l", "exact_match", "token_f1"),
    "regression": ("pearson", "spearman"),
}
"""Metrics a task of each kind reports when its definition names none (the first is the main metric)."""
METRIC_NAMES = {
    "classification": ("accuracy", "f1", "macro_f1", "matthews"),
    "generation": ("bleu", "rouge_l", "exact_match", "token_f1"),
    "regression": ("pearson", "spearman"),
}
"""Every metric a task of each kind may name (pipeline.data.metrics and text_metrics compute exactly these)."""
STOPS = ("eos", "newline")


@dataclass(frozen=True)
class Task:
    """One task: rendering, targets, decoding and metrics (validated at load; recorded with every prompt)."""

    name: str
    """Plain name (letters, digits, '-', '_', '.'): part of the registered model name '<task>-<backbone>'."""
    kind: Literal["classification", "generation", "regression"] = "classification"
    """classification: label words ranked; generation: free text scored against references; regression: a number."""
    template: str = "{text}"
    """Model input as str.format over the row's columns, e.g. 'Query: {text}' or '{mr}' (values are stripped)."""
    label_column: str = "label"
    """classification/regression: the column holding the label."""
    target_column: str = "target"
    """generation: the column holding the text to generate."""
    labels: Any = field(default=None, hash=False)
    """classification: label value -> label word (mapping), words indexed by value 0..k-1 (list), or None: the
    training data's distinct values, '_' read as a space."""
    scoring: Literal["sum", "mean"] = "sum"
    """classification: compare label words by summed or by per-token mean log-probability (EOS included)."""
    metrics: tuple[str, ...] = ()
    """Metrics reported on evaluation (empty: the kind's defaults, pipeline.data.tasks.KIND_METRICS)."""
    metric: str | None = None
    """Main metric for ASHA and the registry (maximised; None: the first of `metrics`)."""
    max_new_tokens: int = field(default=64, metadata=bounds(1))
    """generation: most tokens decoded per input (greedy)."""
    stop: tuple[str, ...] = STOPS
    """generation: where decoding ends besides max_new_tokens: 'eos' (the end-of-sequence token), 'newline'."""
    columns: dict[str, str] = field(default_factory=dict, hash=False)
    """Rename columns as rows are read, source name -> name the template and label use (hub or file columns)."""
    hub_path: str | None = None
    """Hugging Face hub dataset path, used when data.train_file / data.validation_file are not set."""
    hub_config: str | None = None
    """Hub dataset config name."""
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "validation": "validation",
                                                            "test": "test"}, hash=False)
    """Our split name ('train', 'validation', ...) -> hub split name (and file stem tried in a data directory)."""

    def __post_init__(self) -> None:
        fix = object.__setattr__  # frozen: normalise once here
        check_plain_name(self.name, "data.task.name", "names the registered model")
        fields = template_fields(self.template, self.name)
        fix(self, "metrics", tuple(self.metrics) or KIND_METRICS[self.kind])
        fix(self, "metric", self.metric or self.metrics[0])
        fix(self, "stop", tuple(self.stop))
        allowed = METRIC_NAMES[self.kind]
        for m in (*self.metrics, self.metric):
            if m not in allowed:
                raise ConfigError(f"task {self.name!r}: metric {m!r} is not computed for a {self.kind} task; "
                                  f"expected one of: {', '.join(allowed)}")
        if self.metric not in self.metrics:
            raise ConfigError(f"task {self.name!r}: main metric {self.metric!r} is not one of {list(self.metrics)}")
        for s in self.stop:
            if s not in STOPS:
                raise ConfigError(f"task {self.name!r}: stop {s!r} is not allowed; expected some of {list(STOPS)}")
        if self.kind == "classification":
            fix(self, "labels", _label_map(self.labels, self.name))
        elif self.labels is not None:
            raise ConfigError(f"task {self.name!r}: labels are for a classification task, not {self.kind}")
        if self.answer_column in fields:
            raise ConfigError(f"task {self.name!r}: the template uses {{{self.answer_column}}}, the column the model "
                              "must predict; expected input columns only")

    # -- what the rest of the pipeline reads ------------------------------------------------------------------------
    @property
    def is_classification(self) -> bool:
        """True for label-word tasks."""
        return self.kind == "classification"

    @property
    def answer_column(self) -> str:
        """The column holding what the model should produce (label or target)."""
        return self.target_column if self.kind == "generation" else self.label_column

    @property
    def text_fields(self) -> tuple[str, ...]:
        """The columns the template reads, in order."""
        return template_fields(self.template, self.name)

    @property
    def label_values(self) -> tuple[str, ...]:
        """Label values as they appear in the data (strings), index = class; empty until resolved from the data."""
        return tuple(self.labels or {})

    @property
    def label_words(self) -> tuple[str, ...] | None:
        """Label word of each class (index = class); None for other kinds."""
        return tuple(self.labels.values()) if self.is_classification and self.labels else None

    @property
    def needs_labels(self) -> bool:
        """A classification task whose label set is still to be read from the training data."""
        return self.is_classification and not self.labels

    def with_labels(self, values: list[str] | dict[str, str]) -> Task:
        """This task with its label set taken from the data: each value's readable word (`card_arrival` ->
        'card arrival'), in sorted value order; a mapping (a hub ClassLabel's names) in its own order."""
        pairs = values.items() if isinstance(values, dict) else ((v, v) for v in sorted(values))
        return dataclasses.replace(self, labels={str(v): readable(w) for v, w in pairs})

    def to_dict(self) -> dict:
        """JSON-safe definition, as recorded in prompt_config.json (Task(**d) rebuilds an equal task)."""
        out = dataclasses.asdict(self)
        out["metrics"], out["stop"] = list(self.metrics), list(self.stop)
        return out

    def digest(self) -> str:
        """Hex SHA-256 of the definition (canonical JSON): equal for equal definitions, whatever their spelling."""
        import hashlib
        import json

        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def source_text(self, example: dict) -> str:
        """The rendered model input, e.g. 'Query: my card has not arrived'."""
        missing = [f for f in self.text_fields if f not in example]
        if missing:
            raise ValueError(f"task {self.name!r} needs column {missing[0]!r}; row has: "
                             f"{', '.join(sorted(map(str, example))) or 'no columns'}")
        return self.template.format_map({f: str(example[f]).strip() for f in self.text_fields})

    def label(self, example: dict) -> int | float:
        """The gold label: an int class index, or a float score for regression."""
        if self.label_column not in example:
            raise ValueError(f"task {self.name!r}: row has no {self.label_column!r} column")
        value = example[self.label_column]
        return int(value) if self.is_classification else float(value)

    def target_text(self, example: dict) -> str:
        """The text the model should produce: a label word, a formatted score, or the (first) reference."""
        if self.kind == "generation":
            return self.references(example)[0]
        value = self.label(example)
        if self.kind == "regression":
            return format_score(float(value))
        words = self.label_words or ()
        if not 0 <= value < len(words):
            raise ValueError(f"task {self.name!r}: label {value} has no label word; expected 0..{len(words) - 1}")
        return words[int(value)]

    def references(self, example: dict) -> list[str]:
        """generation: every reference of the example's input (grouped rows carry them all)."""
        if "_references" in example:
            return list(example["_references"])
        return [str(example[self.target_column]).strip()]

    def parse_prediction(self, text: str) -> int | float:
        """Map generated text to a label index (-1 if unknown) or a float score."""
        if self.kind == "regression":
            return parse_score(text)
        words = [w.lower() for w in self.label_words or ()]
        cleaned = text.strip().lower()
        for candidate in (cleaned, cleaned.split()[0].strip(_TRAILING_PUNCT) if cleaned else ""):
            if candidate in words:
                return words.index(candidate)
        return -1


def template_fields(template: Any, task: str = "?") -> tuple[str, ...]:
    """The column names `template` reads, in order of first use; a template with none, or with anything but plain
    `{name}` fields (attributes, indices, conversions, format specs, positional `{}`), is a ConfigError."""
    if not isinstance(template, str):
        raise ConfigError(f"task {task!r}: template must be a string, got {type(template).__name__}")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:  # an unmatched '{' or '}'
        raise ConfigError(f"task {task!r}: template {template!r} is not a format string ({e}); write a literal "
                          "brace as '{{' or '}}'") from None
    names: list[str] = []
    for _, name, spec, conv in parts:
        if name is None:
            continue
        if not name.isidentifier() or spec or conv:
            raise ConfigError(f"task {task!r}: template field {{{name}{'!' + conv if conv else ''}"
                              f"{':' + spec if spec else ''}}} is not allowed; expected plain column names like "
                              "{text}")
        names.append(name)
    if not names:
        raise ConfigError(f"task {task!r}: template {template!r} reads no column; expected at least one {{column}}")
    return tuple(dict.fromkeys(names))


def _label_map(labels: Any, task: str) -> dict[str, str] | None:
    """Value (as text) -> word from a mapping, a list (index = value) or None (from the data)."""
    if labels is None:
        return None
    if isinstance(labels, list | tuple):
        labels = {str(i): w for i, w in enumerate(labels)}
    if not isinstance(labels, dict) or not labels:
        raise ConfigError(f"task {task!r}: labels={labels!r:.80} must be a non-empty mapping (value: word) or list "
                          "(words indexed by value), or null to read them from the training data")
    out: dict[str, str] = {}
    for value, word in labels.items():
        if not isinstance(word, str) or not word.strip():
            raise ConfigError(f"task {task!r}: label {value!r} has word {word!r}; expected non-empty text")
        out[str(value).strip()] = word.strip()
    words = [w.lower() for w in out.values()]
    dup = next((w for w in words if words.count(w) > 1), None)
    if dup is not None:
        raise ConfigError(f"task {task!r}: label word {dup!r} is given to two labels; expected distinct words")
    return out


def readable(value: str) -> str:
    """The default label word of a data value: '_' as spaces, e.g. 'card_arrival' -> 'card arrival'."""
    return " ".join(str(value).replace("_", " ").split())


def format_score(score: float) -> str:
    """Round a regression score to the nearest 0.2 and format it with one decimal."""
    # Round half up (floor(x + 0.5)) rather than Python's half-to-even so that exact
    # ties such as 2.1 -> "2.2" do not depend on the parity of the grid step.
    rounded = math.floor(score * 5 + 0.5) / 5
    return f"{rounded + 0.0:.1f}"  # + 0.0 turns -0.0 into 0.0


def parse_score(text: str) -> float:
    """Read the first number in generated text; 0.0 if there is none."""
    match = _FLOAT_RE.search(text)
    # Unparseable output scores 0.0 (the bottom of the STS-B scale) rather than NaN or an exception: metrics stay
    # finite over a whole eval set and garbled generations are penalised instead of silently dropped.
    return float(match.group()) if match else 0.0
