"""Experiment configuration: YAML file + `a.b=c` overrides -> validated, typed `ExperimentConfig`.

Every section is a dataclass whose fields carry a one-line docstring. `load_config` rejects unknown keys,
wrong types and out-of-range values with a one-line `ConfigError` naming the key, the value and what is
allowed. The `method` section is validated against the config class of the method it names, looked up in
the method registry, so a new method brings its own keys without touching this file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.data.builtin import get_task, task_from
from pipeline.data.encode import MAX_SEPARATOR_CHARS
from pipeline.data.tasks import Task
from pipeline.schema import (  # noqa: F401  (re-exported: methods and tests import them from here)
    ConfigError,
    apply_overrides,
    bounds,
    build_dataclass,
    max_chars,
    parse_override,
    plain_name,
    read_yaml,
)


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
    quantization: Literal["none", "nf4", "fp4", "int8"] = "none"
    """bitsandbytes quantisation of the frozen linear layers at load (EPT's 4-bit setting); embeddings stay whole."""
    quant_compute_dtype: Literal["float32", "bfloat16", "float16"] | None = None
    """Dtype 4-bit layers de-quantise to for their matmuls (None: backbone.dtype)."""
    init_tiny: Literal["llama", "t5"] | None = None
    """Demo/test only: if name_or_path does not exist, first write a tiny random model of this family there."""
    tiny_hidden: int = field(default=64, metadata=bounds(8))
    """Width of the init_tiny model (a multiple of 8: 4 heads of even size)."""
    tiny_layers: int = field(default=2, metadata=bounds(1))
    """Layers of the init_tiny model (T5: per stack)."""


@dataclass
class DataConfig:
    task: Task = field(default_factory=lambda: get_task("sst2"))
    """The task: a built-in name (sst2, rte, ... pipeline.data.builtin), a definition (name, kind, template,
    label_column / target_column, labels, ... pipeline.data.tasks.Task) or a YAML file holding one."""
    train_file: str | None = None
    """Local JSONL/CSV/TSV/Parquet training file (or a directory with train.*); None: the task's hub split."""
    validation_file: str | None = None
    """Local JSONL/CSV/TSV/Parquet validation file (or a directory with validation.* / dev.*); None: the hub."""
    max_train_samples: int | None = field(default=None, metadata=bounds(1))
    """Use at most this many training examples (deterministic shuffle by seed)."""
    max_eval_samples: int | None = field(default=None, metadata=bounds(1))
    """Evaluate on at most this many validation examples."""
    max_length: int = field(default=256, metadata=bounds(8))
    """Maximum input length in tokens before the prompt is added."""
    max_target_length: int = field(default=8, metadata=bounds(1))
    """Maximum target length in tokens, EOS included (label words, numbers, generation targets)."""
    decoder_separator: str = field(default=" Label :", metadata=max_chars(MAX_SEPARATOR_CHARS))
    """Decoder-only backbones: text put between the source and the label (the DePT/ADePT references' template);
    recorded with the prompt, so prediction encodes the same way."""
    chat_template: bool = False
    """Decoder-only: render each input as a user turn of the tokenizer's chat template, the target as the
    assistant's reply (right after the assistant header; no separator)."""


@dataclass
class TrainConfig:
    max_steps: int = field(default=1000, metadata=bounds(1))
    """Optimizer steps per trial (ASHA's max budget)."""
    eval_every: int = field(default=100, metadata=bounds(1))
    """Evaluate and report to Ray Tune every this many steps (one ASHA rung unit)."""
    batch_size: int = field(default=16, metadata=bounds(1))
    """Micro-batch size per worker."""
    grad_accum: int = field(default=1, metadata=bounds(1))
    """Gradient accumulation steps."""
    eval_batch_size: int = field(default=32, metadata=bounds(1))
    """Batch size per worker for evaluation."""
    warmup_steps: int = field(default=0, metadata=bounds(0))
    """Linear warm-up steps, then linear decay to zero at max_steps."""
    weight_decay: float = field(default=1e-5, metadata=bounds(0.0))
    """AdamW weight decay applied to prompt parameters."""
    grad_clip: float = field(default=1.0, metadata=bounds(0.0))
    """Global gradient-norm clip (0 disables)."""
    lr_units: Literal["embedding", "absolute"] = "embedding"
    """'embedding': method lrs marked [relative] are written for an embedding RMS of 10 (the papers' T5) and
    rescaled to the loaded backbone's RMS (pipeline.methods.units); 'absolute': every lr is used as written."""
    zero_stage: Literal[2, 3] = 2
    """DeepSpeed ZeRO stage: 3 shards the frozen backbone across the trial's workers."""
    zero3_persistence_threshold: int = field(default=100_000, metadata=bounds(0))
    """ZeRO-3: tensors with fewer elements stay whole on every rank (prompts, norms) instead of being re-gathered
    every forward; 0 partitions everything."""
    num_workers: int = field(default=1, metadata=bounds(1))
    """Ray Train workers (DeepSpeed ranks) per trial."""
    in_process: bool = True
    """One-worker trials train in Tune's reused trial process, backbone kept warm between trials; false: a Ray Train
    worker group per trial, as multi-worker trials always use."""
    use_gpu: bool = False
    """One GPU per worker; False runs DeepSpeed's CPU accelerator with gloo."""
    cpus_per_worker: float = field(default=1.0, metadata=bounds(0.0, lo_open=True))
    """CPUs reserved per worker."""
    progress_every: int = field(default=10, metadata=bounds(1))
    """Rank 0 prints a progress line (loss, steps/s, tokens/s, ETA) and logs train_loss every this many steps."""
    progress_seconds: float = field(default=60.0, metadata=bounds(0.0, lo_open=True))
    """... or after this many seconds without one, whichever comes first (slow steps on CPU)."""
    max_failures: int = field(default=1, metadata=bounds(0))
    """Restarts per trial (Tune's for in-process trials, Ray Train's for worker groups) before the trial fails;
    each resumes from the last prompt checkpoint."""


@dataclass
class SearchConfig:
    num_samples: int = field(default=8, metadata=bounds(1))
    """Trials sampled from the search space."""
    grace_period: int = field(default=1, metadata=bounds(1))
    """ASHA: reports (evals) every trial gets before it may be stopped."""
    reduction_factor: float = field(default=2.0, metadata=bounds(1.0, lo_open=True))
    """ASHA: keep the top 1/reduction_factor of trials at each rung."""
    scheduler: Literal["asha", "fifo"] = "asha"
    """'asha': stop weak trials at each rung; 'fifo': every trial runs its full budget (the grid ASHA is measured
    against)."""
    max_concurrent_trials: int | None = field(default=None, metadata=bounds(1))
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
    equal_budget: int | None = field(default=None, metadata=bounds(1))
    """Compare methods at the trainable-parameter budget of PT with this many tokens (None: method defaults)."""
    default_space: bool = True
    """Start from the method's default search space (False: search only the keys in `space`)."""
    space: dict[str, Any] = field(default_factory=dict)
    """Overrides of the method's default search space, e.g. {'method.lr': {'loguniform': [0.01, 1]}} (config units);
    {'grid': [...]} tries every value, num_samples times each."""


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
    model_name: str | None = field(default=None, metadata=plain_name("names a registered model"))
    """Registered model name (one plain name); None derives '<task>-<backbone basename>'."""


@dataclass
class ExperimentConfig:
    name: str = field(default="promptfarm", metadata=plain_name("names the search's folder under storage_path"))
    """Search name (one plain name): Ray Tune experiment dir and MLflow parent run name."""
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
        if isinstance(raw.get("data"), dict) and "task" in raw["data"]:
            raw["data"] = {**raw["data"], "task": task_from(raw["data"]["task"], "data.task")}
        method = dict(raw.pop("method", None) or {"name": "pt"})
        name = method.pop("name", "pt")
        cfg = build_dataclass(cls, raw, "")
        cfg.method = build_dataclass(_method_class(name, "method.name"), method, "method.")
        for other in cfg.search.methods:
            _method_class(other, "search.methods")
        _check_task(cfg)
        _check_quantization(cfg)
        return cfg


def _method_class(name: Any, key: str) -> type:
    """Config class of registered method `name`; an unknown name is a ConfigError naming `key`."""
    from pipeline import methods

    if name not in methods.names():
        raise ConfigError(f"{key}: unknown prompt method {name!r}; expected one of: {', '.join(methods.names())}")
    return methods.config_class(name)


def _check_quantization(cfg: ExperimentConfig) -> None:
    """A quantised backbone trains under ZeRO-2 only. Measured (transformers 5.23, bitsandbytes 0.50.2, DeepSpeed
    0.19.8): a ZeRO-3 load with a device_map is refused by transformers; without one zero.Init leaves the packed
    uint8 weights whole on every rank (nothing sharded), and the ZeRO-3 engine would then partition them apart from
    their quantisation state. ZeRO-2 keeps the frozen backbone whole per rank, which a 4-bit model affords."""
    q = cfg.backbone.quantization
    if q != "none" and cfg.train.zero_stage == 3:
        raise ConfigError(f"backbone.quantization={q!r} with train.zero_stage=3: ZeRO-3 partitions every weight and "
                          "bitsandbytes' packed quantised weights cannot be partitioned; expected train.zero_stage=2 "
                          "(the quantised backbone is already small) or backbone.quantization=none")


def _check_task(cfg: ExperimentConfig) -> None:
    """search.metric is one the task reports ("loss" or one of the task's metrics); a class-label prompt init
    (`init: labels`, in the method or a search.methods entry) has a classification task's labels to start from."""
    task = cfg.data.task
    inits = {"method.init": getattr(cfg.method, "init", None)}
    inits.update({f"search.methods.{m}.init": (v or {}).get("init") for m, v in cfg.search.methods.items()})
    for key, init in inits.items():
        if init == "labels" and not task.is_classification:
            raise ConfigError(f"{key}='labels' (class-label init) needs a classification task, but task "
                              f"{task.name!r} is {task.kind}; expected init='vocab' or 'random'")
    allowed = (*task.metrics, "loss")
    if cfg.search.metric is not None and cfg.search.metric not in allowed:
        raise ConfigError(f"search.metric={cfg.search.metric!r} is not reported for task {task.name!r}; "
                          f"expected one of: {', '.join(allowed)}")


def absolute_path(path: str | None) -> str | None:
    """`path` made absolute (~ expanded): trial processes run in other working directories, even on other nodes."""
    return str(Path(path).expanduser().resolve()) if path else path


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read YAML `path` (None: all defaults), apply `a.b=c` overrides, validate. An override of one field of a task
    named by a built-in name or a file (`data.task.template=...`) applies to that task's definition."""
    raw = read_yaml(path)
    for item in overrides or []:
        keys, _ = parse_override(item)
        data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
        if keys[:2] == ["data", "task"] and len(keys) > 2 and isinstance(data.get("task", "sst2"), str):
            raw["data"] = {**data, "task": task_from(data.get("task", "sst2"), "data.task").to_dict()}
        raw = apply_overrides(raw, [item])
    return ExperimentConfig.from_dict(raw)
