"""The one way to measure: `measure` replays each run under its own intervention, then applies
the one given, and scores every row; checked against a Hugging Face forward by hand (a run
recorded under seeded noise, a head zeroed on top), and KL(p||q) against its definition."""

import math

import pytest
import torch
from conftest import hf_logits, reference
from hf_reference import continuation_lp, noised_embeddings

import interp
from interp.edits import edit, span
from interp.generation.generate import record_under
from interp.interventions import measure
from interp.interventions.metrics import kl_divergence

PROMPT = "The Eiffel Tower is in the city of"
SEED = 3
NOISE = edit("hook_embed", "noise", positions=span("Eiffel Tower"), seed=SEED)


def zero_head(hf, layer, head):
    """A pre-hook on the output projection zeroing head `head`'s output in `layer`."""
    d = hf.config.hidden_size // hf.config.num_attention_heads

    def fn(module, args):
        x = args[0].clone()
        x[0, :, head * d : (head + 1) * d] = 0.0
        return (x,)

    return hf.model.layers[layer].self_attn.o_proj, fn


def test_measure_replays_each_run_then_applies_the_intervention_as_hugging_face_by_hand(
    tiny_llama,
):
    clean = interp.generate(tiny_llama, PROMPT, max_new_tokens=3, temperature=0)
    noised = record_under(tiny_llama, clean, NOISE)
    hf = reference(tiny_llama)
    embed = noised_embeddings(hf, NOISE, noised, SEED)
    zero = zero_head(hf, 1, 2)
    ids = noised.token_ids
    base_logits = hf_logits(hf, ids, [embed]).float()
    moved_logits = hf_logits(hf, ids, [embed], [zero]).float()
    zeroed = edit("blocks.1.attn.hook_z", "zero", heads=[2])

    base = measure(tiny_llama, noised)  # the log-prob, under the noise it was recorded under
    moved = measure(tiny_llama, noised, "logprob", zeroed)
    assert float(base.values[0]) == pytest.approx(
        float(continuation_lp(noised, base_logits).sum()), abs=2e-4
    )
    assert float(moved.values[0]) == pytest.approx(
        float(continuation_lp(noised, moved_logits).sum()), abs=2e-4
    )
    # the logits it read are kept: every position, and the window from the metric's start
    torch.testing.assert_close(moved.logits[0].float(), moved_logits, atol=2e-4, rtol=1e-4)
    assert moved.window.shape[1] == noised.n_positions - moved.bound.start

    # KL from the run as recorded (the default baseline), the mean over the continuation
    p, n = noised.prompt_len, noised.n_positions
    lp, lq = (x[p - 1 : n - 1].log_softmax(-1) for x in (base_logits, moved_logits))
    by_hand = float((lp.exp() * (lp - lq)).sum(-1).mean())
    kl = measure(tiny_llama, noised, "kl", zeroed)
    assert float(kl.values[0]) == pytest.approx(by_hand, abs=1e-5)
    assert float(measure(tiny_llama, noised, "kl").values[0]) == 0.0


def test_kl_divergence_is_its_definition_and_never_below_zero():
    p = torch.tensor([[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]]).log()
    q = torch.tensor([[0.25, 0.5, 0.25], [1 / 3, 1 / 3, 1 / 3]]).log()
    want = 0.5 * math.log(2) + 0.25 * math.log(0.5)
    got = kl_divergence(p, q)
    assert float(got[0]) == pytest.approx(want, abs=1e-7)
    assert float(got[1]) == 0.0
