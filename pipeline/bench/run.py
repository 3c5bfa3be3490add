"""Run the benchmark: every row on one backbone and batch, then bench.md + bench.json and an optional MLflow run.

Rows, in order: the frozen backbone alone at the input length (the limit every method sits on) and at input +
each method's virtual tokens (so a method's own overhead is its step minus the backbone's at the same total
length), every benchmarked method through the registry, and HF PEFT's PromptTuning at the reference method's
prompt length.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import platform
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline import methods
from pipeline.bench.config import BenchConfig, load_bench_config, method_config, method_configs
from pipeline.bench.measure import MemoryProbe, MiB, Subject, measure_rows
from pipeline.bench.report import BenchResult, Kind, Row, add_ratios, quant_targets, targets
from pipeline.bench.rows import Tokens, backbone_subject, method_subject, peft_subject
from pipeline.config import ConfigError
from pipeline.methods.base import BackboneInfo
from pipeline.model.backbone import load_backbone

MARKDOWN, JSON = "bench.md", "bench.json"


@dataclass
class RowSpec:
    """A row before it is built: what it is and how to build it."""

    name: str
    """Row name in the table."""
    kind: Kind
    """'backbone', 'method' or 'peft'."""
    input_len: int
    """Real tokens per sequence."""
    virtual_tokens: int
    """Tokens its prompt adds."""
    make: Callable[[], Subject]
    """Builds the row's Subject (called inside its memory window)."""
    quant: str = "none"
    """Quantisation of the backbone the row runs over."""


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when torch sees a GPU, else cpu; 'cuda' without one is a one-line error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but torch sees no CUDA device; expected device=cpu or device=auto")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def virtual_tokens(cfg: BenchConfig) -> tuple[dict[str, int], int]:
    """Tokens each benchmarked method adds to a sequence, and the reference's (the PEFT row's prompt length)."""
    configs = method_configs(cfg)
    virtual = {name: methods.get(name).module_cls.num_virtual_tokens(c) for name, c in configs.items()}
    return virtual, methods.get(cfg.reference).module_cls.num_virtual_tokens(method_config(cfg, cfg.reference))


def row_specs(cfg: BenchConfig, model, info, tokens: Tokens, device: torch.device) -> list[RowSpec]:
    """Backbone-only rows (input length, then each distinct total length), method rows, the PEFT row."""
    configs = method_configs(cfg)
    virtual, ref_tokens = virtual_tokens(cfg)
    extra = set(virtual.values()) | ({ref_tokens} if cfg.include_peft else set())
    length = cfg.seq_len
    specs = [RowSpec(f"backbone-{length + n}", "backbone", length + n, 0,
                     lambda n=n: backbone_subject(model, info, tokens, length + n)) for n in sorted(extra | {0})]
    specs += [RowSpec(name, "method", length, virtual[name],
                      lambda c=c: method_subject(model, info, c, tokens, length, cfg.seed, device))
              for name, c in configs.items()]
    if cfg.include_peft:
        specs.append(RowSpec("peft-pt", "peft", length, ref_tokens,
                             lambda: peft_subject(model, info, ref_tokens, tokens, length)))
    return specs


def quant_specs(cfg: BenchConfig, model, info, tokens: Tokens, device: torch.device, quant: str) -> list[RowSpec]:
    """Rows over the backbone quantised `quant`: the backbone alone at the input length and at the reference's total
    length, and the reference method."""
    ref = method_config(cfg, cfg.reference)
    n = methods.get(cfg.reference).module_cls.num_virtual_tokens(ref)
    length = cfg.seq_len
    specs = [RowSpec(f"backbone-{length + k}@{quant}", "backbone", length + k, 0,
                     lambda k=k: backbone_subject(model, info, tokens, length + k), quant) for k in sorted({0, n})]
    specs.append(RowSpec(f"{cfg.reference}@{quant}", "method", length, n,
                         lambda: method_subject(model, info, ref, tokens, length, cfg.seed, device), quant))
    return specs


