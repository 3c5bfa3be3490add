"""Experiment configuration: YAML file + `a.b=c` overrides -> validated, typed `ExperimentConfig`.

Every section is a dataclass whose fields carry a one-line docstring. `load_config` rejects unknown keys,
wrong types and out-of-range values with a one-line `ConfigError` naming the key, the value and what is
allowed. The `method` section is validated against the config class of the method it names, looked up in
the method registry, so a new method brings its own keys without touching this file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A configuration value is invalid; the message is one line naming key, value and what is allowed."""


def rng(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> dict:
    """Field metadata declaring an inclusive range [lo, hi] (lower bound exclusive with lo_open)."""
    return {"range": (lo, hi, lo_open)}


@dataclass
class BackboneConfig:
    name_or_path: str = "meta-llama/Llama-2-7b-hf"
    """Hugging Face hub id or local directory of the frozen model and its tokenizer (with `gguf`: its name)."""
    gguf: str | None = None
    """GGUF file to load instead: a path, or 'pkg:DIST[/FILE.gguf]' for one shipped in an installed package."""
    cache_dir: str | None = None
    """Where GGUF files are converted to safetensors once (None: $PROMPTFARM_CACHE or ~/.cache/promptfarm)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to pin; recorded with every prompt."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Dtype the frozen backbone is loaded in (bfloat16 on GPUs; float32 on CPU)."""
    trust_remote_code: bool = False
    """Allow model code from the hub; off unless the user opts in."""
    init_tiny: Literal["llama", "t5"] | None = None
    """Demo/test only: if name_or_path does not exist, first write a tiny random model of this family there."""
    tiny_hidden: int = field(default=64, metadata=rng(8))
    """Width of the init_tiny model (a multiple of 8: 4 heads of even size)."""
    tiny_layers: int = field(default=2, metadata=rng(1))
    """Layers of the init_tiny model (T5: per stack)."""


@dataclass
class DataConfig:
    task: str = "sst2"
    """Task name from pipeline.data.tasks (GLUE/SuperGLUE text-to-text formats)."""
    train_file: str | None = None
    """Local JSONL/CSV/TSV training file; None loads the task's split from the hub."""
    validation_file: str | None = None
    """Local JSONL/CSV/TSV validation file; None loads the task's split from the hub."""
    max_train_samples: int | None = field(default=None, metadata=rng(1))
    """Use at most this many training examples (deterministic shuffle by seed)."""
    max_eval_samples: int | None = field(default=None, metadata=rng(1))
    """Evaluate on at most this many validation examples."""
    max_length: int = field(default=256, metadata=rng(8))
    """Maximum input length in tokens before the prompt is added."""
    max_target_length: int = field(default=8, metadata=rng(1))
    """Maximum label length in tokens (label words, generated numbers)."""


@dataclass
class TrainConfig:
    max_steps: int = field(default=1000, metadata=rng(1))
    """Optimizer steps per trial (ASHA's max budget)."""
    eval_every: int = field(default=100, metadata=rng(1))
    """Evaluate and report to Ray Tune every this many steps (one ASHA rung unit)."""
    batch_size: int = field(default=16, metadata=rng(1))
    """Micro-batch size per worker."""
    grad_accum: int = field(default=1, metadata=rng(1))
    """Gradient accumulation steps."""
    eval_batch_size: int = field(default=32, metadata=rng(1))
    """Batch size per worker for evaluation."""
    warmup_steps: int = field(default=0, metadata=rng(0))
    """Linear warm-up steps, then linear decay to zero at max_steps."""
    weight_decay: float = field(default=1e-5, metadata=rng(0.0))
    """AdamW weight decay applied to prompt parameters."""
    grad_clip: float = field(default=1.0, metadata=rng(0.0))
    """Global gradient-norm clip (0 disables)."""
    zero_stage: Literal[2, 3] = 2
    """DeepSpeed ZeRO stage: 3 shards the frozen backbone across the trial's workers."""
    num_workers: int = field(default=1, metadata=rng(1))
    """Ray Train workers (DeepSpeed ranks) per trial."""
    use_gpu: bool = False
    """One GPU per worker; False runs DeepSpeed's CPU accelerator with gloo."""
    cpus_per_worker: float = field(default=1.0, metadata=rng(0.0, lo_open=True))
    """CPUs reserved per worker."""
    progress_every: int = field(default=10, metadata=rng(1))
    """Rank 0 prints a progress line (loss, steps/s, tokens/s, ETA) and logs train_loss every this many steps."""
    progress_seconds: float = field(default=60.0, metadata=rng(0.0, lo_open=True))
    """... or after this many seconds without one, whichever comes first (slow steps on CPU)."""
    max_failures: int = field(default=1, metadata=rng(0))
    """Worker-group restarts per trial before the trial fails (resumes from the last prompt checkpoint)."""


@dataclass
class SearchConfig:
    num_samples: int = field(default=8, metadata=rng(1))
    """Trials sampled from the search space."""
    grace_period: int = field(default=1, metadata=rng(1))
    """ASHA: reports (evals) every trial gets before it may be stopped."""
    reduction_factor: float = field(default=2.0, metadata=rng(1.0, lo_open=True))
    """ASHA: keep the top 1/reduction_factor of trials at each rung."""
    max_concurrent_trials: int | None = field(default=None, metadata=rng(1))
    """Concurrent trials; None derives it from cluster resources per trial."""
    seed: int = 0
    """Seed of the search's sampling of hyperparameters."""
    algorithm: Literal["random", "optuna"] = "random"
    """'random': seeded sampling of the space; 'optuna': Optuna TPE (pip install 'promptfarm[optuna]')."""
    metric: str | None = None
    """Validation metric ASHA and the registry optimise ('loss' is minimised); None: the task's main metric."""
    methods: dict[str, dict] = field(default_factory=dict)
    """Search several methods in one Tuner: name -> fixed config values ({pt: {}, dept: {max_length: 64}});
    empty: only the `method` section."""
    method_grid: bool = False
    """With `methods`: every method gets num_samples trials (method.name is a grid), none left to chance."""
    equal_budget: int | None = field(default=None, metadata=rng(1))
    """Compare methods at the trainable-parameter budget of PT with this many tokens (None: method defaults)."""
    default_space: bool = True
    """Start from the method's default search space (False: search only the keys in `space`)."""
    space: dict[str, Any] = field(default_factory=dict)
    """Overrides of the method's default search space, e.g. {'method.lr': {'loguniform': [0.01, 1]}} (absolute)."""
    lr_scale: float | None = field(default=None, metadata=rng(0.0, lo_open=True))
    """Factor on the default spaces' prompt learning rates (written for T5); None: the backbone's embedding RMS."""


@dataclass
class TrackingConfig:
    tracking_uri: str | None = None
    """MLflow tracking URI; None uses $MLFLOW_TRACKING_URI or sqlite:///./mlruns.db."""
    artifact_location: str | None = None
    """Artifact root for a new experiment (file store default ./mlartifacts with sqlite)."""
    experiment: str = "promptfarm"
    """MLflow experiment name."""
    register: bool = True
    """Register the best prompt in the Model Registry with alias 'champion'."""
    model_name: str | None = None
    """Registered model name; None derives '<task>-<backbone basename>'."""


@dataclass
class ExperimentConfig:
    name: str = "promptfarm"
    """Search name: Ray Tune experiment dir and MLflow parent run name."""
    seed: int = 0
    """Seed for prompt init and data order."""
    storage_path: str = "./ray_results"
    """Ray Tune/Train storage (shared storage on multi-node clusters)."""
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    """Frozen backbone."""
    data: DataConfig = field(default_factory=DataConfig)
    """Task and data files."""
    method: Any = None
    """Prompt method config (a registered method's dataclass, chosen by `method.name`)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Per-trial training loop."""
    search: SearchConfig = field(default_factory=SearchConfig)
    """ASHA search."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """MLflow tracking and registry."""

    @property
    def method_name(self) -> str:
        """Registered name of the configured prompt method."""
        from pipeline.methods import name_of

        return name_of(self.method)

    def to_dict(self) -> dict:
        """Plain nested dict (YAML/JSON-safe) that `from_dict` turns back into an equal config."""
        out = dataclasses.asdict(self)
        out["method"] = {"name": self.method_name, **dataclasses.asdict(self.method)}
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> ExperimentConfig:
        """Validate a nested dict (see module docstring)."""
        raw = dict(raw or {})
        method = dict(raw.pop("method", None) or {"name": "pt"})
        name = method.pop("name", "pt")
        cfg = build_dataclass(cls, raw, "")
        cfg.method = build_dataclass(_method_class(name, "method.name"), method, "method.")
        for other in cfg.search.methods:
            _method_class(other, "search.methods")
        _check_task(cfg)
        return cfg


def _method_class(name: Any, key: str) -> type:
    """Config class of registered method `name`; an unknown name is a ConfigError naming `key`."""
    from pipeline import methods

    if name not in methods.names():
        raise ConfigError(f"{key}: unknown prompt method {name!r}; expected one of: {', '.join(methods.names())}")
    return methods.config_class(name)


def _check_task(cfg: ExperimentConfig) -> None:
    """data.task is a known task and search.metric one it reports ('loss' or one of the task's metrics)."""
    from pipeline.data.tasks import get_task, task_names

    if cfg.data.task not in task_names():
        raise ConfigError(f"data.task={cfg.data.task!r} is not a known task; expected one of: "
                          f"{', '.join(task_names())}")
    allowed = (*get_task(cfg.data.task).metrics, "loss")
    if cfg.search.metric is not None and cfg.search.metric not in allowed:
        raise ConfigError(f"search.metric={cfg.search.metric!r} is not reported for task {cfg.data.task!r}; "
                          f"expected one of: {', '.join(allowed)}")


def build_dataclass(cls: type, raw: Any, prefix: str) -> Any:
    """Instantiate dataclass `cls` from `raw`, checking keys, types and ranges recursively."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key '{prefix}{unknown[0]}'; allowed keys: {', '.join(fields)}")
    kwargs = {}
    for key, value in raw.items():
        kwargs[key] = _check(hints[key], value, prefix + key, fields[key].metadata)
    return cls(**kwargs)


def _check(tp: Any, value: Any, key: str, meta: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check(inner[0], value, key, meta) if len(inner) == 1 else value
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}={value!r} is not allowed; expected one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, key + ".")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={value!r} has the wrong type; expected a mapping")
        return dict(value)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}={value!r} has the wrong type; expected a list")
        return origin(_check(args[0], v, key, {}) for v in value)
    ok = isinstance(value, tp) and not (tp in (int, float) and isinstance(value, bool))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(f"{key}={value!r} has the wrong type; expected {tp.__name__}")
    if "range" in meta:
        lo, hi, lo_open = meta["range"]
        if (lo is not None and (value <= lo if lo_open else value < lo)) or (hi is not None and value > hi):
            lo_s = "-inf" if lo is None else lo
            hi_s = "inf" if hi is None else hi
            raise ConfigError(f"{key}={value!r} is out of range; expected {'(' if lo_open else '['}{lo_s}, {hi_s}]")
    return value


def absolute_path(path: str | None) -> str | None:
    """`path` made absolute (~ expanded): trial processes run in other working directories, even on other nodes."""
    return str(Path(path).expanduser().resolve()) if path else path


def parse_override(item: str) -> tuple[list[str], Any]:
    """'train.lr=0.3' -> (['train', 'lr'], 0.3); the value is parsed as YAML (numbers, bools, null, lists)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key.path=value")
    key, _, text = item.partition("=")
    try:
        return key.strip().split("."), yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: the value is not valid YAML ({_yaml_problem(e)})") from None


def _yaml_problem(e: yaml.YAMLError) -> str:
    """One line from a YAML error: what is wrong and where (1-based line and column)."""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def apply_overrides(raw: dict, overrides: list[str] | dict[str, Any]) -> dict:
    """Return a copy of nested dict `raw` with dotted-key overrides applied (strings or a mapping)."""
    import copy

    out = copy.deepcopy(raw)
    items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides)
    for path, value in items:
        path = path.split(".") if isinstance(path, str) else path
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {'.'.join(path)}: '{part}' is not a section")
        node[path[-1]] = value
    return out


def read_yaml(path: str | Path | None, overrides: list[str] | None = None, kind: str = "experiment") -> dict:
    """The mapping in YAML file `path` (None: empty) with `a.b=c` overrides applied; `kind` names the file in errors."""
    raw: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} not found; expected a YAML {kind} file")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {str(p)!r} is not valid YAML: {_yaml_problem(e)}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {str(p)!r} must hold a mapping at the top level")
    return apply_overrides(raw, overrides or [])


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read YAML `path` (None: all defaults), apply `a.b=c` overrides, validate."""
    return ExperimentConfig.from_dict(read_yaml(path, overrides))
