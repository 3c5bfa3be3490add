"""The plugin contract, checked for every registered method on both backbone families."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from pipeline import methods
from pipeline.artifact import load_prompt, save_prompt
from pipeline.config import ExperimentConfig, apply_overrides
from pipeline.data.builtin import get_task, task_from
from pipeline.data.encode import Encoder, Encoding, collate
from pipeline.data.sources import load_examples, with_data_labels
from pipeline.evaluation.score import evaluate
from pipeline.methods.base import Choice, PromptBatch, count_trainable
from pipeline.model.backbone import embedding_rows
from pipeline.model.prompted import PromptedModel
from tests.conftest import FIXTURES

FAMILIES = ["llama", "t5"]
EXAMPLES = [{"sentence": "a gripping , funny film", "label": 1}, {"sentence": "dull", "label": 0},
            {"sentence": "the plot is a long , predictable mess of scenes", "label": 0}]


TASKS = ["sst2", "intents", "d2t"]  # a built-in task, a user classification task, a user generation task


def _task_rows(task: str):
    """(Task with its label set, training rows, validation examples) of one of TASKS."""
    if task == "sst2":
        return get_task("sst2"), EXAMPLES, EXAMPLES
    fixture = FIXTURES / ("intents_tiny" if task == "intents" else "d2t_tiny")
    ext = "csv" if task == "intents" else "jsonl"
    t = with_data_labels(task_from(str(fixture / "task.yaml")), str(fixture / f"train.{ext}"))
    return (t, load_examples(t, "train", str(fixture / f"train.{ext}"))[:4],
            load_examples(t, "validation", str(fixture / f"validation.{ext}"))[:3])


def _batch(tok, info, task: str = "sst2"):
    enc = Encoder(tok, info.is_seq2seq, Encoding(64, 32, " Label :"))
    t, rows, _ = _task_rows(task)
    return collate(enc.examples(t, rows), tok.pad_token_id)


def _build(name, backbone, seed=0):
    model, tok, info = backbone
    cfg = methods.config_class(name)()
    return methods.build(cfg, info, embedding_rows(model), seed=seed), cfg


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", methods.names())
def test_shapes_masks_labels(name, family, task, backbones):
    model, tok, info = backbones[family]
    method, cfg = _build(name, backbones[family])
    b = _batch(tok, info, task)
    emb = model.get_input_embeddings()(b["input_ids"])
    labels = None if info.is_seq2seq else b["labels"]
    out = method(PromptBatch(emb, b["attention_mask"], labels))
    n = method.num_virtual_tokens(cfg)
    bsz, length, d = emb.shape
    assert out.inputs_embeds.shape == (bsz, length + n, d)
    assert out.inputs_embeds.dtype == emb.dtype
    assert torch.equal(out.attention_mask[:, n:], b["attention_mask"]) and bool((out.attention_mask[:, :n] == 1).all())
    if labels is None:
        assert out.labels is None
    else:
        assert torch.equal(out.labels[:, n:], labels) and bool((out.labels[:, :n] == -100).all())


@pytest.mark.parametrize("task", ["intents", "d2t"])
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", methods.names())
def test_every_method_evaluates_a_user_task(name, family, task, backbones):
    """Rank classification over the data's label words, or decoding scored against every reference: the methods
    are task-agnostic (DePT/EPT end-aligned offsets and LAMP's pooling see the same batches either way)."""
    model, tok, info = backbones[family]
    method, _ = _build(name, backbones[family])
    t, _, val = _task_rows(task)
    enc = Encoder(tok, info.is_seq2seq, Encoding(64, 32, " Label :"))
    metrics = evaluate(PromptedModel(model, method, info.is_seq2seq).eval(), enc, t, val, 2, torch.device("cpu"))
    assert {f"val_{m}" for m in t.metrics} | {"val_loss"} == set(metrics)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", methods.names())
def test_param_count_matches_paper(name, family, backbones):
    method, cfg = _build(name, backbones[family])
    info = backbones[family][2]
    assert count_trainable(method) == method.paper_param_count(cfg, info) > 0


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", methods.names())
def test_step_changes_only_method_params(name, family, task, backbones):
    model, tok, info = backbones[family]
    model = copy.deepcopy(model)
    method, _ = _build(name, (model, tok, info))
    pm = PromptedModel(model, method, info.is_seq2seq)
    backbone_before = {k: v.clone() for k, v in model.state_dict().items()}
    method_before = {k: v.clone() for k, v in method.state_dict().items()}
    opt = torch.optim.AdamW(method.param_groups(), weight_decay=0.0)  # no decay: only gradients move tensors
    for _ in range(2):  # zero-initialised up-maps (B, W2, U_k) move first, the factors behind them on step 2
        opt.zero_grad()
        loss = pm(**_batch(tok, info, task)).loss
        assert torch.isfinite(loss)
        loss.backward()
        assert all(p.grad is None for p in model.parameters()), "backbone must stay frozen"
        assert all(p.grad is not None for p in method.parameters() if p.requires_grad)
        opt.step()
    assert all(torch.equal(v, backbone_before[k]) for k, v in model.state_dict().items())
    still = [k for k, v in method.state_dict().items() if torch.equal(v, method_before[k])]
    assert not still, f"parameters that two steps did not move: {still}"
    group_params = {id(p) for g in method.param_groups() for p in g["params"]}
    assert group_params == {id(p) for p in method.parameters() if p.requires_grad}
    assert all("lr" in g for g in method.param_groups())
    # every group says how its tensors scale with the embeddings (pipeline.methods.units)
    assert all(g.get("rms_power") in (-1, 0, 1) for g in method.param_groups())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", methods.names())
def test_save_load_identical_outputs(name, family, backbones, tmp_path):
    model, tok, info = backbones[family]
    method, cfg = _build(name, backbones[family], seed=3)
    with torch.no_grad():  # move away from init so a silently re-initialised load would differ
        for p in method.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    save_prompt(tmp_path, cfg, method.state_dict(), info, "sst2")
    loaded, meta = load_prompt(tmp_path, info)
    assert meta["method"] == name and meta["task"]["name"] == "sst2"
    batch = _batch(tok, info)
    method.eval(), loaded.eval()
    with torch.no_grad():
        a = PromptedModel(model, method, info.is_seq2seq)(**batch).logits
        b = PromptedModel(model, loaded, info.is_seq2seq)(**batch).logits
    assert torch.equal(a, b)
    assert dataclasses.asdict(loaded.cfg) == dataclasses.asdict(cfg)


@pytest.mark.parametrize("name", methods.names())
def test_search_space_keys_are_valid_config_paths(name):
    spec = methods.get(name)
    space = spec.module_cls.search_space()
    assert space
    base = {"method": {"name": name}}
    for key, dist in space.items():
        value = dist.values[-1] if isinstance(dist, Choice) else dist.hi
        cfg = ExperimentConfig.from_dict(apply_overrides(base, {key: value}))
        section, _, field = key.partition(".")
        target = cfg.method if section == "method" else getattr(cfg, section)
        assert getattr(target, field) == value


@pytest.mark.parametrize("name", methods.names())
def test_is_a_prompt_method_and_exports_to_peft_or_says_why(name, backbones):
    """Every method is a PromptMethod; PEFT export is a capability: the (n, d) prompt itself, or one line naming the
    method and why it has no PEFT equivalent."""
    from pipeline.methods.base import PromptMethod

    method, cfg = _build(name, backbones["llama"])
    assert isinstance(method, PromptMethod) and method.method_name == name and method.cfg is cfg
    try:
        table = method.peft_prompt()
    except ValueError as e:
        assert str(e).startswith(f"method {name!r} has no Hugging Face PEFT equivalent: ") and "\n" not in str(e)
        assert type(method).no_peft != PromptMethod.no_peft  # its own reason, not the generic one
        return
    assert table.shape == (method.num_virtual_tokens(cfg), backbones["llama"][2].hidden_size)
    assert any(table is p for p in method.parameters())  # the trained tensor itself, not a copy
