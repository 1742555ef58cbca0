"""Training a TopK sparse autoencoder (Gao et al. 2024) on CPU: Adam on the normalised
reconstruction error, the auxiliary loss that teaches dead latents to model the residual,
decoder rows kept at unit norm, the decoder bias started at the geometric median (or mean),
the learning rate falling linearly to zero over the end of a planned run.
Data comes in chunks; each chunk's shuffle depends only on its index, so a run resumed from a
checkpoint at a chunk boundary reaches the weights of an uninterrupted one."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from interp.dictionaries.dictionary import Dictionary
from interp.errors import InvalidSettingError
from interp.models.machine import available_memory

BiasInit = Literal["geometric_median", "mean"]
MEDIAN_SAMPLE = 16_384  # activations the geometric median is computed over


@dataclass(frozen=True)
class TrainSettings:
    """`width` latents, `k` active per token; `lr` None: 8e-4 / sqrt(width / 2^14), four
    times Gao et al.'s scaling, for the few thousand small steps a CPU budget affords (the
    choice is measured in docs/guides/features.md); with `planned_tokens`, the rate falls linearly
    to zero over the last `decay` of them; `dead_tokens`: a latent that has not fired for this
    many tokens is dead and gets the auxiliary loss (`aux_coef`, over the `aux_k` largest dead
    latents)."""

    width: int
    k: int
    batch: int = 512
    lr: float | None = None
    planned_tokens: int | None = None
    decay: float = 0.2
    aux_coef: float = 1 / 32
    aux_k: int | None = None  # default d_in // 2
    dead_tokens: int = 200_000
    b_dec_init: BiasInit = "geometric_median"
    seed: int = 0

    def check(self, d_in: int) -> None:
        for name in ("width", "k", "batch", "dead_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidSettingError(f"{name} must be a positive integer, got {value!r}")
        if self.k > self.width:
            raise InvalidSettingError(f"k ({self.k}) must be at most the width ({self.width})")
        if self.planned_tokens is not None and (
            isinstance(self.planned_tokens, bool)
            or not isinstance(self.planned_tokens, int)
            or self.planned_tokens < 1
        ):
            raise InvalidSettingError(
                f"planned_tokens must be a positive integer, got {self.planned_tokens!r}"
            )
        if not 0.0 <= self.decay <= 1.0:
            raise InvalidSettingError(f"decay is a fraction of the run, got {self.decay!r}")
        if self.b_dec_init not in ("geometric_median", "mean"):
            raise InvalidSettingError("b_dec_init is 'geometric_median' or 'mean'")
        need, have = self.training_bytes(d_in), available_memory()
        if have is not None and need > have:
            raise InvalidSettingError(
                f"training width {self.width:,} on {d_in} inputs needs about {need / 1e9:,.1f} "
                f"GB, more than the {have / 1e9:.1f} GB available; choose a smaller width"
            )

    def training_bytes(self, d_in: int) -> int:
        """About what training takes: both weight matrices with their gradients and Adam's
        two moments (8 copies of `d_in x width` floats), and a batch's activations."""
        return 4 * (8 * d_in * self.width + 6 * self.batch * self.width) + 8 * self.width

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else 8e-4 / math.sqrt(self.width / 2**14)

    def rate_at(self, tokens: int) -> float:
        """The learning rate once `tokens` have been trained on: constant, then (with
        `planned_tokens`) falling linearly to zero over the last `decay` of the plan."""
        if self.planned_tokens is None or self.decay == 0.0:
            return self.learning_rate
        left = 1.0 - tokens / self.planned_tokens
        return self.learning_rate * min(1.0, max(0.0, left / self.decay))


