"""The recording loop: a batch of rows (one row is a batch of one), the prompts run once
(left-padded to one length where they differ), then one new token per row per step with the
KV cache. Caching hooks keep each forward's new positions; nothing keeps a whole-sequence
cache per step, so memory grows linearly with the steps (attention patterns aside, which are
quadratic anyway). Each row is recorded until it stops, at its own end."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm  # not tqdm.auto: it warns in a notebook without ipywidgets

from interp.edits import applying
from interp.edits.value import Intervention
from interp.generation.sampling import Sampler, check_finite
from interp.models import hooks as H
from interp.models.engine import HookFn
from interp.models.model import Model
from interp.models.provenance import provenance
from interp.trace.trace import GenerationSettings, Trace


@dataclass
class Row:
    """One row of a run: its prompt, forced tokens or sampler, and what it has recorded."""

    prompt_ids: list[int]
    prompt_text: str
    forced: list[int] | None
    sampler: Sampler | None
    settings: GenerationSettings
    tokens: list[int] = field(default_factory=list)
    stats: list[tuple[Tensor, Tensor, Tensor, Tensor]] = field(default_factory=list)
    stop_reason: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # its fields: position labels and more

    @property
    def active(self) -> bool:
        return not self.stop_reason


class Progress:
    """One bar over every row and step of a run (all its batches): tokens, and rows done."""

    def __init__(self, rows: list[Row], enabled: bool) -> None:
        self.rows, self.done = len(rows), 0
        self.bar = tqdm(
            total=sum(r.settings.max_new_tokens for r in rows),
            desc="generating",
            unit="tok",
            disable=not enabled,
            file=sys.stderr,
        )

    def tokens(self, n: int) -> None:
        self.bar.update(n)

    def row_done(self, unused_steps: int) -> None:
        """A row stopped; it will not take `unused_steps` of its maximum."""
        self.done += 1
        if unused_steps and self.bar.total is not None:
            self.bar.total -= unused_steps
        self.bar.set_postfix_str(f"rows {self.done}/{self.rows}", refresh=True)

    def close(self) -> None:
        self.bar.close()


def run(
    model: Model,
    runner: Any,
    rows: list[Row],
    names: list[str],
    user_hooks: list[tuple[str, HookFn]],
    top_alternatives: int,
    progress: Progress,
    padded: bool,
    interventions: Sequence[Intervention | None] = (),
) -> list[Trace]:
    """The recording loop over a batch of rows: the prompts once (left-padded), then one
    token per row per step with the KV cache, each row recorded until it stops; row i under
    `interventions[i]` (if any), applied at its own positions."""
    device = model.device
    width = max(len(r.prompt_ids) for r in rows)
    pad = model.tokenizer.pad_token_id
    pad = model.eos_token_id if pad is None else pad
    pad = 0 if pad is None else int(pad)
    ids = torch.tensor(
        [[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in rows], device=device
    )
    mask = (
        torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in rows])
        .to(device)
        .long()
        if padded
        else None
    )
    positions = None if mask is None else (mask.cumsum(-1) - 1).clamp_min(0)
    steps = max(r.settings.max_new_tokens for r in rows)
    recorder = BatchRecorder(names)
    edits: list[tuple[str, HookFn]] = []  # first: the user's hooks and the recorder see them
    for intervention in dict.fromkeys(i for i in interventions if i is not None):
        rows_at = [
            _edit_row(model, r, width) if interventions[i] is intervention else None
            for i, r in enumerate(rows)
        ]
        edits += applying.hooks(intervention, model, rows_at)
    user_hooks = [*edits, *user_hooks]
    t0 = time.perf_counter()
    # The user's hooks go first, so the recorder sees what they changed.
    with torch.no_grad(), runner.hooked([*user_hooks, *recorder.hooks()]):
        last, past = runner.forward(ids, None, mask, positions)  # last: [row, vocab]
        t_prompt = time.perf_counter() - t0
        for step in range(steps):
            live = [i for i, r in enumerate(rows) if r.active]
            check_finite(last[live])
            lp = torch.log_softmax(last.float(), dim=-1)
            top = torch.topk(lp, min(top_alternatives, lp.shape[-1]), dim=-1)
            feed = []
            for i, r in enumerate(rows):
                if not r.active:
                    feed.append(pad)
                    continue
                token = (
                    r.sampler.draw(last[i]) if r.sampler is not None else _forced(r.forced, step)
                )
                rank = (last[i] > last[i, token]).sum() + 1
                r.stats.append((lp[i, token], rank, top.indices[i], top.values[i].exp()))
                r.tokens.append(token)
                feed.append(token)
            if mask is not None and positions is not None:
                mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
                positions = positions[:, -1:] + 1
            last, past = runner.forward(
                torch.tensor(feed, device=device)[:, None], past, mask, positions
            )
            progress.tokens(len(live))
            for i in live:
                r = rows[i]
                token = r.tokens[-1]
                if r.forced is None and r.settings.stop_at_eos and token in model.stop_token_ids:
                    r.stop_reason = "eos"
                elif len(r.tokens) == r.settings.max_new_tokens:
                    r.stop_reason = "forced" if r.forced is not None else "max_new_tokens"
                if r.stop_reason:
                    progress.row_done(r.settings.max_new_tokens - len(r.tokens))
            if not any(r.active for r in rows):
                break
    elapsed = time.perf_counter() - t0
    n_new = sum(len(r.tokens) for r in rows)
    timings = {
        "prompt_forward_s": round(t_prompt, 4),
        "generation_s": round(elapsed, 4),
        "tokens_per_s": round(n_new / elapsed, 3) if elapsed > 0 else 0.0,
    }
    record = {**provenance(model), "engine": runner.name}
    return [
        _trace(model, r, recorder.row(i, width - len(r.prompt_ids), len(r.tokens)), timings, record)
        for i, r in enumerate(rows)
    ]


def _trace(
    model: Model,
    row: Row,
    recorder: _Recorder,
    timings: dict[str, float],
    record: dict[str, str],
) -> Trace:
    tokens = [*row.prompt_ids, *row.tokens]
    lps, ranks, top_ids, top_probs = (
        torch.stack(column) for column in zip(*row.stats, strict=True)
    )
    return Trace(
        model_name=model.name,
        prompt=row.prompt_text,
        token_ids=torch.tensor(tokens, dtype=torch.long),
        prompt_len=len(row.prompt_ids),
        token_strs=model.token_strs(tokens),
        continuation=model.decode(row.tokens),
        settings=row.settings,
        token_logprobs=lps.float().cpu(),
        token_ranks=ranks.long().cpu(),
        top_ids=top_ids.long().cpu(),
        top_probs=top_probs.float().cpu(),
        activations=recorder.assemble(len(tokens)),
        stop_reason=row.stop_reason,
        timings=dict(timings),
        provenance=dict(record),
        model=model,
        meta=dict(row.meta),
    )


def _edit_row(model: Model, row: Row, width: int) -> applying.Row:
    """What an intervention's positions resolve against in a row of this batch."""
    n, where = len(row.prompt_ids), f"the row of {row.prompt_text[:40]!r}"
    return applying.Row(
        n,
        model.token_strs(row.prompt_ids),
        n + row.settings.max_new_tokens,
        width - n,
        row.meta,
        where,
    )