def run_bench(cfg: BenchConfig, loaded: tuple[torch.nn.Module, BackboneInfo] | None = None) -> BenchResult:
    """Measure every row (see pipeline.bench.measure for the protocol) and compute ratios and targets.

    `loaded`: an already loaded frozen backbone and its info (None: load `cfg.backbone`); it is moved to the
    benchmark's device and otherwise left as it was.
    """
    configs = method_configs(cfg)  # a config built in code is checked here too
    if cfg.include_peft and importlib.util.find_spec("peft") is None:
        raise ConfigError("include_peft=true needs the peft package (pip install -e '.[dev]'); "
                          "expected peft installed or include_peft=false")
    device = resolve_device(cfg.device)
    if cfg.num_threads is not None and device.type == "cpu":
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)  # dropout masks (ADePT) and PEFT's random prompt init
    if loaded is None:
        model, _, info = load_backbone(cfg.backbone)
    else:
        model, info = loaded
    model.to(device)
    virtual, ref_tokens = virtual_tokens(cfg)
    longest = cfg.seq_len + max([0, *virtual.values(), ref_tokens if cfg.include_peft else 0])
    tokens = Tokens.make(info, cfg.batch_size, longest, cfg.target_len, cfg.seed, device)
    specs = row_specs(cfg, model, info, tokens, device)
    _prime(backbone_subject(model, info, tokens, longest), cfg.warmup)
    probe = MemoryProbe(device)
    base = probe.current()  # backbone weights + batch (+ the whole process on CPU)
    bases, weights, load_mib = {"none": base}, {"none": model.get_memory_footprint() / MiB}, {"none": 0.0}
    for quant in cfg.quantized:  # loaded after `base`: the full-precision rows' memory does not include them
        start = probe.current()
        qmodel, _, qinfo = load_backbone(dataclasses.replace(cfg.backbone, quantization=quant))
        _prime(backbone_subject(qmodel, qinfo, tokens, longest), cfg.warmup)
        bases[quant] = probe.current()  # both backbones resident: @Q rows' peak includes the full-precision one
        weights[quant], load_mib[quant] = qmodel.get_memory_footprint() / MiB, (bases[quant] - start) / MiB
        specs += quant_specs(cfg, qmodel, qinfo, tokens, device, quant)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # PEFT reads a deprecated transformers property
        measured = measure_rows([s.make for s in specs], probe, cfg.warmup, cfg.steps)
    rows = [Row(name=s.name, kind=s.kind, input_len=s.input_len, virtual_tokens=s.virtual_tokens,
                trainable_params=m.trainable_params, step_ms=m.step_median_ms, infer_ms=m.infer_median_ms,
                tokens_per_s=cfg.batch_size * s.input_len / (m.step_median_ms / 1000.0),
                peak_mib=(bases[s.quant] + m.mem_bytes) / MiB, own_mib=m.mem_bytes / MiB,
                step_samples_ms=m.step_ms, infer_samples_ms=m.infer_ms, quant=s.quant)
            for s, m in zip(specs, measured, strict=True)]
    add_ratios(rows)
    config = dataclasses.asdict(cfg)
    config["resolved_methods"] = {n: dataclasses.asdict(c) for n, c in configs.items()}
    env = {"backbone": cfg.backbone.name_or_path, "dtype": cfg.backbone.dtype, "device": _device_name(device),
           "torch": torch.__version__, "threads": torch.get_num_threads(), "memory": probe.kind,
           "memory_note": probe.note, "base_mib": base / MiB, "hidden_size": info.hidden_size,
           "num_layers": info.num_layers, "vocab_size": info.vocab_size, "weights_mib": weights, "load_mib": load_mib}
    return BenchResult(config, env, rows, targets(rows, cfg.reference, cfg.overhead_target_pct)
                       + quant_targets(rows, weights, cfg.reference))


def _prime(subject: Subject, steps: int) -> None:
    """Untimed steps of the backbone alone at the longest length before any row is measured, so one-time
    allocations (autograd engine, BLAS workspaces, kernel caches) are charged to no row, least of all the first."""
    subject.model.train()
    for _ in range(steps):
        subject.train_step()
    subject.model.eval()
    subject.infer()


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores)"


def write_outputs(result: BenchResult, out_dir: str | Path) -> tuple[Path, Path]:
    """Write bench.md and bench.json into `out_dir`; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKDOWN).write_text(result.markdown())
    (out / JSON).write_text(result.to_json())
    return out / MARKDOWN, out / JSON


def log_mlflow(result: BenchResult, cfg: BenchConfig, files: tuple[Path, ...]) -> str | None:
    """Log params, per-row metrics and `files` as one run of experiment `cfg.experiment`; None without a URI."""
    uri = cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return None
    import time

    from mlflow.entities import Metric, Param

    from pipeline.config import ExperimentConfig, TrackingConfig
    from pipeline.tracking.runs import experiment_id, mlflow_client, resolve_tracking_uri

    client = mlflow_client(resolve_tracking_uri(uri))
    exp_id = experiment_id(client, ExperimentConfig(tracking=TrackingConfig(experiment=cfg.experiment)))
    run_id = client.create_run(exp_id, run_name=f"bench-{Path(cfg.backbone.name_or_path).name}",
                               tags={"promptfarm.kind": "bench", "device": result.env["device"]}).info.run_id
    params = {"backbone": cfg.backbone.name_or_path, "dtype": cfg.backbone.dtype, "device": result.env["device"],
              "batch_size": cfg.batch_size, "seq_len": cfg.seq_len, "warmup": cfg.warmup, "steps": cfg.steps,
              "equal_budget": cfg.equal_budget, "reference": cfg.reference, "include_peft": cfg.include_peft,
              "methods": ",".join(result.config["resolved_methods"])}
    params.update({f"{n}.{k}": v for n, c in result.config["resolved_methods"].items() for k, v in c.items()})
    items = [Param(k, str(v)) for k, v in params.items()]
    for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run_id, params=items[i:i + 100])
    now = int(time.time() * 1000)
    keys = ("step_ms", "infer_ms", "tokens_per_s", "peak_mib", "own_mib", "trainable_params", "vs_backbone",
            "vs_same_len", "overhead_pct", "vs_peft")
    metrics = [Metric(f"{r.name}.{k}", float(getattr(r, k)), now, 0)
               for r in result.rows for k in keys if getattr(r, k) is not None]
    client.log_batch(run_id, metrics=metrics)
    for path in files:
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)
    return run_id


def bench_command(config: str | Path | None, overrides: list[str] | None = None, out: str | Path | None = None) -> str:
    """`promptfarm bench CONFIG [k=v ...] [--out DIR]`: run, write bench.md/bench.json, log to MLflow; the text to
    print. Raises ConfigError (one line) on a bad config or a failed pre-flight (backbone, tracking store)."""
    from pipeline.preflight import check_backbone, check_tracking, tracking_uri

    cfg = load_bench_config(config, overrides)
    if out is not None:
        cfg.out_dir = str(out)
    if cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"):  # checked before minutes of measuring, not after
        check_tracking(tracking_uri(cfg.tracking_uri))
    check_backbone(cfg.backbone)
    result = run_bench(cfg)
    files = write_outputs(result, cfg.out_dir)
    run_id = log_mlflow(result, cfg, files)
    logged = f"; MLflow run {run_id} in experiment {cfg.experiment!r}" if run_id else ""
    return f"{result.markdown()}\nwrote {files[0]} and {files[1]}{logged}"
