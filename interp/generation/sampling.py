"""Logits -> next token: temperature, top-k, top-p, and an exact Gumbel-max draw.

The draw is `argmax(filtered_logprobs + g)` with `g` one vector of standard Gumbel noise per
step from the run's own `torch.Generator`. That is an exact sample from the filtered
distribution, and the noise does not depend on the distribution: two runs with the same seed
(one of them with heads ablated, say) see the same noise at every step, so where their tokens
differ, the distributions made them differ, not the sampler.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InvalidSettingError, SamplingError

MIN_TEMPERATURE = 1e-6  # logits / T must stay finite in float32


@dataclass(frozen=True)
class SamplingConfig:
    """How each next token is chosen. `temperature=0` is greedy (argmax)."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        t, k, p = self.temperature, self.top_k, self.top_p
        if isinstance(t, bool) or not isinstance(t, (int, float)):
            raise InvalidSettingError(f"temperature must be a number, got {type(t).__name__}")
        if math.isnan(t) or t < 0:
            raise InvalidSettingError(f"temperature must be >= 0, got {t}")
        if math.isinf(t):
            raise InvalidSettingError(f"temperature must be finite, got {t}")
        if 0 < t < MIN_TEMPERATURE:
            raise InvalidSettingError(
                f"temperature must be 0 (greedy) or at least {MIN_TEMPERATURE:g} (smaller "
                f"values overflow the logits), got {t:g}"
            )
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise InvalidSettingError(f"top-k must be >= 1, got {k}")
        if p is not None and (isinstance(p, bool) or not (0 < p <= 1)):
            raise InvalidSettingError(f"top-p must be in (0, 1], got {p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict:
        return asdict(self)


def check_finite(logits: Tensor) -> None:
    """Refuse NaN or +inf logits: there is no honest distribution to sample from."""
    if torch.isnan(logits).any() or torch.isposinf(logits).any():
        raise SamplingError(
            "the model produced non-finite logits (NaN or +inf); a hook or the weights "
            "broke the forward pass"
        )
    if torch.isneginf(logits).all():
        raise SamplingError("every token has probability zero (all logits are -inf)")


def filtered_logprobs(
    logits: Float[Tensor, " vocab"], config: SamplingConfig
) -> Float[Tensor, " vocab"]:
    """Log-probabilities after temperature, top-k and top-p (masked tokens get -inf).

    Order as in Hugging Face: temperature, then top-k, then top-p. Top-p keeps the smallest
    set of most likely tokens whose probability reaches p (always at least one token).
    """
    check_finite(logits)
    logits = logits.float()
    if config.greedy:
        # Temperature 0 is the limit of a point mass on the argmax.
        out = torch.full_like(logits, -math.inf)
        out[logits.argmax()] = 0.0
        return out
    logprobs = torch.log_softmax(logits / config.temperature, dim=-1)
    if config.top_k is not None and config.top_k < logprobs.numel():
        kth = torch.topk(logprobs, config.top_k).values[-1]
        logprobs = logprobs.masked_fill(logprobs < kth, -math.inf)
    if config.top_p is not None and config.top_p < 1:
        sorted_lp, order = torch.sort(logprobs, descending=True)
        probs = sorted_lp.exp()
        before = torch.cumsum(probs, dim=-1) - probs  # mass strictly above each token
        drop_sorted = before >= config.top_p
        drop_sorted[0] = False
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
        logprobs = logprobs.masked_fill(drop, -math.inf)
    logprobs = torch.log_softmax(logprobs, dim=-1)
    if torch.isnan(logprobs).any():
        raise SamplingError("sampling filters removed every token")
    return logprobs


class Sampler:
    """Draws tokens from logits with its own seeded generator (never the global RNG).

    Noise is drawn on the CPU in float64 and then moved, so the same seed gives the same
    tokens on any device.
    """

    def __init__(self, config: SamplingConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def noise(self, vocab_size: int) -> Float[Tensor, " vocab"]:
        """One vector of standard Gumbel noise; called exactly once per step."""
        u = torch.rand(vocab_size, generator=self.generator, dtype=torch.float64)
        return -torch.log(-torch.log(u))

    def draw(self, logits: Float[Tensor, " vocab"]) -> int:
        """Sample one token id. Advances the generator by one noise vector, also when greedy."""
        logprobs = filtered_logprobs(logits, self.config)
        gumbel = self.noise(logprobs.numel()).to(logprobs.device)
        return int(torch.argmax(logprobs.double() + gumbel))
