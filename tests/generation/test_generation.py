"""The recording loop on tiny random models of both attention layouts, against independent
references: one full-sequence run_with_cache, the plain Hugging Face forward, a naive loop."""

import pytest
import torch
from conftest import reference

import interp
from interp.errors import HookError, InvalidSettingError, SamplingError
from interp.generation.sampling import Sampler, SamplingConfig
from interp.models import hooks as H


def full_run(model, token_ids, names):
    with torch.no_grad():
        _, cache = model.bridge.run_with_cache(
            token_ids[None].to(model.device), names_filter=lambda n: n in set(names)
        )
    return {n: cache[n][0].cpu() for n in names}


def hf_logits(model, token_ids):
    """Logits of the bare Hugging Face model underneath the bridge, hooks not involved."""
    hf = reference(model)
    with torch.no_grad():
        return hf(token_ids[None].to(model.device)).logits[0].float().cpu()


def assert_resid_close(a, b, rtol=1e-5):
    """Per-position relative tolerance (the residual stream's scale grows with depth)."""
    scale = b.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    rel = ((a - b).norm(dim=-1, keepdim=True) / scale).max()
    assert rel <= rtol, f"relative difference {rel:.2e}"


def every_served_hook(n_layers):
    """The default hooks plus every other hook name the direct engine serves."""
    extra = [f(layer) for layer in range(n_layers) for f in (H.resid_post, H.attn_out, H.mlp_out)]
    return list(dict.fromkeys(H.default_hooks(n_layers) + extra))


@pytest.mark.parametrize("engine", ["auto", "bridge"])
def test_recorded_activations_equal_one_full_run(tiny, engine):
    hooks = every_served_hook(tiny.n_layers)
    trace = interp.generate(
        tiny, "The earth revolves", max_new_tokens=12, seed=0, hooks=hooks, engine=engine
    )
    assert trace.n_generated == 12
    # both tiny layouts (GPT-2, Llama with grouped-query attention) run directly by default
    assert trace.provenance["engine"] == {"auto": "direct", "bridge": "bridge"}[engine]
    full = full_run(tiny, trace.token_ids, trace.hook_names)
    for name in trace.hook_names:
        got, want = trace.activations[name], full[name]
        assert got.shape == want.shape, name
        if H.is_query_key(name):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        else:
            assert_resid_close(got, want)


def test_both_engines_sample_the_same_tokens_with_the_same_statistics(tiny):
    runs = [
        interp.generate(tiny, "The sun", max_new_tokens=15, seed=4, top_k=20, engine=e)
        for e in ("direct", "bridge")
    ]
    direct, bridge = runs
    assert direct.token_ids.tolist() == bridge.token_ids.tolist()
    torch.testing.assert_close(direct.token_logprobs, bridge.token_logprobs, atol=1e-5, rtol=0)
    assert direct.token_ranks.tolist() == bridge.token_ranks.tolist()


def _zero_head(head):
    def hook(z, hook):
        z = z.clone()
        z[:, :, head] = 0.0
        return z

    return hook


def test_edits_at_served_hooks_run_directly_and_match_the_bridge(tiny):
    """An ablation (an edited hook_z) gives the same run on both engines."""
    hooks = [(H.z(1), _zero_head(1)), (lambda n: n == H.resid_post(0), lambda t, hook: t * 0.5)]
    runs = [
        interp.generate(tiny, "The sun", max_new_tokens=10, seed=2, fwd_hooks=hooks, engine=e)
        for e in ("auto", "bridge")
    ]
    direct, bridge = runs
    assert direct.provenance["engine"] == "direct"
    assert direct.token_ids.tolist() == bridge.token_ids.tolist()
    torch.testing.assert_close(direct.token_logprobs, bridge.token_logprobs, atol=1e-5, rtol=0)
    assert torch.all(direct.activations[H.z(1)][:, 1] == 0)
    for name in direct.hook_names:
        if not H.is_query_key(name):
            assert_resid_close(direct.activations[name], bridge.activations[name])


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"hooks": ["blocks.0.attn.hook_q"]}, "a recorded hook the direct engine does not serve"),
        ({"fwd_hooks": [(H.pattern(0), lambda t, hook: t)]}, "an edit it cannot make"),
        ({"engine": "bridge"}, "asked for"),
    ],
)
def test_the_bridge_runs_what_the_direct_engine_cannot(tiny, kwargs, why):
    trace = interp.generate(tiny, "The sun", max_new_tokens=3, seed=0, **kwargs)
    assert trace.provenance["engine"] == "bridge", why


