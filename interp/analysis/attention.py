"""Attention patterns of a trace, and the roles of heads (previous-token, duplicate-token,
induction, sink) measured on a repeated random-token probe.

Scores are per query head: with grouped-query attention (SmolLM2: 9 query heads, 3 KV heads)
each query head has its own pattern, so each gets its own score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, overload

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.analysis.stats import mean_and_se
from interp.errors import InvalidSettingError
from interp.generation.arguments import resolve_hooks
from interp.models import hooks as H
from interp.models.engine import EngineName, choose
from interp.models.heads import Head, rank_heads
from interp.models.model import Model
from interp.trace.trace import Trace
from interp.trace.traceset import TraceSet

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


@dataclass
class AttentionSetResult:
    """The attention of every row of a `TraceSet` (`rows[i]`, as for one trace), and per-head
    statistics over each row's generated steps (query = the position before each generated
    token), as means over rows with their standard errors: the weight on position 0 (the
    sink), on the previous position, and the pattern's entropy in nats."""

    rows: list[AttentionResult]
    row_stats: Float[Tensor, "row stat layer head"]
    stats: tuple[str, ...] = ("sink", "previous", "entropy")

    def stat(self, name: str) -> tuple[Float[Tensor, "layer head"], Float[Tensor, "layer head"]]:
        """(mean over rows, standard error) of one statistic."""
        if name not in self.stats:
            raise InvalidSettingError(f"unknown statistic {name!r}; known: {', '.join(self.stats)}")
        return mean_and_se(list(self.row_stats[:, self.stats.index(name)]))


@overload
def attention(model: Model, trace: Trace, *, top_k: int = ...) -> AttentionResult: ...


@overload
def attention(model: Model, trace: TraceSet, *, top_k: int = ...) -> AttentionSetResult: ...


def attention(
    model: Model, trace: Trace | TraceSet, *, top_k: int = 3
) -> AttentionResult | AttentionSetResult:
    """Patterns of every layer and head, and the top attended positions per generated token;
    of a `TraceSet`, every row's at once (layer by layer over the padded rows), with per-head
    statistics over rows. Returns an `AttentionResult` (of a set, an `AttentionSetResult`)."""
    traces = [trace] if isinstance(trace, Trace) else list(trace)
    names = [H.pattern(layer) for layer in range(model.n_layers)]
    for t in traces:
        t.bind(model)
        t.require_hooks(names, "the attention analysis")
    starts = torch.tensor([t.prompt_len - 1 for t in traces])
    steps = torch.tensor([t.n_generated for t in traces])
    width = int(steps.max())
    # [row, step]: each row's query positions, padded by repeating its last one
    offsets = torch.minimum(torch.arange(width)[None, :], (steps - 1).clamp_min(0)[:, None])
    queries = starts[:, None] + offsets
    real = torch.arange(width)[None, :] < steps[:, None]  # [row, step]
    k = min(top_k, min(t.n_positions for t in traces))
    n_pos = max(t.n_positions for t in traces)
    keys = torch.arange(n_pos)[None, :] < torch.tensor([t.n_positions for t in traces])[:, None]
    top_pos, top_w, stats = [], [], []
    for name in names:
        padded = _padded([t.activations[name] for t in traces], n_pos)  # [row, head, q, key]
        index = queries[:, None, :, None].expand(-1, padded.shape[1], -1, n_pos)
        rows = padded.gather(2, index)  # [row, head, step, key]
        top = rows.masked_fill(~keys[:, None, None, :], -1.0).topk(k, dim=-1)
        top_pos.append(top.indices)
        top_w.append(top.values)
        stats.append(_head_stats(rows.float(), queries, real))
    positions = torch.stack(top_pos, dim=1)  # [row, layer, head, step, k]
    weights = torch.stack(top_w, dim=1)
    results = [
        AttentionResult(
            patterns=recorded_patterns(model, t),
            query_positions=list(range(t.prompt_len - 1, t.n_positions - 1)),
            top_positions=positions[i, :, :, : t.n_generated].clone(),
            top_weights=weights[i, :, :, : t.n_generated].clone(),
            tokens=list(t.token_strs),
        )
        for i, t in enumerate(traces)
    ]
    if isinstance(trace, Trace):
        return results[0]
    return AttentionSetResult(results, torch.stack(stats, dim=2))  # [row, stat, layer, head]


