"""kv="per-head" on a grouped-query model: every query head reads its own key and value input
(EAP-IG's and MIB's "ungrouped" graph). The reference is the same model written as multi-head
attention by hand, its key and value weights repeated per query head in Hugging Face, where
each query head has its own key and value input with no surgery at all."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import reference

import interp
from interp import metrics
from interp.circuits import circuit, evaluate_circuit
from interp.errors import InvalidSettingError
from interp.models.wrap import from_hf

PROMPT = "The earth revolves around the sun"
METRIC = metrics.logit_diff(40, 41)


@pytest.fixture(scope="module")
def twin(tiny_llama):
    """The tiny grouped-query Llama as multi-head attention: 4 KV heads, each query head's
    key and value weights its group's, repeated in the Hugging Face state dict."""
    from transformers import LlamaForCausalLM

    hf = reference(tiny_llama)
    config = copy.deepcopy(hf.config)
    groups = config.num_attention_heads // config.num_key_value_heads
    config.num_key_value_heads = config.num_attention_heads
    state = {}
    for name, value in hf.state_dict().items():
        if name.endswith(("k_proj.weight", "v_proj.weight")):
            per_kv = value.view(hf.config.num_key_value_heads, -1, value.shape[-1])
            value = per_kv.repeat_interleave(groups, dim=0).reshape(-1, value.shape[-1])
        state[name] = value.clone()
    mha = LlamaForCausalLM(config)
    mha.load_state_dict(state)
    return from_hf("tiny-llama-mha", mha.eval(), tiny_llama.tokenizer, device=tiny_llama.device)


def _pairs(model):
    clean = interp.generate(model, PROMPT, max_new_tokens=2, temperature=0)
    noise = interp.edit("embed", "noise", seed=3, scale=0.5)
    return clean, interp.record_under(model, clean, noise)


@pytest.mark.parametrize("method", ["eap", "eap-ig"])
def test_per_head_scores_equal_the_hand_ungrouped_models(tiny_llama, twin, method):
    clean, corrupted = _pairs(tiny_llama)
    t_clean, t_corrupted = _pairs(twin)
    assert torch.equal(clean.token_ids, t_clean.token_ids)
    ours = circuit(tiny_llama, clean, corrupted, metric=METRIC, method=method, kv="per-head")
    theirs = circuit(twin, t_clean, t_corrupted, metric=METRIC, method=method, kv="per-head")
    assert ours.graph.readers == theirs.graph.readers and ours.graph.n_edges == 110
    assert ours.corrupted_metric == pytest.approx(theirs.corrupted_metric, abs=1e-5)
    gap = abs(ours.clean_metric - ours.corrupted_metric)
    assert (ours.scores - theirs.scores).abs().max() <= 1e-4 * gap
    assert ours.scores.abs().max() > 0.05 * gap  # the comparison is not of zeros

    # a KV group's score is the sum of its query heads' own scores
    grouped = circuit(tiny_llama, clean, corrupted, metric=METRIC, method=method, kv="group")
    for r, site in enumerate(grouped.graph.readers):
        if site.kind != "kv_input":
            continue
        heads = [
            ours.graph.readers.index(interp.site(f"L{site.layer}H{h}.{site.input}"))
            for h in (2 * site.index, 2 * site.index + 1)
        ]
        summed = ours.scores[:, heads].sum(1)
        assert (grouped.scores[:, r] - summed).abs().max() <= 1e-4 * gap, site


def test_per_head_circuits_evaluate_as_the_hand_ungrouped_model(tiny_llama, twin):
    clean, corrupted = _pairs(tiny_llama)
    t_clean, t_corrupted = _pairs(twin)
    graph = circuit(tiny_llama, clean, corrupted, metric=METRIC, method="eap", kv="per-head").graph
    g = torch.Generator().manual_seed(0)
    kv_edges = [
        str(graph.edge(w, r))
        for w, r in graph.mask.nonzero().tolist()
        if graph.readers[r].input in ("k", "v")
    ]
    circuits = [
        graph.mask & (torch.rand(graph.mask.shape, generator=g) < 0.5),
        graph.included(None, drop=kv_edges[:1]),  # one head's own key edge, its group-mate kept
        torch.zeros_like(graph.mask),
        graph.mask.clone(),
    ]
    for keep in circuits:
        ours = evaluate_circuit(tiny_llama, clean, corrupted, keep, metric=METRIC, kv="per-head")
        theirs = evaluate_circuit(twin, t_clean, t_corrupted, keep, metric=METRIC, kv="per-head")
        assert ours.per_row == pytest.approx(theirs.per_row, abs=1e-4)
    assert ours.per_row == pytest.approx(ours.full, abs=1e-5)  # the full circuit: clean
    # one key edge of one query head alone moves the metric: the copies are really separate
    alone = graph.included(None, drop=kv_edges[:1])
    one = evaluate_circuit(tiny_llama, clean, corrupted, alone, metric=METRIC, kv="per-head")
    group_mate = kv_edges[0].replace("H0.", "H1.")
    both = graph.included(None, drop=[kv_edges[0], group_mate])
    pair = evaluate_circuit(tiny_llama, clean, corrupted, both, metric=METRIC, kv="per-head")
    assert abs(float(one.per_row[0] - pair.per_row[0])) > 1e-4


def test_a_key_edit_under_per_head_is_refused(tiny_llama):
    clean = interp.generate(tiny_llama, PROMPT, max_new_tokens=2, temperature=0)
    under = interp.record_under(tiny_llama, clean, interp.edit("blocks.1.attn.hook_k", "zero"))
    corrupted = interp.record_under(tiny_llama, under, interp.edit("embed", "noise", seed=1))
    with pytest.raises(InvalidSettingError, match="use kv='group'") as err:
        circuit(tiny_llama, under, corrupted, metric=METRIC, method="eap", kv="per-head")
    assert "\n" not in str(err.value)
    circuit(tiny_llama, clean, corrupted, metric=METRIC, method="eap", kv="per-head")
    with torch.no_grad():  # after ungrouped runs the model is as it was
        ids = clean.token_ids[None]
        ours, theirs = tiny_llama.bridge(ids), reference(tiny_llama)(ids).logits
    assert (ours - theirs).abs().max() < 1e-4
    assert tiny_llama.bridge.blocks[0].attn.k.original_component.weight.shape[0] == 16
