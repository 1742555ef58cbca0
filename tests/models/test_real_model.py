"""Integration tests on the embedded SmolLM2-135M-Instruct against independent references:
a plain Hugging Face copy of the same weights, one full-sequence run, a naive uncached loop."""

import pytest
import torch
from conftest import assert_records_one_full_run, rel_err_per_position

import interp
from interp.generation.sampling import Sampler, SamplingConfig
from interp.models import check_kv_cache
from interp.models import hooks as H

pytestmark = pytest.mark.real_model
PROMPT = "earth revolve around"


@pytest.fixture(scope="module")
def sampled(smollm):
    return interp.generate(smollm, PROMPT, max_new_tokens=24, seed=0, top_p=0.95)


def test_dimensions(smollm):
    assert (smollm.n_layers, smollm.n_heads, smollm.d_model) == (30, 9, 576)
    assert smollm.cfg.n_key_value_heads == 3
    assert smollm.checksum.startswith("sha256:")


def test_recorded_activations_equal_one_full_run(smollm, sampled):
    assert sampled.provenance["engine"] == "direct"  # SmolLM2 runs without the bridge's cost
    # residuals reach ~2,700 in magnitude: z and the norm scale are held to the same
    # per-position bound
    assert_records_one_full_run(smollm, sampled, rel=1e-5)


def test_the_bridge_engine_records_the_same_run(smollm, sampled):
    bridge = interp.generate(smollm, PROMPT, max_new_tokens=24, seed=0, top_p=0.95, engine="bridge")
    assert bridge.provenance["engine"] == "bridge"
    assert bridge.token_ids.tolist() == sampled.token_ids.tolist()
    assert (bridge.token_logprobs - sampled.token_logprobs).abs().max() <= 1e-4
    for name in sampled.hook_names:
        got, want = sampled.activations[name], bridge.activations[name]
        if H.is_query_key(name):
            assert (got - want).abs().max() <= 1e-5, name
        else:
            assert rel_err_per_position(got, want) <= 1e-5, name


def test_logits_equal_plain_hugging_face(smollm, smollm_hf, sampled):
    ids = sampled.token_ids[None].to(smollm.device)
    with torch.no_grad():
        ours = smollm.bridge(ids, return_type="logits")[0].cpu()
        ref = smollm_hf(ids).logits[0].cpu()
    assert (ours - ref).abs().max() <= 1e-4
    ref_lp = ref.log_softmax(-1)
    p = sampled.prompt_len
    want = torch.stack([ref_lp[p - 1 + i, t] for i, t in enumerate(sampled.continuation_ids)])
    assert (sampled.token_logprobs - want).abs().max() <= 1e-4


def test_kv_cached_sampling_equals_uncached_sampling(smollm, smollm_hf, sampled):
    sampler = Sampler(SamplingConfig(top_p=0.95), seed=0)
    ids = torch.tensor(smollm.encode(PROMPT), device=smollm.device)
    for _ in range(sampled.n_generated):
        with torch.no_grad():
            logits = smollm_hf(ids[None]).logits[0, -1]
        ids = torch.cat([ids, torch.tensor([sampler.draw(logits)], device=ids.device)])
    assert ids.tolist() == sampled.token_ids.tolist()


def test_same_seed_same_text_different_seed_differs(smollm, sampled):
    again = interp.generate(smollm, PROMPT, max_new_tokens=24, seed=0, top_p=0.95, hooks=[])
    other = interp.generate(smollm, PROMPT, max_new_tokens=24, seed=1, top_p=0.95, hooks=[])
    assert again.continuation == sampled.continuation
    assert other.continuation != sampled.continuation


def test_kv_cached_step_matches_full_forward(smollm):
    """Catches transformers 5.24's broken cached forward (off by 20+) coming back."""
    assert check_kv_cache(smollm) < 5e-4


def test_smollm2_tokenizer_adds_no_bos(smollm, sampled):
    ids = smollm.tokenizer(PROMPT)["input_ids"]
    assert sampled.token_ids[: sampled.prompt_len].tolist() == ids
    assert ids[0] != smollm.tokenizer.bos_token_id


def test_the_cached_tokenizer_equals_the_one_in_the_gguf(smollm):
    """The cache's tokenizer_config.json lists the added tokens (see
    `interp.models.tokenizer.record_added_tokens`): the tokenizer it loads must be the
    GGUF's own."""
    from transformers import AutoTokenizer

    from interp import models
    from interp.models.embedded import embedded_weights_files

    (gguf,) = embedded_weights_files(models.EMBEDDED["smollm2-135m"])
    want = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    got = smollm.tokenizer
    assert "added_tokens_decoder" in got.init_kwargs
    assert str(got.added_tokens_decoder) == str(want.added_tokens_decoder)
    assert got.all_special_ids == want.all_special_ids
    assert (got.bos_token, got.eos_token, got.pad_token) == (
        want.bos_token,
        want.eos_token,
        want.pad_token,
    )
    texts = [
        PROMPT,
        "",
        "<|im_start|>user\nWhy does the earth revolve around the sun?<|im_end|>\n",
        " leading space, tabs\t\tand\n\nnewlines 12345 ünïcödé 日本語 😀",
        "<|endoftext|>after the end",
    ]
    for text in texts:
        assert got(text)["input_ids"] == want(text)["input_ids"], text
        ids = want(text)["input_ids"]
        assert got.decode(ids) == want.decode(ids), text