def recorded_patterns(model: Model, trace: Trace) -> Float[Tensor, "layer head query key"]:
    """Every layer's attention patterns as the trace recorded them."""
    return torch.stack([trace.activations[H.pattern(layer)] for layer in range(model.n_layers)])


def _padded(parts: list[Tensor], n: int) -> Tensor:
    """[head, q, k] patterns of rows of different lengths, zero-padded to [row, head, n, n]."""
    out = parts[0].new_zeros((len(parts), parts[0].shape[0], n, n))
    for i, part in enumerate(parts):
        out[i, :, : part.shape[1], : part.shape[2]] = part
    return out


def _head_stats(
    rows: Float[Tensor, "row head step key"], queries: Tensor, real: Tensor
) -> Float[Tensor, "row stat head"]:
    """Sink weight, previous-position weight and entropy, averaged over each row's real steps
    (padded keys carry zero weight, so they add nothing)."""
    sink = rows[..., 0]
    before = (queries - 1).clamp_min(0)[:, None, :, None].expand(-1, rows.shape[1], -1, 1)
    previous = rows.gather(-1, before)[..., 0] * (queries > 0)[:, None, :]
    entropy = -(rows * rows.clamp_min(1e-30).log()).sum(-1)
    weight = real[:, None, :].float() / real.sum(-1).clamp_min(1)[:, None, None]
    return torch.stack([(x * weight).sum(-1) for x in (sink, previous, entropy)], dim=1)


@dataclass
class HeadRoles:
    """Role scores of every head, measured on `probe_tokens`: `sequences` blocks of random
    tokens, each repeated twice (after a BOS token where the tokenizer adds one).

    Definitions, each a mean attention weight over a set of query positions q of a sequence:
    - previous_token: weight on q-1, over every q >= 1 of the probe;
    - duplicate_token: weight on q-n (the same token, first copy), over q in the second copy;
    - induction: weight on q-n+1 (the token after the first occurrence), over q in the second
      copy only (Olsson et al. 2022; TransformerLens's `detect_head` also averages over the
      first copy's rows, roughly halving the score);
    - sink: weight on position 0, over every q >= 1.
    `scores` are means over the sequences, `score_se` their standard errors.
    """

    scores: Float[Tensor, "role layer head"]
    score_se: Float[Tensor, "role layer head"]
    probe_tokens: Int[Tensor, "seq pos"]
    block_len: int
    offset: int  # index of the first random token (1 after a BOS, else 0)
    token_loss: Float[Tensor, "seq pos_minus_1"]  # next-token loss along each sequence
    roles: tuple[str, ...] = field(default=ROLES)

    @property
    def sequences(self) -> int:
        return self.probe_tokens.shape[0]

    def score(self, role: str) -> Float[Tensor, "layer head"]:
        if role not in self.roles:
            raise InvalidSettingError(f"unknown head role {role!r}; known: {', '.join(ROLES)}")
        return self.scores[self.roles.index(role)]

    def top(self, role: str, k: int = 10) -> list[tuple[Head, float]]:
        """The k heads with the highest score for `role`, strongest first."""
        return rank_heads(self.score(role), k)

    @property
    def first_copy_losses(self) -> Float[Tensor, " seq"]:
        """Each sequence's mean next-token loss while predicting its first copy (after its
        first token)."""
        start, n = self.offset, self.block_len
        return self.token_loss[:, start : start + n - 1].mean(-1)

    @property
    def second_copy_losses(self) -> Float[Tensor, " seq"]:
        start, n = self.offset, self.block_len
        return self.token_loss[:, start + n : start + 2 * n - 1].mean(-1)

    @property
    def loss_first_copy(self) -> float:
        """The mean over sequences of `first_copy_losses`."""
        return float(self.first_copy_losses.mean())

    @property
    def loss_second_copy(self) -> float:
        return float(self.second_copy_losses.mean())

    def summary(self, k: int = 10) -> dict:
        return {role: [[str(h), round(s, 4)] for h, s in self.top(role, k)] for role in self.roles}

    def probe_summary(self) -> dict:
        """The probe and its losses: means over sequences and each sequence's own."""
        first, second = self.first_copy_losses, self.second_copy_losses
        spread = (lambda x: round(float(x.std()), 4)) if self.sequences > 1 else (lambda x: None)
        return {
            "kind": "repeated random tokens",
            "block_len": self.block_len,
            "sequences": self.sequences,
            "loss_first_copy": round(self.loss_first_copy, 4),
            "loss_second_copy": round(self.loss_second_copy, 4),
            "loss_first_copy_sd": spread(first),
            "loss_second_copy_sd": spread(second),
            "loss_first_copy_per_sequence": [round(float(x), 4) for x in first],
            "loss_second_copy_per_sequence": [round(float(x), 4) for x in second],
        }