def test_an_unknown_engine_is_refused(tiny):
    with pytest.raises(InvalidSettingError, match="engine"):
        interp.generate(tiny, "The sun", max_new_tokens=2, engine="fast")


def test_default_hooks_are_recorded_with_whole_sequence_shapes(tiny):
    trace = interp.generate(tiny, "The earth", max_new_tokens=5, seed=0)
    n, L = trace.n_positions, tiny.n_layers
    assert trace.hook_names == H.default_hooks(L)
    assert trace.activations[H.resid_pre(0)].shape == (n, tiny.d_model)
    assert trace.activations[H.resid_post(L - 1)].shape == (n, tiny.d_model)
    assert trace.activations[H.pattern(1)].shape == (tiny.n_heads, n, n)
    assert trace.activations[H.z(1)].shape == (n, tiny.n_heads, tiny.cfg.d_head)
    assert trace.activations[H.FINAL_SCALE].shape == (n, 1)
    # causal: no attention to the future, rows sum to one
    pat = trace.activations[H.pattern(0)]
    assert torch.all(pat.triu(diagonal=1) == 0)
    torch.testing.assert_close(pat.sum(-1), torch.ones(tiny.n_heads, n))


def test_step_statistics_equal_hugging_face_logits(tiny):
    trace = interp.generate(tiny, "The moon", max_new_tokens=10, seed=3, top_alternatives=4)
    logits = hf_logits(tiny, trace.token_ids)
    p = trace.prompt_len
    for i, token in enumerate(trace.continuation_ids):
        row = logits[p - 1 + i]
        lp = row.log_softmax(-1)
        assert abs(float(trace.token_logprobs[i]) - float(lp[token])) < 1e-4
        assert int(trace.token_ranks[i]) == int((row > row[token]).sum()) + 1
        top = lp.topk(4)
        assert trace.top_ids[i].tolist() == top.indices.tolist()
        torch.testing.assert_close(trace.top_probs[i], top.values.exp(), atol=1e-5, rtol=0)


def test_kv_cached_sampling_equals_an_uncached_naive_loop(tiny):
    settings = {"temperature": 0.8, "top_k": 50, "top_p": 0.95}
    trace = interp.generate(tiny, "The earth", max_new_tokens=15, seed=11, **settings)
    sampler = Sampler(SamplingConfig(**settings), seed=11)
    ids = torch.tensor(tiny.encode("The earth"))
    for _ in range(15):  # the seed's loop: the whole sequence through the model every step
        ids = torch.cat([ids, torch.tensor([sampler.draw(hf_logits(tiny, ids)[-1])])])
    assert trace.token_ids.tolist() == ids.tolist()


def test_same_seed_same_tokens_and_different_seeds_differ(tiny):
    runs = [
        interp.generate(tiny, "The sun", max_new_tokens=12, seed=s, hooks=[]) for s in (5, 5, 6)
    ]
    assert runs[0].token_ids.tolist() == runs[1].token_ids.tolist()
    assert runs[0].token_ids.tolist() != runs[2].token_ids.tolist()


def test_temperature_zero_is_greedy(tiny):
    trace = interp.generate(tiny, "The sun", max_new_tokens=8, temperature=0, seed=1, hooks=[])
    assert trace.token_ranks.tolist() == [1] * 8


def test_seed_is_chosen_and_recorded_when_not_given(tiny):
    trace = interp.generate(tiny, "The sun", max_new_tokens=6, hooks=[])
    again = interp.generate(tiny, "The sun", max_new_tokens=6, seed=trace.settings.seed, hooks=[])
    assert isinstance(trace.settings.seed, int)
    assert trace.token_ids.tolist() == again.token_ids.tolist()


def test_tokenisation_follows_the_tokenizers_own_bos_convention(tiny):
    trace = interp.generate(tiny, "The earth", max_new_tokens=2, seed=0, hooks=[])
    expected = tiny.tokenizer("The earth")["input_ids"]
    assert trace.token_ids[: trace.prompt_len].tolist() == expected
    adds_bos = tiny.name == "tiny-llama"  # the fixture's llama tokenizer prepends <s>
    assert (expected[0] == tiny.tokenizer.bos_token_id) == adds_bos


