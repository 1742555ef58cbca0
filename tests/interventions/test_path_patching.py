"""Path patching: into heads' inputs against TransformerLens's `get_act_patch_direct_path`
(and its mechanism by hand for several receivers), into the logits against a plain Hugging Face
forward with the sender's write added to the final norm's input, on both tiny layouts."""

import pytest
import torch
from conftest import hf_logits, reference
from hf_reference import hf_run, site_module
from transformer_lens import patching as tl_patching

import interp
from interp import metrics
from interp.errors import InvalidSettingError
from interp.interventions.path_patching import path_patch

A, D = 40, 41


@pytest.fixture
def pair(tiny):
    clean = interp.generate(tiny, "The earth revolves around the", max_new_tokens=1, temperature=0)
    ids = [(i + 11) % tiny.d_vocab for i in clean.token_ids[: clean.prompt_len].tolist()]
    corrupted = interp.generate(tiny, ids, continuation=clean.continuation_ids)
    return clean, corrupted


def tl_metric(clean):
    last = clean.prompt_len - 1
    return lambda logits: logits[0, last, A] - logits[0, last, D]


def runs(pair, direction):
    clean, corrupted = pair
    return (corrupted, clean) if direction == "denoise" else (clean, corrupted)


@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_into_one_query_equals_transformer_lens_direct_path(tiny, pair, direction):
    clean, corrupted = pair
    target, source = runs(pair, direction)
    metric = tl_metric(clean)
    with torch.no_grad():
        _, source_cache = tiny.bridge.run_with_cache(source.token_ids[None])
        _, target_cache = tiny.bridge.run_with_cache(target.token_ids[None])
        base = float(metric(tiny.bridge(target.token_ids[None])))
    kinds = "qkv" if tiny.name == "tiny-gpt2" else "q"  # GQA has no per-head keys or values
    for kind in kinds:
        for receiver in range(tiny.n_heads):
            got = path_patch(
                tiny, clean, corrupted, receivers=f"L1H{receiver}.{kind}",
                metric=metrics.logit_diff(A, D), direction=direction,
            )["path"]  # fmt: skip
            with torch.no_grad():
                want = torch.stack([
                    tl_patching.get_act_patch_direct_path(
                        tiny.bridge, target.token_ids[None], source_cache, target_cache, metric,
                        0, sender, kind, verbose=False,
                    )[1, receiver]
                    for sender in range(tiny.n_heads)
                ]).float()  # fmt: skip
            assert (want - base).abs().max() > 1e-7  # the paths carry an effect to compare
            torch.testing.assert_close(got.effect[0] + base, want, atol=1e-6, rtol=1e-4)
            assert torch.all(got.effect[1] == 0)  # the receivers' own layer: no path


def test_into_several_receivers_equals_their_inputs_moved_together(tiny, pair):
    """TransformerLens's mechanism by hand: the sender's delta added to two receivers' own
    query inputs in one run of the corrupted input."""
    clean, corrupted = pair
    metric = tl_metric(clean)
    got = path_patch(
        tiny, clean, corrupted, receivers="L1H0.q,L1H2.q", metric=metrics.logit_diff(A, D)
    )["path"]
    bridge = tiny.bridge
    with torch.no_grad():
        _, clean_cache = bridge.run_with_cache(clean.token_ids[None])
        _, bad_cache = bridge.run_with_cache(corrupted.token_ids[None])
        base = float(metric(bridge(corrupted.token_ids[None])))
    for sender in range(tiny.n_heads):
        w_o = bridge.blocks[0].attn.W_O[sender]
        z = "blocks.0.attn.hook_z"
        delta = clean_cache[z][:, :, sender] @ w_o - bad_cache[z][:, :, sender] @ w_o

        def add(x, hook, delta=delta):
            x = x.clone()
            x[:, :, [0, 2]] += delta[:, :, None]
            return x

        saved = bridge.cfg.use_split_qkv_input
        bridge.set_use_split_qkv_input(True)
        try:
            with torch.no_grad():
                logits = bridge.run_with_hooks(
                    corrupted.token_ids[None], fwd_hooks=[("blocks.1.attn.hook_q_input", add)]
                )
        finally:
            bridge.set_use_split_qkv_input(saved)
        assert float(got.effect[0, sender]) + base == pytest.approx(
            float(metric(logits)), abs=1e-6, rel=1e-4
        )


def final_norm(hf):
    return hf.transformer.ln_f if hasattr(hf, "transformer") else hf.model.norm


