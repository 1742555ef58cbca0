"""The sampler against hand computation: exact frequencies, filters, seeds, bad logits."""

import math

import pytest
import torch

from interp.errors import InvalidSettingError, SamplingError
from interp.generation.sampling import Sampler, SamplingConfig, filtered_logprobs

LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])


def frequencies(config: SamplingConfig, n: int = 20_000, seed: int = 0) -> torch.Tensor:
    sampler = Sampler(config, seed)
    counts = torch.zeros(LOGITS.numel())
    for _ in range(n):
        counts[sampler.draw(LOGITS)] += 1
    return counts / n


def assert_matches(freq: torch.Tensor, probs: torch.Tensor, n: int = 20_000) -> None:
    # 5 standard errors of a binomial proportion: fails for a wrong distribution, not by chance
    se = torch.sqrt(probs * (1 - probs) / n)
    assert torch.all((freq - probs).abs() <= 5 * se + 1e-9), (freq, probs)


def test_gumbel_max_draw_matches_softmax_frequencies():
    assert_matches(frequencies(SamplingConfig()), LOGITS.softmax(-1))


def test_temperature_frequencies():
    assert_matches(frequencies(SamplingConfig(temperature=0.5)), (LOGITS / 0.5).softmax(-1))


def test_top_k_renormalises_over_the_k_best():
    probs = torch.zeros(6)
    probs[:3] = LOGITS[:3].softmax(-1)
    freq = frequencies(SamplingConfig(top_k=3))
    assert freq[3:].sum() == 0
    assert_matches(freq, probs)


def test_top_p_keeps_the_smallest_set_reaching_p():
    p = LOGITS.softmax(-1)  # 0.557, 0.205, 0.124, ...
    # p=0.7: the first token alone (0.557) is short of 0.7, the first two reach it
    lp = filtered_logprobs(LOGITS, SamplingConfig(top_p=0.7))
    assert torch.isfinite(lp).tolist() == [True, True, False, False, False, False]
    expected = torch.zeros(6)
    expected[:2] = p[:2] / p[:2].sum()
    assert torch.allclose(lp.exp(), expected, atol=1e-6)
    assert_matches(frequencies(SamplingConfig(top_p=0.7)), expected)
    # p smaller than the top token's mass keeps exactly one token
    assert torch.isfinite(filtered_logprobs(LOGITS, SamplingConfig(top_p=0.1))).sum() == 1


def test_top_k_then_top_p_order():
    lp = filtered_logprobs(LOGITS, SamplingConfig(temperature=2.0, top_k=4, top_p=0.5))
    scaled = (LOGITS[:4] / 2.0).softmax(-1)  # after top-k, before top-p
    keep = (torch.cumsum(scaled, 0) - scaled) < 0.5
    assert torch.isfinite(lp[:4]).tolist() == keep.tolist()
    assert not torch.isfinite(lp[4:]).any()


def test_temperature_zero_is_greedy_and_still_advances_the_noise():
    greedy = Sampler(SamplingConfig(temperature=0), seed=3)
    assert {greedy.draw(LOGITS) for _ in range(50)} == {0}
    # one noise vector per step whatever the settings: the generators stay in lockstep
    a, b = Sampler(SamplingConfig(temperature=0), 7), Sampler(SamplingConfig(), 7)
    a.draw(LOGITS)
    b.draw(LOGITS)
    assert torch.equal(a.noise(10), b.noise(10))


def test_same_seed_same_draws_different_seed_differs():
    def draws(seed: int) -> list[int]:
        sampler = Sampler(SamplingConfig(), seed)
        return [sampler.draw(LOGITS) for _ in range(30)]

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)


def test_draw_does_not_touch_the_global_rng():
    state = torch.get_rng_state()
    Sampler(SamplingConfig(), 0).draw(LOGITS)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": -0.1},
        {"temperature": math.nan},
        {"top_k": 0},
        {"top_p": 0.0},
        {"top_p": 1.5},
    ],
)
def test_invalid_settings_are_refused(kwargs):
    with pytest.raises(InvalidSettingError):
        SamplingConfig(**kwargs)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_logits_are_an_error_not_a_renormalisation(bad):
    logits = LOGITS.clone()
    logits[2] = bad
    with pytest.raises(SamplingError, match="non-finite"):
        Sampler(SamplingConfig(), 0).draw(logits)


def test_all_masked_logits_are_an_error():
    with pytest.raises(SamplingError, match="probability zero"):
        Sampler(SamplingConfig(), 0).draw(torch.full((5,), -math.inf))
