"""Path patching: into heads' inputs against TransformerLens's `get_act_patch_direct_path`
(and its mechanism by hand for several receivers), into the logits against a plain Hugging Face
forward with the sender's write added to the final norm's input, on both tiny layouts."""

import pytest
import torch
from conftest import reference
from test_interventions import hf_run, site_module
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
    assert both.receivers == "logits" and both["path"].top(1)[0][0].startswith("L")


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