@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_into_the_logits_equals_the_write_added_before_the_final_norm(tiny, pair, direction):
    clean, corrupted = pair
    target, source = runs(pair, direction)
    hf = reference(tiny)
    last = clean.prompt_len - 1
    got = path_patch(
        tiny, clean, corrupted, receivers="logits", metric=metrics.logit_diff(A, D),
        direction=direction,
    )["path"]  # fmt: skip
    base_logits, _ = hf_run(hf, target.token_ids, "heads", 0, tiny.n_heads)
    base = float(base_logits[last, A] - base_logits[last, D])
    for layer in range(tiny.n_layers):
        proj = site_module(hf, "heads", layer)  # the output projection: heads merged in
        _, z_source = hf_run(hf, source.token_ids, "heads", layer, tiny.n_heads)
        _, z_target = hf_run(hf, target.token_ids, "heads", layer, tiny.n_heads)
        for head in range(tiny.n_heads):
            only = torch.zeros_like(z_source)
            only[:, head] = z_source[:, head] - z_target[:, head]
            with torch.no_grad():  # the projection is linear: the bias cancels
                delta = proj(only.flatten(-2)[None]) - proj(
                    torch.zeros_like(only).flatten(-2)[None]
                )

            def pre(module, args, delta=delta):
                return (args[0] + delta,)

            handle = final_norm(hf).register_forward_pre_hook(pre)
            try:
                with torch.no_grad():
                    logits = hf(target.token_ids[None]).logits[0].float()
            finally:
                handle.remove()
            want = float(logits[last, A] - logits[last, D]) - base
            assert abs(want) > 1e-8
            assert float(got.effect[layer, head]) == pytest.approx(want, abs=1e-5, rel=1e-4)


def test_a_run_into_itself_gives_zero_and_a_set_its_rows(tiny, pair):
    clean, corrupted = pair
    metric = metrics.logit_diff(A, D)
    for receivers in ("logits", "L1H1.q"):
        with pytest.raises(InvalidSettingError, match="same"):  # nothing to normalise by
            path_patch(tiny, clean, clean, receivers=receivers, metric=metric)
        rows = interp.TraceSet([corrupted, clean]), interp.TraceSet([clean, clean])
        same = path_patch(tiny, *rows, receivers=receivers, metric=metric)["path"]
        assert same.per_row[1].abs().max() < 1e-6  # the row patched into itself
    both = path_patch(
        tiny, interp.TraceSet([clean, clean]), interp.TraceSet([corrupted, clean]),
        receivers="logits", metric=metric,
    )  # fmt: skip
    one = path_patch(tiny, clean, corrupted, receivers="logits", metric=metric)
    torch.testing.assert_close(both["path"].per_row[0], one["path"].effect)
    torch.testing.assert_close(both["path"].effect, one["path"].effect / 2)
    assert both.receivers == "logits" and isinstance(both["path"].top(1)[0][0], interp.Head)


def test_bad_receivers_are_one_clear_error(tiny, pair):
    clean, corrupted = pair
    for spec, message in (
        ("L1H0", "unknown receiver"),
        ("L7H0.q", "out of range"),
        ("", "unknown receiver"),
        ("mlp", "unknown receiver"),
    ):
        with pytest.raises(InvalidSettingError, match=message):
            path_patch(tiny, clean, corrupted, receivers=spec, metric=metrics.logit_diff(A, D))
    if tiny.name == "tiny-llama":
        with pytest.raises(InvalidSettingError, match="grouped-query attention"):
            path_patch(tiny, clean, corrupted, receivers="L1H0.k", metric=metrics.logit_diff(A, D))


@pytest.mark.parametrize("kind", ["k", "v"])
def test_into_a_kv_group_of_a_grouped_query_model_equals_hugging_face_by_hand(tiny_llama, kind):
    """interp's own definition (TransformerLens refuses it): the sender's delta added to the
    KV group's copy of the key (value) input; every query head of the group recomputes."""
    model = tiny_llama
    clean = interp.generate(model, "The earth revolves around the", max_new_tokens=1, temperature=0)
    ids = [(i + 11) % model.d_vocab for i in clean.token_ids[: clean.prompt_len].tolist()]
    corrupted = interp.generate(model, ids, continuation=clean.continuation_ids)
    group = 1
    got = path_patch(
        model, clean, corrupted, receivers=f"L1.kv{group}.{kind}", metric=metrics.logit_diff(A, D)
    )
    assert got.receivers == f"L1.kv{group}.{kind}"
    hf = reference(model)
    block = hf.model.layers[1].self_attn
    proj = block.k_proj if kind == "k" else block.v_proj
    d = model.d_model // model.n_heads
    target = corrupted.token_ids  # denoise: the corrupted run, the clean write patched in
    with torch.no_grad():
        resid = hf(target[None], output_hidden_states=True).hidden_states[1][0]
    last = clean.prompt_len - 1

    def run(delta):
        with torch.no_grad():
            new = proj(hf.model.layers[1].input_layernorm(resid + delta))

        def fn(module, args, out):
            out = out.clone()
            out[0, :, group * d : (group + 1) * d] = new[:, group * d : (group + 1) * d]
            return out

        logits = hf_logits(hf, target, [(proj, fn)]).float()
        return float(logits[last, A] - logits[last, D])

    base = run(0.0)
    _, z_clean = hf_run(hf, clean.token_ids, "heads", 0, model.n_heads)
    _, z_corr = hf_run(hf, target, "heads", 0, model.n_heads)
    o_proj = hf.model.layers[0].self_attn.o_proj
    for head in range(model.n_heads):
        w_o = o_proj.weight[:, head * d : (head + 1) * d]
        delta = (z_clean[:, head] - z_corr[:, head]).float() @ w_o.T.float()
        want = run(delta) - base
        assert abs(want) > 1e-8
        assert float(got["path"].effect[0, head]) == pytest.approx(want, abs=1e-5, rel=1e-4)
    assert (got["path"].effect[1:] == 0).all()  # senders at the receiver's layer: no path