def repeated_random_tokens(
    model: Model, block_len: int = 50, seed: int = 0, sequences: int = 1
) -> tuple[Int[Tensor, "seq pos"], int]:
    """`[BOS] + r + r` per sequence, r `block_len` random ordinary tokens (sequence 0 is the
    same for any number of sequences); returns (tokens, offset)."""
    special = set(model.tokenizer.all_special_ids)
    generator = torch.Generator().manual_seed(seed)
    candidates = torch.tensor([i for i in range(model.d_vocab) if i not in special])
    picks = torch.randint(len(candidates), (sequences, block_len), generator=generator)
    block = candidates[picks]  # [seq, block_len]
    prefix = model.encode("")  # what the tokenizer puts before any text (a BOS, or nothing)
    first = torch.tensor(prefix, dtype=torch.long).expand(sequences, len(prefix))
    return torch.cat([first, block, block], dim=1), len(prefix)


LOGIT_CHUNK_BYTES = 1 << 28  # the probe's logits are computed a few sequences at a time


PROBE_BLOCK = 50  # tokens in each copy of the probe, where the context allows
PROBE_SEQUENCES = 16


def head_roles(
    model: Model,
    *,
    block_len: int = PROBE_BLOCK,
    sequences: int = PROBE_SEQUENCES,
    seed: int = 0,
    fwd_hooks: list | tuple = (),
    engine: EngineName = "auto",
) -> HeadRoles:
    """Score every head on `sequences` repeated random-token sequences (see `HeadRoles` for
    the definitions); each sequence's scores are reduced inside the forward pass, so no
    pattern of the batch is kept.

    `fwd_hooks` are TransformerLens `(name or name filter, fn)` pairs active during the probe
    (an ablation, say). The probe runs on the direct engine where that engine serves them
    (see `interp.models.engine`), else through the bridge; `engine="bridge"` insists on the bridge.
    """
    if block_len < 2 or sequences < 1:
        raise InvalidSettingError(
            f"the probe needs block_len >= 2 and sequences >= 1, got {block_len}, {sequences}"
        )
    tokens, offset = repeated_random_tokens(model, block_len, seed, sequences)
    n, total = block_len, tokens.shape[1]
    if total > model.n_ctx:
        raise InvalidSettingError(
            f"a probe of 2 x {block_len} tokens (+{offset}) exceeds {model.name}'s context of "
            f"{model.n_ctx} tokens"
        )
    q_all = torch.arange(1, total)
    q_second = torch.arange(offset + n, offset + 2 * n)
    patterns_of = [H.pattern(layer) for layer in range(model.n_layers)]
    names, user_hooks = resolve_hooks(model, patterns_of, fwd_hooks)
    runner = choose(model, names, [name for name, _ in user_hooks], engine)
    scored: dict[str, list[Tensor]] = {name: [] for name in names}

    def score(pattern: Tensor, hook: Any) -> None:
        p = pattern.detach().float()  # [seq, head, q, k]
        roles = [
            p[:, :, q_all, q_all - 1].mean(-1),
            p[:, :, q_second, q_second - n].mean(-1),
            p[:, :, q_second, q_second - n + 1].mean(-1),
            p[:, :, q_all, 0].mean(-1),
        ]
        scored[hook.name].append(torch.stack(roles, dim=1).cpu())  # [seq, role, head]

    chunk = max(1, LOGIT_CHUNK_BYTES // (total * model.d_vocab * 4))
    losses = []
    with torch.no_grad(), runner.hooked([*user_hooks, *((name, score) for name in names)]):
        for part in tokens.split(chunk):
            logits = runner.logits(part.to(model.device))  # [seq, pos, vocab]
            logprobs = logits[:, :-1].float().log_softmax(-1)
            target = part[:, 1:, None].to(logprobs.device)
            losses.append(-logprobs.gather(-1, target)[..., 0].cpu())
    # [seq, role, layer, head]
    per_sequence = torch.stack([torch.cat(scored[name]) for name in names], dim=2)
    mean, se = mean_and_se(list(per_sequence))
    return HeadRoles(
        scores=mean,
        score_se=se,
        probe_tokens=tokens,
        block_len=block_len,
        offset=offset,
        token_loss=torch.cat(losses),
    )
