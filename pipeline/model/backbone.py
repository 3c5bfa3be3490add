"""Load a frozen Hugging Face backbone (causal LM or seq2seq LM) and its tokenizer; ZeRO-3-safe embedding reads."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.config import BackboneConfig
from pipeline.methods.base import BackboneInfo
from pipeline.model.zero import gathered, hf_zero3

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def ensure_backbone(cfg: BackboneConfig) -> str:
    """The directory or hub id to load: the GGUF cache (converted on first use), a tiny demo model written on
    first use, or `name_or_path` itself."""
    if cfg.gguf:
        from pipeline.model.gguf import cached_dir

        return str(cached_dir(cfg.gguf, cfg.cache_dir))
    if cfg.init_tiny and not Path(cfg.name_or_path).exists():
        from pipeline.model.tiny import write_tiny_model

        write_tiny_model(cfg.init_tiny, cfg.name_or_path, hidden=cfg.tiny_hidden, layers=cfg.tiny_layers)
    return cfg.name_or_path


def loaded_backbone_info(model, cfg: BackboneConfig) -> BackboneInfo:
    """Describe `model` for prompt compatibility checks and records."""
    c = model.config
    return BackboneInfo(
        name_or_path=cfg.name_or_path, revision=cfg.revision, model_type=c.model_type,
        is_seq2seq=bool(c.is_encoder_decoder), hidden_size=model.get_input_embeddings().embedding_dim,
        vocab_size=model.get_input_embeddings().num_embeddings,
        num_layers=int(getattr(c, "num_hidden_layers", None) or c.num_layers), gguf=cfg.gguf,
        quantization=cfg.quantization, dtype=cfg.dtype,
    )


def load_tokenizer(cfg: BackboneConfig, path: str | None = None):
    """The backbone's tokenizer, with a pad token (decoder-only vocabularies often lack one: use eos)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path or ensure_backbone(cfg), revision=cfg.revision,
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
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    path = ensure_backbone(cfg)
    kw = {"revision": cfg.revision, "trust_remote_code": cfg.trust_remote_code}
    quant = quantization_config(cfg)
    if quant is not None:
        if zero3_config is not None:  # config load refuses this; a direct call gets the same answer
            raise ValueError(f"backbone.quantization={cfg.quantization!r} cannot be loaded ZeRO-3-partitioned; "
                             "expected train.zero_stage=2")
        # bitsandbytes quantises while loading, on the device the weights land on: this process's GPU or the CPU
        kw.update(quantization_config=quant,
                  device_map={"": torch.cuda.current_device()} if torch.cuda.is_available() else "cpu")
    hf_cfg = load_hf_config(cfg, path)
    cls = AutoModelForSeq2SeqLM if hf_cfg.is_encoder_decoder else AutoModelForCausalLM
    with hf_zero3(zero3_config) as keep:
        model = cls.from_pretrained(path, dtype=DTYPES[cfg.dtype], **kw)
    model.requires_grad_(False)
    model._promptfarm_ds_config = keep  # keeps transformers' ZeRO-3 mode on for the model's lifetime (generate)
    return model, load_tokenizer(cfg, path), loaded_backbone_info(model, cfg)


def quantization_config(cfg: BackboneConfig):
    """transformers' BitsAndBytesConfig for `cfg.quantization` (None for 'none'): nf4/fp4 pack the linear layers'
    weights into 4 bits (blocks of 64 with one absmax scale each) and de-quantise them to the compute dtype per
    matmul; int8 is LLM.int8(). Embeddings, norms and the LM head stay in `cfg.dtype`, so prompts live in the same
    space as over the full-precision backbone."""
    if cfg.quantization == "none":
        return None
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ImportError(f"backbone.quantization={cfg.quantization!r} needs the bitsandbytes package; expected it "
                          "installed (pip install -c constraints.txt -e '.[quant]')")
    from transformers import BitsAndBytesConfig

    if cfg.quantization == "int8":
        import warnings

        # LLM.int8() casts float32 inputs to float16 and warns on every matmul (thousands of lines per trial)
        warnings.filterwarnings("ignore", message="MatMul8bitLt: inputs will be cast")
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=cfg.quantization,
                              bnb_4bit_compute_dtype=DTYPES[cfg.quant_compute_dtype or cfg.dtype])


def load_hf_config(cfg: BackboneConfig, path: str | None = None):
    """The backbone's HF config (seconds, no weights): also the pre-flight check that the backbone resolves."""
    from transformers import AutoConfig

    path = path or ensure_backbone(cfg)
    local = Path(path).expanduser()
    if path.startswith((".", "/", "~")) and not local.exists():
        raise FileNotFoundError(f"backbone directory {str(local.resolve())!r} not found; expected a local model "
                                f"directory or a hub id (backbone.name_or_path={cfg.name_or_path!r})")
    try:
        return AutoConfig.from_pretrained(path, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
    except OSError as e:
        first = str(e).splitlines()[0]
        raise FileNotFoundError(f"backbone {path!r} not found locally or on the hub: {first}") from None


class EmbeddingRows:
    """EmbedRows over a model's input embedding: reads rows whether or not ZeRO-3 has partitioned it.

    `special_ids`: the tokenizer's special token ids (bos/eos/pad/chat markers), which a vocabulary init must not
    copy into a prompt (pipeline.methods.base.init_from_vocab). `label_ids`: each class label word's tokens, in the
    task's label order (pipeline.methods.base.init_from_labels); empty for other task kinds.
    """

    def __init__(self, model, special_ids=(), label_ids=()):
        self.weight = model.get_input_embeddings().weight
        self.special_ids = frozenset(int(i) for i in special_ids)
        self.label_ids = tuple(tuple(int(i) for i in ids) for ids in label_ids)

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        with gathered([self.weight]):  # partitioned by ZeRO-3: gather the full matrix for the read only
            return self.weight[ids].detach().float().cpu().clone()


def embedding_rows(model, tokenizer=None, label_ids=()) -> EmbeddingRows:
    """EmbedRows over `model`'s input embedding, excluding `tokenizer`'s special ids from vocabulary inits;
    `label_ids`: the class label words' tokens for a class-label init."""
    return EmbeddingRows(model, special_token_ids(tokenizer) if tokenizer is not None else (), label_ids)


def special_token_ids(tokenizer) -> set[int]:
    """The tokenizer's special ids: the named ones (bos/eos/pad/unk) and every added token flagged special
    (SmolLM2 names only ids 0-2 but flags all 17 of its chat/code markers, ids 0-16)."""
    ids = set(tokenizer.all_special_ids)
    ids.update(i for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items() if tok.special)
    return ids


def input_embedding_rms(model) -> float:
    """RMS of the loaded backbone's input-embedding entries (gathered first under ZeRO-3): the scale learning rates
    in embedding units are converted with (pipeline.methods.units)."""
    from pipeline.methods.units import embedding_rms

    weight = model.get_input_embeddings().weight
    with gathered([weight]):
        return embedding_rms(weight)