def test_a_kv_group_is_its_head_on_a_multi_head_model_and_named_on_a_grouped_one(tiny, pair):
    clean, corrupted = pair
    metric = metrics.logit_diff(A, D)
    if tiny.name == "tiny-gpt2":  # one KV head per query head: the group is the head
        by_group = path_patch(tiny, clean, corrupted, receivers="L1.kv2.v", metric=metric)
        by_head = path_patch(tiny, clean, corrupted, receivers="L1H2.v", metric=metric)
        torch.testing.assert_close(by_group["path"].effect, by_head["path"].effect)
        assert by_head.receivers == "L1H2.v"
    else:  # two query heads a group: H2's key input is its group's, kv1
        with pytest.raises(InvalidSettingError, match=r"its KV group's is L1\.kv1\.v"):
            path_patch(tiny, clean, corrupted, receivers="L1H2.v", metric=metric)
        with pytest.raises(InvalidSettingError, match="out of range"):
            path_patch(tiny, clean, corrupted, receivers="L1.kv2.v", metric=metric)


def test_into_an_mlp_input_equals_hugging_face_by_hand(tiny_llama):
    """The MLP recomputes from the target's residual after its block's attention plus the
    sender's write (senders in its own layer reach it too); the run goes on from there."""
    model = tiny_llama
    clean = interp.generate(model, "The earth revolves around the", max_new_tokens=1, temperature=0)
    ids = [(i + 11) % model.d_vocab for i in clean.token_ids[: clean.prompt_len].tolist()]
    corrupted = interp.generate(model, ids, continuation=clean.continuation_ids)
    got = path_patch(model, clean, corrupted, receivers="L1.mlp", metric=metrics.logit_diff(A, D))
    assert got.receivers == "L1.mlp"
    hf = reference(model)
    block = hf.model.layers[1]
    target, last = corrupted.token_ids, clean.prompt_len - 1
    seen = {}

    def take(module, args):
        seen["mid"] = args[0].detach().clone()  # the residual after the block's attention

    handle = block.post_attention_layernorm.register_forward_pre_hook(take)
    try:
        with torch.no_grad():
            hf(target[None])
    finally:
        handle.remove()

    def run(delta):
        with torch.no_grad():
            new = block.mlp(block.post_attention_layernorm(seen["mid"] + delta))

        logits = hf_logits(hf, target, [(block.mlp, lambda module, args, out: new)]).float()
        return float(logits[last, A] - logits[last, D])

    base = run(0.0)
    d = model.d_model // model.n_heads
    for layer in range(model.n_layers):  # layer 1's heads write into layer 1's MLP too
        _, z_clean = hf_run(hf, clean.token_ids, "heads", layer, model.n_heads)
        _, z_corr = hf_run(hf, target, "heads", layer, model.n_heads)
        o_proj = hf.model.layers[layer].self_attn.o_proj
        for head in range(model.n_heads):
            w_o = o_proj.weight[:, head * d : (head + 1) * d]
            delta = (z_clean[:, head] - z_corr[:, head]).float() @ w_o.T.float()
            want = run(delta[None]) - base
            assert abs(want) > 1e-8
            assert float(got["path"].effect[layer, head]) == pytest.approx(want, abs=1e-5, rel=1e-4)
    both = path_patch(
        model, clean, corrupted, receivers="L1.mlp,L1H0.q", metric=metrics.logit_diff(A, D)
    )
    assert both.receivers == "L1.mlp,L1H0.q"
    # a sender in layer 1 reaches the MLP and no query of its own layer: the same effect
    torch.testing.assert_close(both["path"].effect[1], got["path"].effect[1])
