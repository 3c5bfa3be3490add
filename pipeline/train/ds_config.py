"""DeepSpeed config for a prompt-only training run."""

from __future__ import annotations

from pipeline.config import TrainConfig


def ds_config(train: TrainConfig, dtype: str) -> dict:
    """ZeRO stage 2 or 3 over the prompted model; the client AdamW keeps per-group learning rates.

    Stage 3 partitions every parameter, so the frozen backbone is sharded across the trial's ranks and
    gathered layer by layer in forward; stage 2 partitions only the (prompt) optimizer state and gradients.
    """
    cfg: dict = {
        "train_micro_batch_size_per_gpu": train.batch_size,
        "gradient_accumulation_steps": train.grad_accum,
        "gradient_clipping": train.grad_clip,
        "zero_optimization": {"stage": train.zero_stage},
        # Our optimizer is torch AdamW with two param groups (DePT-style methods need two lrs); DeepSpeed's own
        # optimizers would need the fused_adam JIT build and take a single lr from the config.
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }
    if dtype == "bfloat16":
        cfg["bf16"] = {"enabled": True}
    elif dtype == "float16":
        cfg["fp16"] = {"enabled": True, "initial_scale_power": 12}
    if train.zero_stage == 3:
        # CHOICE: tensors under 1e5 elements (the prompt, norms) stay resident instead of being gathered every
        # forward: a PT-100 prompt at d=8192 (819K) is still partitioned, a LLaMA norm (8K) is not. On GPU the
        # next layers' all-gathers overlap compute (DeepSpeed's ZeRO-3 default; a 70B model moves ~140 GB per
        # rank per step); gloo on CPU has no side stream to overlap on.
        cfg["zero_optimization"].update({"stage3_param_persistence_threshold": train.zero3_persistence_threshold,
                                         "overlap_comm": train.use_gpu})
    return cfg