def test_the_cache_reads_as_from_pretrained_reads_it(smollm_hf):
    """`read_cached_model` (the loader's fast path) against transformers' `from_pretrained`
    of the same cache: every parameter and buffer, the tied output embedding."""
    from interp import models

    read = models.read_cached_model(models.cache_root() / "models" / "smollm2-135m")
    for kind in ("named_parameters", "named_buffers"):
        got = dict(getattr(read, kind)(remove_duplicate=False))
        want = dict(getattr(smollm_hf, kind)(remove_duplicate=False))
        assert got.keys() == want.keys()
        for name, tensor in want.items():
            assert torch.equal(got[name], tensor.to(got[name].device)), name
    assert read.lm_head.weight is read.model.embed_tokens.weight
    assert read.config.tie_word_embeddings and not read.training


def test_greedy_continuation_of_the_seed_prompt(smollm, smollm_hf):
    trace = interp.generate(smollm, PROMPT, max_new_tokens=8, temperature=0, hooks=[])
    ids = torch.tensor([smollm.encode(PROMPT)], device=smollm.device)
    ref = smollm_hf.generate(ids, max_new_tokens=8, do_sample=False, min_new_tokens=8)
    assert trace.token_ids.tolist() == ref[0].cpu().tolist()


def test_forced_continuation_scores_known_text(smollm, smollm_hf):
    trace = interp.generate(smollm, PROMPT, continuation=" the sun.")
    assert trace.continuation == " the sun."
    with torch.no_grad():
        ref = smollm_hf(trace.token_ids[None].to(smollm.device)).logits[0].log_softmax(-1).cpu()
    p = trace.prompt_len
    want = torch.stack([ref[p - 1 + i, t] for i, t in enumerate(trace.continuation_ids)])
    assert (trace.token_logprobs - want).abs().max() <= 1e-4
    assert trace.token_logprobs.sum() > -15  # a plausible completion, not noise


# ---- analyses on the embedded model -------------------------------------------------------


def test_logit_lens_equals_a_hand_computation_from_hugging_face(smollm, smollm_hf, sampled):
    from interp.analysis import logit_lens

    result = logit_lens(smollm, sampled)
    ids = sampled.token_ids[None].to(smollm.device)
    w_u = smollm_hf.lm_head.weight.double()
    with torch.no_grad():  # the unembedding in float64: the reference's own error stays small
        out = smollm_hf(ids, output_hidden_states=True)
        hidden = out.hidden_states  # inputs of the 30 blocks, then the final (normed) state
        per_layer = [smollm_hf.model.norm(h).double() @ w_u.T for h in hidden[:-1]]
        per_layer.append(hidden[-1].double() @ w_u.T)
    p, n = sampled.prompt_len, sampled.n_positions
    targets = sampled.token_ids[p:]
    final = per_layer[-1][0, p - 1 : n - 1].cpu().log_softmax(-1)
    for i, logits in enumerate(per_layer):
        lp = logits[0, p - 1 : n - 1].cpu().log_softmax(-1)
        want = lp.exp().gather(-1, targets[:, None])[:, 0]
        assert (result.target_probs[i] - want).abs().max() <= 1e-4, result.layers[i]
        kl = (final.exp() * (final - lp)).sum(-1)
        assert (result.kl[i] - kl).abs().max() <= 1e-3, result.layers[i]
        # ranks from float32 logits may differ from the float64 reference by a near-tie
        want_rank = (lp > lp.gather(-1, targets[:, None])).sum(-1) + 1
        assert (result.target_ranks[i] - want_rank).abs().max() <= 2, result.layers[i]
    assert result.kl[-1].abs().max() <= 1e-5


def test_attention_patterns_equal_hugging_face_eager(smollm, smollm_hf, sampled):
    with torch.no_grad():
        out = smollm_hf(sampled.token_ids[None].to(smollm.device), output_attentions=True)
    assert len(out.attentions) == smollm.n_layers
    for layer, ref in enumerate(out.attentions):
        got = sampled.activations[H.pattern(layer)]
        assert got.shape == (9, sampled.n_positions, sampled.n_positions)
        assert (got - ref[0].float().cpu()).abs().max() <= 1e-5, layer


@pytest.fixture(scope="module")
def roles(smollm):
    from interp.analysis import head_roles

    return head_roles(smollm, block_len=50, seed=0)


