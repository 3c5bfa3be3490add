"""The search a user would write without promptfarm: Hugging Face `Trainer.hyperparameter_search(backend="ray")` over
a PEFT `PromptTuningConfig` model, Ray Tune's ASHAScheduler stopping trials (PT only).

Written as the transformers documentation shows it ("Hyperparameter search", Ray backend): a `model_init` that builds
a fresh PEFT model per trial, an `hp_space` returning Tune domains, `direction="minimize"` on the default objective
(the evaluation loss), extra keyword arguments passed through to `ray.tune.run`. Settings chosen for it, each one an
option its documentation gives (none is a handicap):

- `prompt_tuning_init=SAMPLE_VOCAB`: sampled vocabulary rows, promptfarm PT's own init (Lester et al. Sec. 2.2);
- `prediction_loss_only=True`: evaluation keeps no logits (the objective needs the loss only);
- `save_only_model=True` and checkpoints at the evaluation interval: Ray gets the prompt to pick the best from;
- `RAY_SCOPE=all`: the best trial is chosen over every report, not the last (as promptfarm chooses);
- `reuse_actors=True` (a `tune.run` option): later trials keep their process (Python, torch, transformers imported);
- torch threads set to the CPUs the trial holds (Ray starts a worker with OMP_NUM_THREADS=1).

The data are promptfarm's encoded features (same template, tokens and labels) through promptfarm's right-padding
collate; learning rates are the sampled embedding-unit values made absolute for the backbone (pipeline.methods.units),
so both searches try the same optimizer steps. `PeerClock` (a TrainerCallback) stamps, per trial, model_init,
training begin/end, each step and each evaluation, so the page can say what a trial's time went to.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path


def _stamp(path, event: str, step: int, t: float | None = None) -> None:
    """Append one {t, trial, event, step} line to `path`; the trial is Ray Tune's trial id in this process."""
    from ray import tune

    with open(path, "a") as f:
        f.write(json.dumps({"t": time.time() if t is None else t, "trial": tune.get_context().get_trial_id(),
                            "event": event, "step": step}) + "\n")


def _clock_callback():
    from transformers import TrainerCallback

    class PeerClock(TrainerCallback):
        """Appends JSON lines {t, trial, event, step} to `path` (events: train_begin, step, evaluate, save,
        train_end); the trial is Ray Tune's trial id in the trial's process."""

        def __init__(self, path: str) -> None:
            self.path = path

        def write(self, event: str, step: int) -> None:
            _stamp(self.path, event, step)

        def on_train_begin(self, args, state, control, **kw):
            self.write("train_begin", state.global_step)

        def on_step_end(self, args, state, control, **kw):
            self.write("step", state.global_step)

        def on_evaluate(self, args, state, control, **kw):
            self.write("evaluate", state.global_step)

        def on_save(self, args, state, control, **kw):
            self.write("save", state.global_step)

        def on_train_end(self, args, state, control, **kw):
            self.write("train_end", state.global_step)

    return PeerClock


