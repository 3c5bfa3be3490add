"""export_peft: a PT prompt exported to PEFT gives the same logits under PeftModel as under our PromptedModel."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from pipeline import methods
from pipeline.artifact import TENSORS_FILE, PromptArtifactError, save_prompt
from pipeline.export_peft import ADAPTER_CONFIG, ADAPTER_WEIGHTS, PEFT_KEY, TASK_FILE, export_peft
from pipeline.methods.dept import DePTConfig
from pipeline.methods.pt import PTConfig
from pipeline.model.backbone import embedding_rows
from pipeline.model.prompted import PromptedModel

peft = pytest.importorskip("peft")
N = 5


def _saved(cfg, fam, backbones, path, seed=0):
    model, _, info = backbones[fam]
    method = methods.build(cfg, info, embedding_rows(model), seed)
    with torch.no_grad():
        for p in method.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed + 1)))
    save_prompt(path, cfg, method.state_dict(), info, "sst2")
    return method


def _batch(vocab: int):
    gen = torch.Generator().manual_seed(7)
    ids = torch.randint(4, vocab, (3, 9), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # right padding
    mask[2, :3] = 0  # left padding
    labels = torch.randint(4, vocab, (3, 4), generator=gen)
    return ids, mask, labels


@pytest.mark.parametrize("fam", ["llama", "t5"])
def test_peft_matches_prompted_model(fam, backbones, tmp_path):
    model, _, info = backbones[fam]
    method = _saved(PTConfig(num_tokens=N), fam, backbones, tmp_path / "prompt")
    out = export_peft(tmp_path / "prompt", tmp_path / "peft")
    assert sorted(p.name for p in out.iterdir()) == sorted([ADAPTER_CONFIG, ADAPTER_WEIGHTS, TASK_FILE])

    cfg = json.loads((out / ADAPTER_CONFIG).read_text())
    assert cfg["peft_type"] == "PROMPT_TUNING" and cfg["num_transformer_submodules"] == 1
    assert cfg["task_type"] == ("SEQ_2_SEQ_LM" if info.is_seq2seq else "CAUSAL_LM")
    assert cfg["base_model_name_or_path"] == info.name_or_path and cfg["num_virtual_tokens"] == N
    assert cfg["token_dim"] == info.hidden_size and cfg["num_layers"] == info.num_layers
    weights = load_file(str(out / ADAPTER_WEIGHTS))
    assert list(weights) == [PEFT_KEY] and torch.equal(weights[PEFT_KEY], method.prompt.detach())

    peft_model = peft.PeftModel.from_pretrained(copy.deepcopy(model), str(out)).eval()
    assert torch.equal(peft_model.prompt_encoder["default"].embedding.weight.detach(), method.prompt.detach())
    ours = PromptedModel(copy.deepcopy(model), method, info.is_seq2seq).eval()
    ids, mask, labels = _batch(info.vocab_size)
    with torch.no_grad():
        if info.is_seq2seq:  # prompt on the encoder only; decoder logits (B, T, V) are compared
            a = ours(ids, mask, labels=labels)
            b = peft_model(input_ids=ids, attention_mask=mask, labels=labels)
            assert a.logits.shape == b.logits.shape == (3, labels.shape[1], info.vocab_size)
        else:  # both prepend N positions; the real tokens' logits are the last L positions
            lab = ids.masked_fill(mask == 0, -100)
            a = ours(ids, mask, labels=lab)
            b = peft_model(input_ids=ids, attention_mask=mask, labels=lab)
            assert a.logits.shape == b.logits.shape == (3, N + ids.shape[1], info.vocab_size)
            a_real, b_real = a.logits[:, N:][mask.bool()], b.logits[:, N:][mask.bool()]
            torch.testing.assert_close(a_real, b_real, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.loss, b.loss, atol=1e-5, rtol=0)
    # a different prompt really changes the output (the comparison is not vacuous)
    with torch.no_grad():
        base = model(input_ids=ids, attention_mask=mask, labels=labels if info.is_seq2seq else None).logits
    assert not torch.allclose(base, a.logits if info.is_seq2seq else a.logits[:, N:], atol=1e-3)


def test_non_pt_method_refused_in_one_line(backbones, tmp_path):
    _saved(DePTConfig(num_tokens=4, rank=2, max_length=16), "t5", backbones, tmp_path / "prompt")
    with pytest.raises(ValueError, match=r"method 'dept' has no Hugging Face PEFT equivalent: its low-rank") as e:
        export_peft(tmp_path / "prompt", tmp_path / "peft")
    assert "\n" not in str(e.value) and not (tmp_path / "peft").exists()


def test_corrupt_artifact_refused(backbones, tmp_path):
    _saved(PTConfig(num_tokens=N), "llama", backbones, tmp_path / "prompt")
    data = bytearray((tmp_path / "prompt" / TENSORS_FILE).read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "prompt" / TENSORS_FILE).write_bytes(bytes(data))
    with pytest.raises(PromptArtifactError, match="corrupt or truncated") as e:
        export_peft(tmp_path / "prompt", tmp_path / "peft")
    assert "\n" not in str(e.value) and not (tmp_path / "peft").exists()
    with pytest.raises(PromptArtifactError, match="lacks prompt_config.json"):
        export_peft(tmp_path / "nothing", tmp_path / "peft")


def test_exporting_onto_an_existing_file_is_one_line_and_leaves_it(backbones, tmp_path):
    _saved(PTConfig(num_tokens=N), "llama", backbones, tmp_path / "prompt")
    (tmp_path / "taken").write_text("mine")
    with pytest.raises(ValueError, match=r"cannot export to '.*taken': it is a file; expected a directory") as e:
        export_peft(tmp_path / "prompt", tmp_path / "taken")
    assert "\n" not in str(e.value) and (tmp_path / "taken").read_text() == "mine"
    with pytest.raises(ValueError, match=r"cannot create '.*taken/sub' for the adapter: Not a directory"):
        export_peft(tmp_path / "prompt", tmp_path / "taken" / "sub")