def test_forced_continuation_records_the_given_tokens(tiny):
    trace = interp.generate(tiny, "The earth revolves around", continuation=" the sun.")
    given = tiny.encode(" the sun.", add_special_tokens=False)
    assert trace.continuation_ids == given
    assert trace.continuation == " the sun."
    assert trace.stop_reason == "forced" and trace.settings.seed is None
    logits = hf_logits(tiny, trace.token_ids).log_softmax(-1)
    want = torch.stack([logits[trace.prompt_len - 1 + i, t] for i, t in enumerate(given)])
    torch.testing.assert_close(trace.token_logprobs, want, atol=1e-4, rtol=0)
    full = full_run(tiny, trace.token_ids, [H.resid_pre(1)])
    assert_resid_close(trace.activations[H.resid_pre(1)], full[H.resid_pre(1)])


def _force_eos(model):
    def hook(logits, hook):
        logits[..., model.eos_token_id] = 1e4
        return logits

    return [("unembed.hook_out", hook)]


def test_generation_stops_at_eos_unless_told_to_go_on(tiny):
    trace = interp.generate(tiny, "The sun", max_new_tokens=6, seed=0, fwd_hooks=_force_eos(tiny))
    assert trace.continuation_ids == [tiny.eos_token_id] and trace.stop_reason == "eos"
    assert trace.activations[H.resid_pre(0)].shape[0] == trace.n_positions
    on = interp.generate(
        tiny, "The sun", max_new_tokens=6, seed=0, stop_at_eos=False, fwd_hooks=_force_eos(tiny)
    )
    assert on.n_generated == 6 and on.stop_reason == "max_new_tokens"


def test_user_hooks_act_on_every_step_and_are_recorded(tiny):
    def zero_head0(z, hook):
        z[:, :, 0] = 0.0
        return z

    trace = interp.generate(
        tiny, "The sun", max_new_tokens=5, seed=0, fwd_hooks=[(H.z(1), zero_head0)]
    )
    assert torch.all(trace.activations[H.z(1)][:, 0] == 0)
    assert not torch.all(trace.activations[H.z(0)][:, 0] == 0)
    # hooks are removed afterwards
    clean = interp.generate(tiny, "The sun", max_new_tokens=5, seed=0)
    assert not torch.all(clean.activations[H.z(1)][:, 0] == 0)


def test_each_step_records_only_its_new_position(tiny, monkeypatch):
    from interp.generation import recording as generation

    seen = {}
    original = generation._Recorder.assemble

    def spy(self, n_positions):
        seen.update({name: [part.shape for part in parts] for name, parts in self.parts.items()})
        return original(self, n_positions)

    monkeypatch.setattr(generation._Recorder, "assemble", spy)
    trace = interp.generate(tiny, "The earth revolves", max_new_tokens=7, seed=0)
    p = trace.prompt_len
    resid = seen[H.resid_pre(0)]
    assert [s[0] for s in resid] == [p] + [1] * 7
    pattern = seen[H.pattern(0)]  # [head, new_query, keys so far]
    assert [(s[1], s[2]) for s in pattern] == [(p, p)] + [(1, p + i + 1) for i in range(7)]


def test_non_finite_logits_after_a_user_hook_are_an_error(tiny):
    def nan(resid, hook):
        return resid * float("nan")

    with pytest.raises(SamplingError, match="non-finite"):
        interp.generate(tiny, "The sun", max_new_tokens=3, fwd_hooks=[(H.resid_pre(1), nan)])


@pytest.mark.parametrize(
    ("prompt", "kwargs", "message"),
    [
        ("", {}, "empty"),
        ("   ", {}, "empty"),
        ([5, 100_000], {}, "outside the vocabulary"),
        ([-1], {}, "outside the vocabulary"),
        ("The sun", {"max_new_tokens": 0}, ">= 1"),
        ("The sun", {"max_new_tokens": 500}, "context"),
        ("The sun", {"temperature": -1.0}, "temperature"),
        ("The sun", {"top_p": 0.0}, "top-p"),
        ("The sun", {"top_k": 0}, "top-k"),
        ("The sun", {"continuation": ""}, "empty"),
    ],
)
def test_bad_input_at_the_api(tiny, prompt, kwargs, message):
    with pytest.raises(InvalidSettingError, match=message):
        interp.generate(tiny, prompt, **kwargs)


def test_unknown_hook_is_refused(tiny):
    with pytest.raises(HookError, match="no site blocks.0.hook_nothing;"):
        interp.generate(tiny, "The sun", max_new_tokens=2, hooks=["blocks.0.hook_nothing"])


def test_prompt_as_token_ids(tiny):
    ids = tiny.encode("The earth")
    a = interp.generate(tiny, ids, max_new_tokens=4, seed=2, hooks=[])
    b = interp.generate(tiny, "The earth", max_new_tokens=4, seed=2, hooks=[])
    assert a.token_ids.tolist() == b.token_ids.tolist()
