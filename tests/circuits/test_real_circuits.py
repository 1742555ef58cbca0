"""Edge scores on the embedded model against a plain Hugging Face computation by hand: each
writer's output and the gradient at each reader's own copy of its input (an MLP's input
before its norm, the final norm's input), from PyTorch hooks on the Hugging Face modules."""

from __future__ import annotations

import pytest
import torch

import interp
from interp import metrics
from interp.circuits import circuit

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"


def _by_hand(hf, ids, answer, distractor, at, layers, n_heads):
    """(writers' outputs `{name: [pos, d]}`, gradients `{reader: [pos, d]}`) of one run."""
    model = hf.model
    outs, copies, handles = {}, {}, []

    def keep(name):
        return lambda m, a, out: outs.__setitem__(name, out.detach()[0])

    handles.append(model.embed_tokens.register_forward_hook(keep("embed")))
    for layer in layers:
        block = model.layers[layer]
        handles.append(block.mlp.register_forward_hook(keep(f"L{layer}.mlp")))

        def z_in(m, args, layer=layer):
            z = args[0].detach()[0]  # [pos, heads * d_head], the output projection's input
            d = z.shape[-1] // n_heads
            w = m.weight.detach()  # [d_model, heads * d_head]
            for h in range(n_heads):
                outs[f"L{layer}H{h}"] = z[:, h * d : (h + 1) * d] @ w[:, h * d : (h + 1) * d].T

        handles.append(block.self_attn.o_proj.register_forward_pre_hook(z_in))

        def own_copy(m, args, layer=layer):
            copy = args[0] * 1.0  # the MLP's own node: its gradient is the MLP's path alone
            copies[f"L{layer}.mlp"] = copy
            return (copy, *args[1:])

        handles.append(block.post_attention_layernorm.register_forward_pre_hook(own_copy))

    def final_copy(m, args):
        copy = args[0] * 1.0  # a node of its own, still downstream of every writer
        copies["logits"] = copy
        return (copy, *args[1:])

    handles.append(model.norm.register_forward_pre_hook(final_copy))
    try:
        with torch.enable_grad():
            logits = hf(ids).logits[0, at]
            value = logits[answer] - logits[distractor]
            names = list(copies)
            grads = torch.autograd.grad(value, [copies[n] for n in names])
    finally:
        for handle in handles:
            handle.remove()
    return outs, {n: g[0] for n, g in zip(names, grads, strict=True)}


def test_edges_into_mlps_and_the_logits_equal_hugging_face_by_hand(smollm, smollm_hf):
    clean = interp.generate(smollm, CLEAN, max_new_tokens=1, temperature=0)
    corrupted = interp.generate(smollm, CORRUPTED, max_new_tokens=1, temperature=0)
    ioi = metrics.logit_diff(" Mary", " John")
    scores = circuit(smollm, clean, corrupted, metric=ioi, method="eap")
    answer = metrics.single_token(smollm, " Mary")
    distractor = metrics.single_token(smollm, " John")
    layers = [0, 12, 23, 29]
    at = clean.prompt_len - 1
    n_heads = smollm.n_heads
    clean_out, grads = _by_hand(smollm_hf, clean.token_ids[None], answer, distractor, at,
                                layers, n_heads)  # fmt: skip
    corrupt_out, _ = _by_hand(smollm_hf, corrupted.token_ids[None], answer, distractor, at,
                              layers, n_heads)  # fmt: skip
    graph = scores.graph
    checked = 0
    for reader in ["L12.mlp", "L23.mlp", "L29.mlp", "logits"]:
        r = graph.readers.index(interp.site(reader))
        limit = 99 if reader == "logits" else int(reader[1:].split(".")[0])
        for writer in clean_out:
            w_layer = -1 if writer == "embed" else int(writer[1:].replace("H", ".").split(".")[0])
            if w_layer > limit or (w_layer == limit and ".mlp" in writer):
                continue
            want = float(((corrupt_out[writer] - clean_out[writer]) * grads[reader]).sum())
            got = float(scores.scores[graph.writers.index(interp.site(writer)), r])
            assert abs(got - want) <= 1e-3 * max(1.0, abs(want)), (writer, reader, got, want)
            checked += 1
    assert checked > 100


def test_gemma_node_circuits_and_curve_against_hugging_face(gemma, gemma_hf):
    """On Gemma 3 (no edges: post-attention norms), a node circuit without one head is the
    clean run with that head's output projection input taken from the corrupted run, done here
    with a pre-hook on Hugging Face's o_proj; all nodes and none are the two runs; the node
    curve reaches 1 with every node."""
    metric = metrics.logit_diff(" Mary", " John", model=gemma)
    clean = interp.generate(gemma, CLEAN, continuation=" Mary")
    corrupted = interp.generate(gemma, CORRUPTED, continuation=" Mary")
    nodes = interp.node_scores(gemma, clean, corrupted, metric=metric, method="eap")
    names = [str(node) for node in nodes.nodes]
    full, empty = nodes.evaluate(names), nodes.evaluate([])
    assert float(full[0]) == pytest.approx(nodes.clean_metric, abs=1e-3)
    assert float(empty[0]) == pytest.approx(nodes.corrupted_metric, abs=1e-3)
    assert abs(nodes.clean_metric - nodes.corrupted_metric) > 0.5
    layer, head = 5, 1
    got = float(nodes.evaluate([n for n in names if n != f"L{layer}H{head}"])[0])
    o_proj = gemma_hf.model.layers[layer].self_attn.o_proj
    d = o_proj.in_features // gemma.n_heads
    part = slice(head * d, (head + 1) * d)
    seen = {}
    handle = o_proj.register_forward_pre_hook(lambda m, a: seen.__setitem__("z", a[0].detach()))
    with torch.no_grad():
        gemma_hf(corrupted.token_ids[None])
    handle.remove()

    def patched(m, args):
        z = args[0].clone()
        z[..., part] = seen["z"][..., part]
        return (z, *args[1:])

    handle = o_proj.register_forward_pre_hook(patched)
    with torch.no_grad():
        logits = gemma_hf(clean.token_ids[None]).logits[0, clean.prompt_len - 1]
    handle.remove()
    answer, distractor = (gemma.encode(t, add_special_tokens=False)[0] for t in (" Mary", " John"))
    want = float(logits[answer] - logits[distractor])
    assert got == pytest.approx(want, abs=1e-3)
    assert abs(want - float(full[0])) > 1e-2  # the head moves the metric: the check can fail
    curve = nodes.curve(fractions=(0.1, 0.5, 1.0), seeds=1)
    assert curve.absolute.faithfulness[-1] == pytest.approx(1.0, abs=1e-3)
    assert curve.absolute.requested == [int(f * len(names)) for f in (0.1, 0.5, 1.0)]
