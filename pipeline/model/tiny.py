"""Tiny randomly initialised backbones for demos and tests: a real HF model + tokenizer written to a directory.

They are loaded through exactly the same `from_pretrained` path as a hub model; nothing downloads. The
tokenizer is a byte-level BPE trained on a built-in corpus of the GLUE/SuperGLUE task words, so every task's
prefixes and label words tokenise sensibly and any other text still encodes (byte fallback).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import torch

from pipeline.data.builtin import get_task, task_names
from pipeline.model.zero import hf_zero3

# Special ids follow T5's convention (pad=0, eos=1, unk=2) so one tokenizer serves both families.
SPECIALS = ["<pad>", "</s>", "<unk>", "<s>"]
_WORDS = (
    "the a an and or but not no very really quite film movie story plot acting actors director scene scenes "
    "good great fine funny moving charming gripping brilliant beautiful wonderful best love loved enjoy "
    "bad awful boring dull weak worst hate hated mess tedious flat slow predictable long "
    "is was are were be it this that with of to in on for as by at from its it's his her their one "
    "sentence question premise hypothesis passage answer choice word label true false yes"
)


def _corpus() -> list[str]:
    lines = [_WORDS]
    for name in task_names():
        task = get_task(name)
        lines.append(" ".join([name, *task.text_fields, *(task.label_words or ())]))
    lines += [f"{i / 10:.1f}" for i in range(0, 51)]  # STS-B targets
    return lines * 4


def build_tokenizer(family: Literal["llama", "t5"], vocab_size: int = 512):
    """A PreTrainedTokenizerFast: llama adds <s> in front, t5 adds </s> at the end (as the real ones do)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    if family == "llama":
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 3)])
    else:
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", bos_token="<s>")


def build_model(family: Literal["llama", "t5"], vocab_size: int, hidden: int = 64, layers: int = 2, seed: int = 0):
    """A randomly initialised LlamaForCausalLM or T5ForConditionalGeneration of width `hidden`, always whole (a
    ZeRO-3 model alive in this process must not make this one partitioned)."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, LlamaConfig, T5Config

    torch.manual_seed(seed)
    if family == "llama":
        cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                          num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                          max_position_embeddings=1024, bos_token_id=3, eos_token_id=1, pad_token_id=0,
                          tie_word_embeddings=False)
        cls = AutoModelForCausalLM
    else:
        cfg = T5Config(vocab_size=vocab_size, d_model=hidden, d_kv=hidden // 4, d_ff=2 * hidden, num_layers=layers,
                       num_decoder_layers=layers, num_heads=4, decoder_start_token_id=0, pad_token_id=0,
                       eos_token_id=1, tie_word_embeddings=False,
                       initializer_factor=0.1)  # T5's default init gives huge logits in a random model
        cls = AutoModelForSeq2SeqLM
    with hf_zero3(None):
        return cls.from_config(cfg)


def write_tiny_model(family: Literal["llama", "t5"], path: str | Path, hidden: int = 64, seed: int = 0,
                     layers: int = 2) -> Path:
    """Write model + tokenizer to `path` atomically (safe when several workers race to create it)."""
    path = Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=path.parent))
    tokenizer = build_tokenizer(family)
    model = build_model(family, len(tokenizer), hidden=hidden, layers=layers, seed=seed)
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Writing model shards" on a first run: promptfarm prints its own lines only
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    try:
        os.rename(tmp, path)
    except OSError:  # another process won the race; its copy is identical (same seed)
        shutil.rmtree(tmp, ignore_errors=True)
    return path