class TopKTrainer:
    """The weights, the optimiser and the dead-latent counters of one TopK SAE in training.
    Inputs are scaled by `scale` so their mean squared norm is d_in; `dictionary()` folds the
    scale back, so the saved dictionary reads raw activations."""

    def __init__(self, d_in: int, settings: TrainSettings) -> None:
        settings.check(d_in)
        self.settings, self.d_in = settings, d_in
        g = torch.Generator().manual_seed(settings.seed)
        w_dec = torch.randn(settings.width, d_in, generator=g)
        w_dec /= w_dec.norm(dim=-1, keepdim=True)
        self.W_enc = w_dec.t().contiguous().requires_grad_()
        self.W_dec = w_dec.requires_grad_()
        self.b_enc = torch.zeros(settings.width, requires_grad=True)
        self.b_dec = torch.zeros(d_in, requires_grad=True)
        self.opt = torch.optim.Adam(
            [self.W_enc, self.b_enc, self.W_dec, self.b_dec],
            lr=settings.learning_rate,
            betas=(0.9, 0.999),
            eps=6.25e-10,
        )
        self.scale = 0.0  # set from the first chunk
        self.since_fired = torch.zeros(settings.width, dtype=torch.long)
        self.steps = 0
        self.tokens = 0
        self.last: dict[str, float] = {}

    # ---- data ----------------------------------------------------------------------

    def start(self, first: Float[Tensor, "tokens d_in"]) -> None:
        """The input scale and the decoder bias, from the first chunk."""
        x = first.float()
        self.scale = float(math.sqrt(self.d_in / x.pow(2).sum(-1).mean().clamp_min(1e-12)))
        x = x[:MEDIAN_SAMPLE] * self.scale
        center = x.mean(0) if self.settings.b_dec_init == "mean" else geometric_median(x)
        with torch.no_grad():
            self.b_dec.copy_(center)

    def train_chunk(self, acts: Float[Tensor, "tokens d_in"], index: int) -> None:
        """One pass over a chunk of activations, in a shuffle seeded by the chunk's index."""
        if self.scale == 0.0:
            self.start(acts)
        g = torch.Generator().manual_seed(self.settings.seed * 1_000_003 + index)
        order = torch.randperm(len(acts), generator=g)
        x_all = acts.float() * self.scale
        b = self.settings.batch
        # deterministic kernels: the sparse gradients' scatter-adds otherwise sum in thread
        # order, and a resumed run would drift from an uninterrupted one
        was = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True)
        try:
            for start in range(0, len(order) - b + 1, b):  # a ragged tail is dropped
                self.step(x_all[order[start : start + b]])
        finally:
            torch.use_deterministic_algorithms(was)

    # ---- one step ------------------------------------------------------------------

    def step(self, x: Float[Tensor, "batch d_in"]) -> None:
        s = self.settings
        with torch.no_grad():
            pre_all = (x - self.b_dec) @ self.W_enc + self.b_enc  # [batch, width]
            top = pre_all.topk(s.k, dim=-1)
            dead = self.since_fired >= s.dead_tokens
        idx = top.indices
        vals = self._pre_at(x, idx).relu()  # the same values, with a sparse gradient path
        recon = F.embedding_bag(idx, self.W_dec, per_sample_weights=vals, mode="sum") + self.b_dec
        total_var = (x - x.mean(0)).pow(2).sum()
        loss = (recon - x).pow(2).sum() / total_var
        n_dead = int(dead.sum())
        aux = torch.zeros(())
        if n_dead:
            k_aux = min(s.aux_k or self.d_in // 2, n_dead)
            with torch.no_grad():
                masked = pre_all.masked_fill(~dead, -math.inf)
                aux_idx = masked.topk(k_aux, dim=-1).indices
            aux_vals = self._pre_at(x, aux_idx).relu()
            residual = (x - recon).detach()
            aux_recon = F.embedding_bag(
                aux_idx, self.W_dec, per_sample_weights=aux_vals, mode="sum"
            )
            aux = (aux_recon - residual).pow(2).sum() / total_var
            aux = aux * min(n_dead / k_aux, 1.0)
        self.opt.zero_grad(set_to_none=True)
        for group in self.opt.param_groups:
            group["lr"] = s.rate_at(self.tokens)
        (loss + s.aux_coef * aux).backward()
        with torch.no_grad():  # no gradient along each decoder row: its norm stays put
            assert self.W_dec.grad is not None
            along = (self.W_dec.grad * self.W_dec).sum(-1, keepdim=True)
            self.W_dec.grad -= along * self.W_dec
        self.opt.step()
        with torch.no_grad():
            self.W_dec /= self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            fired = torch.zeros(s.width, dtype=torch.bool)
            fired[idx[vals > 0]] = True
            self.since_fired += len(x)
            self.since_fired[fired] = 0
        self.steps += 1
        self.tokens += len(x)
        self.last = {
            "fvu": float(loss.detach()),
            "aux": float(aux.detach()),
            "dead": n_dead / s.width,
        }

    def _pre_at(self, x: Tensor, idx: Tensor) -> Tensor:
        """The pre-activations of latents `idx` ([batch, n]), differentiable through the
        gathered encoder columns only."""
        cols = self.W_enc.t()[idx]  # [batch, n, d_in]
        return torch.einsum("bnd,bd->bn", cols, x - self.b_dec) + self.b_enc[idx]

    # ---- results and checkpoints ---------------------------------------------------

    def dictionary(self, hook: str, model_name: str | None, info: dict[str, Any]) -> Dictionary:
        """The trained SAE, reading raw activations (the input scale folded in)."""
        with torch.no_grad():
            s = self.scale
            return Dictionary(
                self.W_enc.detach() * s,
                self.b_enc.detach().clone(),
                self.W_dec.detach() / s,
                self.b_dec.detach() / s,
                "topk",
                hook,
                k=self.settings.k,
                apply_b_dec_to_input=True,
                model_name=model_name,
                info=dict(info),
            )

    def state(self) -> dict[str, Any]:
        return {
            "settings": asdict(self.settings),
            "d_in": self.d_in,
            "scale": self.scale,
            "params": [
                p.detach().clone() for p in (self.W_enc, self.b_enc, self.W_dec, self.b_dec)
            ],
            "opt": self.opt.state_dict(),
            "since_fired": self.since_fired.clone(),
            "steps": self.steps,
            "tokens": self.tokens,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TopKTrainer:
        trainer = cls(state["d_in"], TrainSettings(**state["settings"]))
        with torch.no_grad():
            for p, saved in zip(
                (trainer.W_enc, trainer.b_enc, trainer.W_dec, trainer.b_dec),
                state["params"],
                strict=True,
            ):
                p.copy_(saved)
        trainer.opt.load_state_dict(state["opt"])
        trainer.scale = float(state["scale"])
        trainer.since_fired = state["since_fired"].clone()
        trainer.steps, trainer.tokens = int(state["steps"]), int(state["tokens"])
        return trainer


def geometric_median(
    x: Float[Tensor, "n d"], iterations: int = 100, tol: float = 1e-6
) -> Float[Tensor, " d"]:
    """The point minimising the summed distances to the rows of `x` (Weiszfeld's algorithm)."""
    y = x.mean(0)
    for _ in range(iterations):
        w = 1.0 / (x - y).norm(dim=-1).clamp_min(1e-8)
        new = (w[:, None] * x).sum(0) / w.sum()
        if (new - y).norm() <= tol * max(float(y.norm()), 1.0):
            return new
        y = new
    return y