def run_peer(exp, features: list[dict], val_features: list[dict], pad_id: int, abs_lrs: list[float],
             num_tokens: int, out_dir: Path, callbacks: list) -> dict:
    """Run the peer search of `abs_lrs` (one trial each, ASHA with `exp.search`'s settings) on the running Ray
    cluster; {wall_s, best: {lr, objective, checkpoint}, trials: [{trial, lr, reports, steps}], clock file}."""
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from pipeline.data.encode import collate
    from pipeline.model.backbone import ensure_backbone
    from pipeline.tune.cluster import DRIVER_CPU
    from pipeline.tune.interrupt import Interrupted, Interruptible

    t, s = exp.train, exp.search
    path, cpus = ensure_backbone(exp.backbone), t.cpus_per_worker + DRIVER_CPU  # a trial of ours holds both
    clock = out_dir.resolve() / "peer-events.jsonl"  # written from the trials' processes
    clock.unlink(missing_ok=True)
    shutil.rmtree(out_dir / "peer-ray", ignore_errors=True)  # an interrupted run's trials: this part starts over

    def model_init(trial=None):
        import torch

        from pipeline.train.session import use_reserved_cpus

        use_reserved_cpus(cpus)
        began = time.time()
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        peft_cfg = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=num_tokens,
                                      prompt_tuning_init=PromptTuningInit.SAMPLE_VOCAB)
        model = get_peft_model(model, peft_cfg)
        if trial is not None:  # the Trainer's own construction calls it once without a trial
            _stamp(clock, "init_begin", 0, began)
            _stamp(clock, "init_end", 0)
        return model

    began = time.time()  # the Trainer's construction (a model_init in this process) is the peer's cost too
    args = TrainingArguments(
        output_dir=str(out_dir / "peer-trainer"), max_steps=t.max_steps, per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size, lr_scheduler_type="linear", warmup_steps=t.warmup_steps,
        weight_decay=t.weight_decay, max_grad_norm=t.grad_clip, eval_strategy="steps", eval_steps=t.eval_every,
        save_strategy="steps", save_steps=t.eval_every, save_only_model=True, prediction_loss_only=True,
        logging_steps=t.eval_every, report_to="none", use_cpu=not t.use_gpu, seed=exp.seed, disable_tqdm=True)
    trainer = Trainer(model_init=model_init, args=args, train_dataset=features, eval_dataset=val_features,
                      data_collator=lambda rows: collate(rows, pad_id), callbacks=[_clock_callback()(str(clock))])
    asha = ASHAScheduler(metric="objective", mode="min", time_attr="training_iteration",
                         max_t=-(-t.max_steps // t.eval_every), grace_period=s.grace_period,
                         reduction_factor=s.reduction_factor)
    os.environ["RAY_SCOPE"] = "all"
    with Interruptible() as stop:  # Tune's own Ctrl+C handling returns as if the search had finished
        best = trainer.hyperparameter_search(
            hp_space=lambda _: {"learning_rate": tune.grid_search(abs_lrs)}, backend="ray", n_trials=1,
            direction="minimize", scheduler=asha, resources_per_trial={"cpu": cpus}, max_concurrent_trials=1,
            reuse_actors=True, storage_path=str((out_dir / "peer-ray").resolve()), name="peer",
            callbacks=callbacks, verbose=0)
    if stop.interrupted:
        raise Interrupted("the peer search", stop.signum)
    analysis = best.run_summary
    best_trial = next(tr for tr in analysis.trials if tr.trial_id == best.run_id)
    ckpt = analysis.get_best_checkpoint(best_trial, metric="objective", mode="min")
    wall = time.time() - began
    with ckpt.as_directory() as d:
        prompt = adapter_prompt(next(Path(d).glob("checkpoint-*")))
    trials = [{"trial": tr.trial_id, "lr": tr.config["learning_rate"],
               "reports": tr.last_result.get("training_iteration", 0), "steps": _last_step(clock, tr.trial_id)}
              for tr in analysis.trials]
    return {"wall_s": wall, "best": {"trial": best.run_id, "lr": best.hyperparameters["learning_rate"],
                                     "objective": best.objective},
            "prompt": prompt, "trials": trials, "clock": str(clock), "scheduler": type(asha).__name__}


def _last_step(clock: Path, trial: str) -> int:
    steps = [e["step"] for e in map(json.loads, clock.read_text().splitlines()) if e["trial"] == trial]
    return max(steps, default=0)


def adapter_prompt(checkpoint_dir: Path):
    """The (n, d) prompt table in a PEFT PromptTuning checkpoint's adapter_model.safetensors."""
    from safetensors.torch import load_file

    tensors = load_file(str(Path(checkpoint_dir) / "adapter_model.safetensors"))
    if len(tensors) != 1:
        raise ValueError(f"{checkpoint_dir}: adapter holds {sorted(tensors)}; expected PromptTuning's one table")
    return next(iter(tensors.values()))