def _forced(forced: list[int] | None, step: int) -> int:
    assert forced is not None  # a run without a sampler forces its tokens
    return forced[step]


class BatchRecorder:
    """Forward hooks that keep each forward's [row, new_pos, ...] tensors on the CPU; `row`
    cuts one row's parts out (its real positions: after its left padding, and only the
    steps it was still running).

    The hooks stay registered for the whole run (one `hooked` context of the engine, see
    `interp.models.engine`): TransformerLens 4.3's `run_with_cache` rebuilds its hook registry and
    alias map on every call, a large share of a decoding step (DEVELOPERS.md).
    Tests check the result against one full-sequence `run_with_cache`.
    """

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.parts: dict[str, list[Tensor]] = {n: [] for n in names}

    def hooks(self) -> list[tuple[str, HookFn]]:
        return [(name, self._hook(name)) for name in self.names]

    def _hook(self, name: str) -> HookFn:
        parts = self.parts[name]

        def record(tensor: Any, hook: Any) -> Any:
            value = tensor[0] if isinstance(tensor, tuple) else tensor
            # kept on the CPU so a long run does not hold the device
            parts.append(value.detach().cpu())
            return tensor

        return record

    def row(self, i: int, pad: int, steps: int) -> _Recorder:
        """Row i's parts: its prompt after `pad` padding positions, then its first `steps`
        decoding steps (query-key hooks: keys from its first real position on; a sliding-window
        layer's KV cache has already dropped its oldest keys, padding first)."""
        out = _Recorder(self.names)
        for name, parts in self.parts.items():
            prompt = parts[0][i]
            if not H.is_query_key(name):
                out.parts[name] += [prompt[pad:], *(p[i] for p in parts[1 : steps + 1])]
                continue
            out.parts[name].append(prompt[:, pad:, pad:])
            for step, p in enumerate(parts[1 : steps + 1], start=1):
                dropped = prompt.shape[-1] + step - p.shape[-1]
                out.parts[name].append(p[i][:, :, max(0, pad - dropped) :])
        return out


class _Recorder:
    """One row's recorded parts ([new_pos, ...]; query-key hooks [head, new_q, keys so far]),
    assembled into whole-sequence tensors."""

    def __init__(self, names: list[str]) -> None:
        self.parts: dict[str, list[Tensor]] = {n: [] for n in names}

    def assemble(self, n_positions: int) -> dict[str, Tensor]:
        out = {}
        for name, parts in self.parts.items():
            if H.is_query_key(name):
                out[name] = _assemble_query_key(name, parts, n_positions)
            else:
                out[name] = torch.cat(parts, dim=0)  # parts are [new_pos, ...]
        return out


def _assemble_query_key(name: str, parts: list[Tensor], n: int) -> Tensor:
    """Rows [head, new_q, keys] -> [head, n, n], the keys being the latest ones so far (all of
    them, or a sliding window's); future and dropped keys filled as a full causal run fills
    them (0 probability in patterns, -inf in scores)."""
    fill = 0.0 if H.is_pattern(name) else float("-inf")
    n_heads = parts[0].shape[0]
    out = torch.full((n_heads, n, n), fill, dtype=parts[0].dtype)
    row = 0
    for part in parts:
        q, k = part.shape[1], part.shape[2]
        out[:, row : row + q, row + q - k : row + q] = part
        row += q
    return out
