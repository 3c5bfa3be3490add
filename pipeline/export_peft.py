"""Export a vanilla prompt-tuning (PT) artifact as a Hugging Face PEFT prompt-tuning adapter.

    from pipeline.export_peft import export_peft
    export_peft("runs/sst2/prompt", "runs/sst2/peft")          # writes adapter_config.json + adapter_model.safetensors

    from peft import PeftModel
    model = PeftModel.from_pretrained(base_model, "runs/sst2/peft")   # same backbone the prompt was trained on

PEFT's adapter has no place for how inputs were written, so the task definition and encoding the prompt was
trained with travel beside it as `promptfarm_task.json` (TASK_FILE): render `task.template` over a row's columns,
then (decoder-only) append `encoding.decoder_separator`, as training did; the label words / decoding settings are
there too.

A method exports when it implements `PromptMethod.peft_prompt`: PT does (its (n, d) prompt is exactly PEFT's
`PromptEmbedding` table, which PEFT prepends to the input embeddings (decoder-only) or to the encoder input
embeddings (T5) with mask 1, as `PromptedModel` does); every other method refuses in one line, naming why.

PEFT's format for PROMPT_TUNING (peft `BasePromptEncoder._get_adapter_state_dict`): one tensor
"prompt_embeddings" of shape (num_virtual_tokens * num_transformer_submodules, token_dim). We always write
num_transformer_submodules=1 explicitly: when it is absent PEFT defaults to 2 for SEQ_2_SEQ_LM and then expects a
(2n, d) table (our (n, d) one fails to load). With 2, PEFT >= 0.4 ignores the second half for prompt tuning (encoder
prompt only), but PEFT <= 0.3 prepended it to the decoder input, which is not what we trained.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import save_file

from pipeline.artifact import load_prompt, read_prompt_meta, recorded_backbone, recorded_encoding, recorded_task

TASK_FILE = "promptfarm_task.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_KEY = "prompt_embeddings"


def peft_config(meta: dict, num_tokens: int):
    """The `peft.PromptTuningConfig` matching a PT artifact's prompt_config.json (`meta`)."""
    from peft import PromptTuningConfig, PromptTuningInit, TaskType

    bb = recorded_backbone(meta["backbone"])
    return PromptTuningConfig(
        task_type=TaskType.SEQ_2_SEQ_LM if bb.is_seq2seq else TaskType.CAUSAL_LM,
        num_virtual_tokens=num_tokens,
        token_dim=bb.hidden_size,
        num_transformer_submodules=1,  # prompt on the (encoder) input only, as PromptedModel does
        num_layers=bb.num_layers,
        base_model_name_or_path=bb.name_or_path,
        revision=bb.revision,
        prompt_tuning_init=PromptTuningInit.RANDOM,  # the weights are loaded; nothing is initialised
        inference_mode=True,  # what PeftModel.save_pretrained records
    )


def export_peft(prompt_dir: str | Path, out_dir: str | Path) -> Path:
    """Write `prompt_dir` (a PT artifact) to `out_dir` as a PEFT adapter; return `out_dir`.

    Raises PromptArtifactError (a ValueError) for a missing/corrupt artifact and ValueError for a method with no
    PEFT equivalent.
    """
    meta = read_prompt_meta(prompt_dir)
    # the recorded backbone was validated; the tensors are checked against the config before anything is built
    method, _ = load_prompt(prompt_dir, recorded_backbone(meta["backbone"]), meta)
    try:
        prompt = method.peft_prompt().detach().to("cpu").float().contiguous()  # (n, d)
    except ValueError as e:
        raise ValueError(f"cannot export {str(prompt_dir)!r} to PEFT: {e}") from None
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"cannot export to {str(out)!r}: it is a file; expected a directory (new or existing) "
                         "for the adapter")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file in the way higher up, no permission
        raise ValueError(f"cannot create {str(out)!r} for the adapter: {e.strerror or e}") from None
    tmp = out / (ADAPTER_WEIGHTS + ".tmp")
    save_file({PEFT_KEY: prompt}, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, out / ADAPTER_WEIGHTS)
    peft_config(meta, prompt.shape[0]).save_pretrained(str(out))
    record = {"task": recorded_task(meta).to_dict(), "encoding": recorded_encoding(meta).to_dict()}
    tmp = out / (TASK_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    os.replace(tmp, out / TASK_FILE)
    return out
