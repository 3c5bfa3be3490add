"""The benchmark's rows as `Subject`s: the frozen backbone alone, each registered method, and HF PEFT's PT.

Every row runs on the same frozen backbone object and on prefixes of one synthetic token batch, and trains with
torch AdamW over its trainable parameters only.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pipeline import methods
from pipeline.bench.measure import Subject
from pipeline.methods.base import BackboneInfo, PromptBatch, count_trainable
from pipeline.model.backbone import embedding_rows
from pipeline.model.prompted import PromptedModel
from pipeline.train.loop import make_optimizer

PEFT_LR = 0.3  # Lester et al.'s prompt lr; the value does not change the cost of a step
WEIGHT_DECAY = 1e-5  # TrainConfig's default, applied to every optimizer alike


@dataclass(frozen=True)
class Tokens:
    """One synthetic batch (fixed seed) on the device; every row uses a prefix of it."""

    ids: torch.Tensor
    """(B, longest length needed) random ids in [0, vocab)."""
    targets: torch.Tensor
    """(B, target_len) random decoder ids (encoder-decoder backbones)."""
    is_seq2seq: bool
    """Encoder-decoder backbone: labels go to the decoder."""

    @classmethod
    def make(cls, info: BackboneInfo, batch: int, length: int, target_len: int, seed: int,
             device: torch.device) -> Tokens:
        gen = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, info.vocab_size, (batch, length), generator=gen)
        targets = torch.randint(0, info.vocab_size, (batch, target_len), generator=gen)
        return cls(ids.to(device), targets.to(device), info.is_seq2seq)

    def train(self, length: int) -> dict[str, torch.Tensor]:
        """Inputs of the first `length` tokens, no padding; decoder-only labels are the inputs (LM loss)."""
        ids = self.ids[:, :length]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                "labels": self.targets if self.is_seq2seq else ids}

    def infer(self, length: int) -> dict[str, torch.Tensor]:
        """The same tokens without labels; encoder-decoders get the targets as decoder inputs."""
        batch = self.train(length)
        del batch["labels"]
        if self.is_seq2seq:
            batch["decoder_input_ids"] = self.targets
        return batch


class InputGrad(nn.Module):
    """Stand-in method of the backbone-only rows: adds nothing, but lets gradients reach the input embeddings.

    Every prompt method needs backward through the whole frozen network down to its input, so this is the floor a
    method's step sits on; autograd still skips the frozen weights' own gradients in both cases.
    """

    def forward(self, batch: PromptBatch) -> PromptBatch:
        return batch._replace(inputs_embeds=batch.inputs_embeds.detach().requires_grad_())


def backbone_subject(model: nn.Module, info: BackboneInfo, tokens: Tokens, length: int) -> Subject:
    """The frozen backbone alone on `length` real tokens: forward + backward to the inputs, no optimizer."""
    prompted = PromptedModel(model, InputGrad(), info.is_seq2seq)
    return Subject(prompted, None, tokens.train(length), tokens.infer(length), 0)


def method_subject(model: nn.Module, info: BackboneInfo, cfg: Any, tokens: Tokens, length: int, seed: int,
                   device: torch.device) -> Subject:
    """A registered method (built from its config through the registry) over the backbone."""
    method = methods.build(cfg, info, embedding_rows(model), seed=seed).to(device)
    prompted = PromptedModel(model, method, info.is_seq2seq)
    optimizer = make_optimizer(method, model, WEIGHT_DECAY, "embedding")
    return Subject(prompted, optimizer, tokens.train(length), tokens.infer(length), count_trainable(method))


def shared_twin(model: nn.Module) -> nn.Module:
    """A new module tree (own config, attributes, hooks) over the very same parameter and buffer tensors.

    PEFT wraps the model it is given in place (it sets attributes on it, e.g. prepare_inputs_for_generation, and
    rewrites config fields); wrapping a twin leaves the backbone the other rows use untouched without a second
    copy of the weights in memory.
    """
    memo = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo)


def peft_subject(model: nn.Module, info: BackboneInfo, num_tokens: int, tokens: Tokens, length: int) -> Subject:
    """HF PEFT PromptTuning (random init) with `num_tokens` virtual tokens over a twin of the backbone."""
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    config = PromptTuningConfig(
        task_type=TaskType.SEQ_2_SEQ_LM if info.is_seq2seq else TaskType.CAUSAL_LM,
        num_virtual_tokens=num_tokens, token_dim=info.hidden_size, num_layers=info.num_layers,
        num_transformer_submodules=1,  # prompt on the (encoder) input only, as PromptedModel does
        prompt_tuning_init=PromptTuningInit.RANDOM)
    peft_model = get_peft_model(shared_twin(model), config)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": trainable, "lr": PEFT_LR}], weight_decay=WEIGHT_DECAY)
    return Subject(peft_model, optimizer, tokens.train(length), tokens.infer(length), sum(p.numel() for p in trainable))
