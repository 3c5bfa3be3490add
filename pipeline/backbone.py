"""Load a frozen Hugging Face backbone (causal LM or seq2seq LM) and its tokenizer; ZeRO-3-safe embedding reads."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.config import BackboneConfig
from pipeline.methods.base import BackboneInfo

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def ensure_backbone(cfg: BackboneConfig) -> None:
    """Create the tiny demo model at `name_or_path` if the config asks for one and it is not there yet."""
    if cfg.init_tiny and not Path(cfg.name_or_path).exists():
        from pipeline.tiny import write_tiny_model

        write_tiny_model(cfg.init_tiny, cfg.name_or_path, hidden=cfg.tiny_hidden, layers=cfg.tiny_layers)


def backbone_info(model, cfg: BackboneConfig) -> BackboneInfo:
    """Describe `model` for prompt compatibility checks and records."""
    c = model.config
    return BackboneInfo(
        name_or_path=cfg.name_or_path, revision=cfg.revision, model_type=c.model_type,
        is_seq2seq=bool(c.is_encoder_decoder), hidden_size=model.get_input_embeddings().embedding_dim,
        vocab_size=model.get_input_embeddings().num_embeddings,
        num_layers=int(getattr(c, "num_hidden_layers", None) or c.num_layers),
    )


def load_tokenizer(cfg: BackboneConfig):
    """The backbone's tokenizer, with a pad token (decoder-only vocabularies often lack one: use eos)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(cfg.name_or_path, revision=cfg.revision,
                                        trust_remote_code=cfg.trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_backbone(cfg: BackboneConfig, zero3_config: dict | None = None):
    """(model, tokenizer, info): every backbone parameter frozen, in `cfg.dtype`.

    `zero3_config` (a ZeRO-3 DeepSpeed config, inside an initialised process group): build the model already
    partitioned (deepspeed.zero.Init via HfDeepSpeedConfig), so each rank holds 1/world of the weights from the
    start. Without it every rank would load the full model and DeepSpeed would move all of it onto each GPU
    before partitioning: 141 GB per rank for a bf16 70B model.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    ensure_backbone(cfg)
    kw = {"revision": cfg.revision, "trust_remote_code": cfg.trust_remote_code}
    try:
        hf_cfg = AutoConfig.from_pretrained(cfg.name_or_path, **kw)
    except OSError as e:
        first = str(e).splitlines()[0]
        raise FileNotFoundError(f"backbone {cfg.name_or_path!r} not found locally or on the hub: {first}") from None
    cls = AutoModelForSeq2SeqLM if hf_cfg.is_encoder_decoder else AutoModelForCausalLM
    keep = None
    if zero3_config is not None:
        from transformers.integrations import HfDeepSpeedConfig

        keep = HfDeepSpeedConfig(zero3_config)  # transformers holds it weakly: it must outlive from_pretrained
    model = cls.from_pretrained(cfg.name_or_path, dtype=DTYPES[cfg.dtype], **kw)
    model.requires_grad_(False)
    model._promptfarm_ds_config = keep  # keeps transformers' ZeRO-3 mode on for the model's lifetime (generate)
    return model, load_tokenizer(cfg), backbone_info(model, cfg)


def embedding_rows(model):
    """EmbedRows over `model`'s input embedding: reads rows whether or not ZeRO-3 has partitioned it."""
    weight = model.get_input_embeddings().weight

    def rows(ids: torch.Tensor) -> torch.Tensor:
        if hasattr(weight, "ds_id"):  # partitioned by ZeRO-3: gather the full matrix for the read only
            import deepspeed

            with deepspeed.zero.GatheredParameters([weight], modifier_rank=None):
                return weight[ids].detach().float().cpu().clone()
        return weight[ids].detach().float().cpu().clone()

    return rows
