"""DePT and ADePT whose offsets stay at zero train exactly like PT of their short-prompt length, through the trial's
own DeepSpeed engine (several parameter groups, the lr schedule, ZeRO-2). A difference here would come from the
engine or the loop rather than the methods: the check behind "a decomposed method with a frozen offset is PT-m"."""

from __future__ import annotations

import pytest
import torch

from pipeline import methods
from pipeline.config import load_config
from pipeline.data.builtin import get_task
from pipeline.data.encode import Encoder, Encoding
from pipeline.data.sources import load_examples
from pipeline.model.backbone import embedding_rows, load_backbone
from pipeline.model.prompted import PromptedModel
from pipeline.train.loop import batches, build_engine, train_step
from tests.conftest import FIXTURES, ROOT

M, STEPS = 4, 4
# The offsets' own lrs are set so small (absolute units) that B / W2 stay at their zero init to float32 precision:
# an offset of ~1e-30 added to embeddings of ~1e-2 rounds back to the embedding.
FROZEN = {"pt": f"{{name: pt, num_tokens: {M}, lr: 0.01}}",
          "dept": f"{{name: dept, num_tokens: {M}, max_length: 64, lr: 0.01, lr_lowrank: 1.0e-30}}",
          "adept": f"{{name: adept, num_tokens: {M}, lr: 0.01, lr_ffn: 1.0e-30, dropout: 0.0}}"}


def _losses(backbone_dir, method: str, clip: float) -> tuple[list[float], torch.Tensor, torch.Tensor]:
    """(per-step losses, trained prompt, initial prompt) of STEPS steps of the trial's engine on the tiny LLaMA."""
    cfg = load_config(ROOT / "jobs" / "configs" / "smoke.yaml", [
        f"backbone.name_or_path={backbone_dir}", "backbone.init_tiny=null", f"method={FROZEN[method]}",
        "train.lr_units=absolute", f"train.grad_clip={clip}", "train.batch_size=4",
        f"train.max_steps={STEPS}", "train.warmup_steps=1"])
    torch.manual_seed(0)
    model, tok, info = load_backbone(cfg.backbone)
    built = methods.build(cfg.method, info, embedding_rows(model, tok), seed=0)
    init = built.prompt.detach().clone()
    engine = build_engine(cfg, PromptedModel(model, built, info.is_seq2seq), built, 0)
    task = get_task("sst2")
    feats = Encoder(tok, info.is_seq2seq, Encoding(64, 8, cfg.data.decoder_separator)).examples(
        task, load_examples(task, "train", str(FIXTURES / "sst2_tiny" / "train.tsv"), None, 0))
    stream = batches(feats, 4, tok.pad_token_id, 0)
    losses = [train_step(engine, stream, 1, "cpu", s, 1)[0] for s in range(1, STEPS + 1)]
    prompt = built.prompt.detach().clone()
    engine.destroy()
    return losses, prompt, init


@pytest.mark.parametrize("method", ["dept", "adept"])
def test_frozen_offsets_train_exactly_like_pt_of_length_m(method, tiny_dirs, gloo_world):
    pt_losses, pt_prompt, pt_init = _losses(tiny_dirs["llama"], "pt", clip=0.0)
    losses, prompt, init = _losses(tiny_dirs["llama"], method, clip=0.0)
    assert torch.equal(init, pt_init)  # the same sampled-vocab init
    assert losses == pytest.approx(pt_losses, rel=1e-6, abs=0)
    torch.testing.assert_close(prompt, pt_prompt, rtol=1e-6, atol=1e-9)
    assert (prompt - init).abs().max() > 1e-3  # it trained


def test_global_clip_couples_the_groups(tiny_dirs, gloo_world):
    """With train.grad_clip on, the offsets' gradient enters the global norm (as in the references' HF Trainer
    max_grad_norm): the prompt's steps then differ from PT's, the one way a frozen-offset DePT may deviate."""
    pt_losses = _losses(tiny_dirs["llama"], "pt", clip=1e-3)[0]
    losses = _losses(tiny_dirs["llama"], "dept", clip=1e-3)[0]
    assert losses[0] == pytest.approx(pt_losses[0], rel=1e-6)  # same start
    assert losses[1:] != pytest.approx(pt_losses[1:], rel=1e-6)