def test_repeated_random_tokens_show_induction(roles):
    # in-context copying: the second copy is far easier than the first, in every sequence
    assert roles.sequences == 16
    assert roles.loss_second_copy < 0.3 * roles.loss_first_copy
    assert bool((roles.second_copy_losses < 0.5 * roles.first_copy_losses).all())
    induction = roles.score("induction").flatten()
    strong = int((induction > 0.3).sum())
    assert 1 <= strong <= 20  # a small set of the 270 heads ...
    assert float(induction.max()) > 0.5  # ... clearly above the rest
    assert float(induction.median()) < 0.05


def test_previous_token_heads_attend_mostly_to_the_previous_position(smollm, roles):
    ((layer, head), score), *_ = roles.top("previous_token", 1)
    assert score > 0.5
    tokens = roles.probe_tokens  # [sequence, pos]
    with torch.no_grad():
        _, cache = smollm.bridge.run_with_cache(
            tokens.to(smollm.device), names_filter=H.pattern(layer)
        )
    pattern = cache[H.pattern(layer)][:, head].cpu()  # [sequence, q, k]
    most = pattern[:, 1:].argmax(-1)  # the key each query attends to most
    assert float((most == torch.arange(tokens.shape[1] - 1)).float().mean()) > 0.5


def test_direct_logit_attribution_sums_to_the_logit(smollm, smollm_hf, sampled):
    from interp.analysis import direct_logit_attribution

    result = direct_logit_attribution(smollm, sampled)
    with torch.no_grad():
        ref = smollm_hf(sampled.token_ids[None].to(smollm.device)).logits[0].float().cpu()
    p = sampled.prompt_len
    want = ref[p - 1 : -1].gather(-1, sampled.token_ids[p:, None])[:, 0]
    err = (result.total - want).abs()
    assert torch.all((err <= 1e-3) | (err <= 1e-5 * want.abs()))


# ---- ablations on the embedded model ------------------------------------------------------


def test_fast_sweep_equals_the_naive_loop_on_the_embedded_model(smollm):
    from naive import naive_sweep, per_head

    from interp.interventions import sweep

    short = interp.generate(smollm, PROMPT, max_new_tokens=8, seed=0)
    exact = sweep(smollm, short, "mean")
    heads = [(layer, head) for layer in range(30) for head in range(9)]
    naive = naive_sweep(smollm, short, per_head(smollm, short, heads, "mean"))
    err = (exact.delta - naive).abs()
    assert torch.all((err <= 1e-3) | (err <= 1e-5 * naive.abs())), float(err.max())


def test_regeneration_without_ablation_reproduces_the_trace(smollm, sampled):
    from interp.interventions import make_ablation, regenerate

    result = regenerate(smollm, sampled, make_ablation(smollm, sampled, [], "mean"))
    assert result.ablated.token_ids.tolist() == sampled.token_ids.tolist()
    assert result.first_divergence is None


def test_a_barely_moving_ablation_leaves_the_text_unchanged(smollm, sampled):
    from interp.interventions import ablation_effect, make_ablation, regenerate

    candidates = [make_ablation(smollm, sampled, [(20, h)], "mean") for h in range(9)]
    effects = [float(ablation_effect(smollm, sampled, a).kl.max()) for a in candidates]
    quiet = candidates[effects.index(min(effects))]
    assert min(effects) < 1e-3
    div = regenerate(smollm, sampled, quiet).first_divergence
    assert div is None or div >= 0.75 * sampled.n_generated


def test_ablating_induction_heads_breaks_in_context_copying(smollm, roles):
    """Olsson et al. 2022: the top induction heads carry the repeated half; five random heads
    (outside the strongest induction and previous-token heads) do not."""
    import random

    from interp.interventions import ablation_effect, make_ablation

    tokens = roles.probe_tokens[0].tolist()  # the first of the probe's sequences
    probe = interp.generate(smollm, tokens[:1], continuation=tokens[1:])
    o, n = roles.offset, roles.block_len
    second = list(range(o + n, o + 2 * n - 1))  # token_logprobs[j] scores probe token j + 1

    def loss_second_copy(heads):
        # the forced probe is the data here, not an answer: the mean covers all of it
        ablation = make_ablation(smollm, probe, heads, "mean", mean_over="all")
        effect = ablation_effect(smollm, probe, ablation)
        return float(-effect.ablated_logprobs[second].mean())

    baseline = loss_second_copy([])
    assert abs(baseline - float(roles.second_copy_losses[0])) < 1e-3
    top = loss_second_copy([h for h, _ in roles.top("induction", 5)])
    strong = {h for h, _ in roles.top("induction", 20) + roles.top("previous_token", 20)}
    pool = [(l_, h_) for l_ in range(30) for h_ in range(9) if (l_, h_) not in strong]
    rng = random.Random(0)
    random_rises = [loss_second_copy(rng.sample(pool, 5)) - baseline for _ in range(3)]
    assert top - baseline > 3.0
    assert top - baseline > 10 * max(max(random_rises), 0.1)
