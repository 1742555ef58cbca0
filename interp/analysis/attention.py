"""Attention patterns of a trace, and the roles of heads (previous-token, duplicate-token,
induction, sink) measured on a repeated random-token probe.

Scores are per query head: with grouped-query attention (SmolLM2: 9 query heads, 3 KV heads)
each query head has its own pattern, so each gets its own score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp import hooks as H
from interp.engine import EngineName, choose
from interp.errors import InvalidSettingError
from interp.generation import resolve_hooks
from interp.heads import rank_heads
from interp.models.model import Model
from interp.trace import Trace

ROLES = ("previous_token", "duplicate_token", "induction", "sink")


@dataclass
class AttentionResult:
    """The trace's attention patterns, and for each generated token, the earlier positions each
    head attended to most while predicting it (query = the position before the token).

    `patterns` covers the positions from `window_start` on (query and key); a result loaded
    from disk may hold only a window of the last positions, a computed one holds them all."""

    patterns: Float[Tensor, "layer head query key"]
    query_positions: list[int]
    top_positions: Int[Tensor, "layer head step k"]
    top_weights: Float[Tensor, "layer head step k"]
    tokens: list[str] = field(default_factory=list)  # the sequence's token strings
    window_start: int = 0


def attention(model: Model, trace: Trace, *, top_k: int = 3) -> AttentionResult:
    """Patterns of every layer and head, and the top attended positions per generated token."""
    trace.bind(model)
    names = [H.pattern(layer) for layer in range(model.n_layers)]
    trace.require_hooks(names, "the attention analysis")
    patterns = torch.stack([trace.activations[name] for name in names])
    queries = list(range(trace.prompt_len - 1, trace.n_positions - 1))
    rows = patterns[:, :, queries, :]  # [layer, head, step, key]
    top = rows.topk(min(top_k, rows.shape[-1]), dim=-1)
    return AttentionResult(
        patterns=patterns,
        query_positions=queries,
        top_positions=top.indices,
        top_weights=top.values,
        tokens=list(trace.token_strs),
    )


@dataclass
class HeadRoles:
    """Role scores of every head, measured on `probe_tokens`: a block of random tokens repeated
    twice (after a BOS token where the tokenizer adds one).

    Definitions, each a mean attention weight over a set of query positions q:
    - previous_token: weight on q-1, over every q >= 1 of the probe;
    - duplicate_token: weight on q-n (the same token, first copy), over q in the second copy;
    - induction: weight on q-n+1 (the token after the first occurrence), over q in the second
      copy only (Olsson et al. 2022; TransformerLens's `detect_head` also averages over the
      first copy's rows, roughly halving the score);
    - sink: weight on position 0, over every q >= 1.
    """

    scores: Float[Tensor, "role layer head"]
    probe_tokens: Int[Tensor, " pos"]
    block_len: int
    offset: int  # index of the first random token (1 after a BOS, else 0)
    token_loss: Float[Tensor, " pos_minus_1"]  # next-token loss along the probe
    roles: tuple[str, ...] = field(default=ROLES)

    def score(self, role: str) -> Float[Tensor, "layer head"]:
        if role not in self.roles:
            raise InvalidSettingError(f"unknown head role {role!r}; known: {', '.join(ROLES)}")
        return self.scores[self.roles.index(role)]

    def top(self, role: str, k: int = 10) -> list[tuple[str, float]]:
        """The k heads with the highest score for `role`, strongest first."""
        return rank_heads(self.score(role), k)

    @property
    def loss_first_copy(self) -> float:
        """Mean next-token loss while predicting the first copy's tokens (after its first)."""
        start, n = self.offset, self.block_len
        return float(self.token_loss[start : start + n - 1].mean())

    @property
    def loss_second_copy(self) -> float:
        start, n = self.offset, self.block_len
        return float(self.token_loss[start + n : start + 2 * n - 1].mean())

    def summary(self, k: int = 10) -> dict:
        return {role: [[h, round(s, 4)] for h, s in self.top(role, k)] for role in self.roles}


def repeated_random_tokens(model: Model, block_len: int = 50, seed: int = 0) -> tuple[Tensor, int]:
    """`[BOS] + r + r` with r `block_len` random ordinary tokens; returns (tokens, offset)."""
    special = set(model.tokenizer.all_special_ids)
    generator = torch.Generator().manual_seed(seed)
    candidates = torch.tensor([i for i in range(model.d_vocab) if i not in special])
    block = candidates[torch.randint(len(candidates), (block_len,), generator=generator)]
    prefix = model.encode("")  # what the tokenizer puts before any text (a BOS, or nothing)
    tokens = torch.cat([torch.tensor(prefix, dtype=torch.long), block, block])
    return tokens, len(prefix)


def head_roles(
    model: Model,
    *,
    block_len: int = 50,
    seed: int = 0,
    fwd_hooks: list | tuple = (),
    engine: EngineName = "auto",
) -> HeadRoles:
    """Score every head on a repeated random-token probe (see `HeadRoles` for definitions).

    `fwd_hooks` are TransformerLens `(name or name filter, fn)` pairs active during the probe
    (an ablation, say). The probe runs on the direct engine where that engine serves them
    (see `interp.engine`), else through the bridge; `engine="bridge"` insists on the bridge.
    """
    tokens, offset = repeated_random_tokens(model, block_len, seed)
    patterns_of = [H.pattern(layer) for layer in range(model.n_layers)]
    names, user_hooks = resolve_hooks(model, patterns_of, fwd_hooks)
    runner = choose(model.bridge, names, [name for name, _ in user_hooks], engine)
    recorded: dict[str, Tensor] = {}

    def keep(pattern: Tensor, hook: Any) -> None:
        recorded[hook.name] = pattern[0].detach()

    with torch.no_grad(), runner.hooked([*user_hooks, *((name, keep) for name in names)]):
        logits = runner.logits(tokens[None].to(model.device))  # [pos, vocab]
    patterns = torch.stack([recorded[name] for name in names]).float().cpu()  # [l, h, q, k]
    n, total = block_len, tokens.shape[0]
    q_all = torch.arange(1, total)
    q_second = torch.arange(offset + n, offset + 2 * n)
    prev = patterns[:, :, q_all, q_all - 1].mean(-1)
    dup = patterns[:, :, q_second, q_second - n].mean(-1)
    ind = patterns[:, :, q_second, q_second - n + 1].mean(-1)
    sink = patterns[:, :, q_all, 0].mean(-1)
    logprobs = logits[:-1].float().log_softmax(-1).cpu()
    loss = -logprobs.gather(-1, tokens[1:, None]).squeeze(-1)
    return HeadRoles(
        scores=torch.stack([prev, dup, ind, sink]),
        probe_tokens=tokens,
        block_len=block_len,
        offset=offset,
        token_loss=loss,
    )
