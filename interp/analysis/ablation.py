"""Head ablations: knock heads out and measure the effect on the recorded continuation
(teacher-forced) and on freshly generated text (same prompt, seed and noise).

Ablation acts on each head's output `hook_z` ([batch, pos, head, d_head]), so with
grouped-query attention one query head is ablated, not its whole KV group. Modes:
- mean (the default): the head's mean z over every position of the trace;
- zero: z = 0;
- resample: the head's z at the same position on another text (`resample_text`).

The exact sweep ablates every head in turn. Ablating a head in layer L cannot change anything
before layer L, so it runs only blocks L.. on the recorded residual stream entering block L,
one batch item per head of the layer; the result equals a full forward per head (tested).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from interp import hooks as H
from interp.errors import InvalidSettingError
from interp.heads import head_label, rank_heads
from interp.models import Model
from interp.trace import Trace

MODES = ("mean", "zero", "resample")
TRIAGE_FRACTION = 3 / 8  # of all heads, verified exactly by a triage sweep
DEFAULT_RESAMPLE_TEXT = (
    "The committee met on Tuesday to review the budget for the coming year. After a long "
    "discussion about roads, schools and the new library, the members agreed to postpone "
    "the final vote until the spring, when more figures would be available."
)


# ---------------------------------------------------------------------------------------
# What to put in place of a head's output


@dataclass
class Ablation:
    """A set of heads and what replaces their output (`values[layer]`: [pos or 1, head, d_head],
    only the listed heads' entries are used)."""

    heads: list[tuple[int, int]]
    mode: str
    values: dict[int, Tensor]
    source: str  # a sentence saying where the replacement values come from

    @property
    def label(self) -> str:
        return heads_label(self.heads)

    @property
    def dirname(self) -> str:
        return ablation_dirname(self.heads, self.mode)

    def hooks(self, device: torch.device) -> list[tuple[str, Callable]]:
        """Fresh forward hooks on `hook_z` (each tracks absolute positions for the KV cache)."""
        by_layer: dict[int, list[int]] = {}
        for layer, head in self.heads:
            by_layer.setdefault(layer, []).append(head)
        return [
            (H.z(layer), _replace_z_hook(heads, self.values[layer].to(device)))
            for layer, heads in sorted(by_layer.items())
        ]


def heads_label(heads: Sequence[tuple[int, int]]) -> str:
    return ",".join(head_label(layer, head) for layer, head in heads) or "none"


def ablation_dirname(heads: Sequence[tuple[int, int]], mode: str) -> str:
    """The directory name of an ablation under TRACE_DIR/ablations/."""
    return f"{heads_label(heads).replace(',', '_')}-{mode}"


def _replace_z_hook(heads: list[int], value: Tensor) -> Callable:
    """Replace z[:, :, heads] by `value` ([1 or source_pos, head, d_head]) at each position.

    The hook counts the positions it has seen, so that with a KV cache (one new position a
    call) a position-dependent value is read at the right absolute position.
    """
    seen = [0]
    index = torch.tensor(heads, device=value.device)

    def hook(z: Tensor, hook) -> Tensor:
        start, n = seen[0], z.shape[1]
        seen[0] += n
        if value.shape[0] == 1:
            rows = value
        else:
            if start + n > value.shape[0]:
                raise InvalidSettingError(
                    f"the resample source has {value.shape[0]} positions; position "
                    f"{start + n - 1} was asked for"
                )
            rows = value[start : start + n]
        z = z.clone()
        z[:, :, index] = rows[:, index].to(z.dtype).expand(z.shape[0], n, len(heads), -1)
        return z

    return hook


def make_ablation(
    model: Model,
    trace: Trace,
    heads: Sequence[tuple[int, int]],
    mode: str = "mean",
    *,
    resample_text: str | None = None,
    min_positions: int | None = None,
) -> Ablation:
    """Build the replacement values for `heads` (validated (layer, head) pairs) in `mode`."""
    trace.bind(model)
    if mode not in MODES:
        raise InvalidSettingError(f"unknown ablation mode {mode!r}; choose one of {MODES}")
    heads = sorted(set(heads))
    for layer, head in heads:
        if not (0 <= layer < model.n_layers and 0 <= head < model.n_heads):
            raise InvalidSettingError(
                f"head L{layer}H{head} is out of range; valid: L0..L{model.n_layers - 1} "
                f"and H0..H{model.n_heads - 1}"
            )
    layers = sorted({layer for layer, _ in heads})
    if mode == "mean":
        trace.require_hooks([H.z(layer) for layer in layers], "mean ablation")
        values = {
            layer: trace.activations[H.z(layer)].float().mean(0, keepdim=True) for layer in layers
        }
        source = f"the head's mean output over the {trace.n_positions} positions of the trace"
    elif mode == "zero":
        d_head = int(model.cfg.d_head)
        values = {layer: torch.zeros(1, model.n_heads, d_head) for layer in layers}
        source = "zeros"
    else:
        text = resample_text or DEFAULT_RESAMPLE_TEXT
        needed = max(
            min_positions or 0, trace.n_positions, trace.prompt_len + trace.settings.max_new_tokens
        )
        values = _resample_values(model, text, layers, needed)
        source = f"the head's output at the same position on the text {text[:60]!r}"
    return Ablation(heads=heads, mode=mode, values=values, source=source)


def _resample_values(model: Model, text: str, layers: list[int], needed: int) -> dict[int, Tensor]:
    ids = model.encode(text)
    if not ids:
        raise InvalidSettingError("the resample text tokenises to no tokens")
    body = model.encode(text, add_special_tokens=False) or ids
    while len(ids) < needed:  # repeat the text until it covers every position
        ids += body
    ids = ids[:needed]
    names = [H.z(layer) for layer in layers]
    with torch.no_grad():
        _, cache = model.bridge.run_with_cache(
            torch.tensor([ids], device=model.device), names_filter=lambda n: n in set(names)
        )
    return {layer: cache[H.z(layer)][0].float().cpu() for layer in layers}


# ---------------------------------------------------------------------------------------
# Effect on the recorded continuation (teacher-forced)


@dataclass
class AblationEffect:
    """Per generated token: log-prob of the recorded token with and without the ablation, and
    the KL divergence KL(baseline || ablated) of the next-token distribution."""

    heads: list[str]
    mode: str
    source: str
    baseline_logprobs: Float[Tensor, " step"]
    ablated_logprobs: Float[Tensor, " step"]
    kl: Float[Tensor, " step"]

    @property
    def delta_logprob(self) -> Float[Tensor, " step"]:
        return self.ablated_logprobs - self.baseline_logprobs

    @property
    def delta_logprob_total(self) -> float:
        return float(self.delta_logprob.sum())

    def hardest(self, k: int = 5) -> list[int]:
        """Generated-token indices whose log-prob moved most, largest |change| first."""
        order = self.delta_logprob.abs().argsort(descending=True, stable=True)
        return order[:k].tolist()


def continuation_logprobs(
    model: Model, trace: Trace, fwd_hooks: Sequence = ()
) -> tuple[Float[Tensor, " step"], Float[Tensor, "step vocab"]]:
    """Teacher-forced log-probs of the recorded continuation: (of each token, full rows)."""
    p, n = trace.prompt_len, trace.n_positions
    with torch.no_grad(), model.bridge.hooks(fwd_hooks=list(fwd_hooks)):
        logits = model.bridge(trace.token_ids[None].to(model.device), return_type="logits")
    rows = logits[0, p - 1 : n - 1].float().log_softmax(-1).cpu()
    return rows.gather(-1, trace.token_ids[p:n, None])[:, 0], rows


def ablation_effect(model: Model, trace: Trace, ablation: Ablation) -> AblationEffect:
    """The teacher-forced effect of `ablation` on the trace's continuation."""
    trace.bind(model)
    base, base_rows = continuation_logprobs(model, trace)
    abl, abl_rows = continuation_logprobs(model, trace, ablation.hooks(model.device))
    kl = (base_rows.exp() * (base_rows - abl_rows)).sum(-1).clamp_min(0)
    return AblationEffect(
        heads=[head_label(layer, head) for layer, head in ablation.heads],
        mode=ablation.mode,
        source=ablation.source,
        baseline_logprobs=base,
        ablated_logprobs=abl,
        kl=kl,
    )


# ---------------------------------------------------------------------------------------
# Regeneration with the same prompt, seed and noise


@dataclass
class Regeneration:
    """Baseline and ablated generations from the same prompt, settings and sampler noise."""

    baseline: Trace
    ablated: Trace
    first_divergence: int | None  # index into the continuation, None if identical


def regeneration_settings(trace: Trace) -> dict:
    """generate() arguments that repeat the trace's run. A forced continuation is replaced by
    as many sampled tokens with the trace's seed (greedy where it has none)."""
    s = trace.settings
    if s.continuation is None:
        return {
            "max_new_tokens": s.max_new_tokens,
            "temperature": s.temperature,
            "top_k": s.top_k,
            "top_p": s.top_p,
            "seed": s.seed,
            "stop_at_eos": s.stop_at_eos,
        }
    return {
        "max_new_tokens": trace.n_generated,
        "temperature": s.temperature if s.seed is not None else 0.0,
        "top_k": s.top_k,
        "top_p": s.top_p,
        "seed": s.seed if s.seed is not None else 0,
        "stop_at_eos": False,
    }


def regenerate(
    model: Model, trace: Trace, ablation: Ablation, *, progress: bool = False
) -> Regeneration:
    """Generate again with the heads ablated; the baseline is the trace itself for a sampled
    trace (regenerating it unablated gives the same tokens), or an unablated regeneration for
    a forced continuation."""
    from interp.generation import generate

    trace.bind(model)
    settings = regeneration_settings(trace)
    prompt = trace.token_ids[: trace.prompt_len].tolist()
    hooks = trace.hook_names
    if trace.settings.continuation is None:
        baseline = trace
    else:
        baseline = generate(model, prompt, hooks=hooks, progress=progress, **settings)
    ablated = generate(
        model,
        prompt,
        hooks=hooks,
        fwd_hooks=ablation.hooks(model.device),
        progress=progress,
        **settings,
    )
    ablated.prompt = baseline.prompt = trace.prompt
    return Regeneration(baseline, ablated, first_divergence(baseline, ablated))


def first_divergence(a: Trace, b: Trace) -> int | None:
    """First continuation index where the two runs' tokens differ (or one has ended)."""
    x, y = a.continuation_ids, b.continuation_ids
    for i, (u, v) in enumerate(zip(x, y, strict=False)):
        if u != v:
            return i
    return None if len(x) == len(y) else min(len(x), len(y))


# ---------------------------------------------------------------------------------------
# Sweeps over every head


@dataclass
class SweepResult:
    """Change in the continuation's total log-prob with each head ablated alone.

    `delta[l, h]` is exact where `verified[l, h]`; with the triage method the others are NaN.
    `estimate` is the attribution-patching estimate (always an estimate, never exact)."""

    def _repr_html_(self) -> str:
        from interp.report.notebook import sweep_html

        return sweep_html(self)

    mode: str
    method: str  # "exact" or "triage"
    delta: Float[Tensor, "layer head"]
    delta_per_token: Float[Tensor, "layer head step"]
    estimate: Float[Tensor, "layer head"]
    verified: Tensor  # bool [layer, head]
    timings: dict[str, float] = field(default_factory=dict)

    def top_heads(self, k: int = 10) -> list[tuple[str, float]]:
        """The k largest exact effects, signed, largest magnitude first."""
        scores = torch.where(self.verified, self.delta, torch.zeros_like(self.delta))
        ranked = rank_heads(scores, None, by_magnitude=True)
        verified = {head_label(int(l_), int(h_)) for l_, h_ in self.verified.nonzero().tolist()}
        return [(label, value) for label, value in ranked if label in verified][:k]

    @property
    def estimate_spearman(self) -> float:
        """Rank correlation of the estimate with the exact effect over the verified heads."""
        return spearman(self.estimate[self.verified], self.delta[self.verified])

    @property
    def verified_heads(self) -> list[str]:
        return [head_label(l_, h_) for l_, h_ in self.verified.nonzero().tolist()]

    def summary(self, k: int = 10) -> dict:
        return {
            "mode": self.mode,
            "method": self.method,
            "top_heads": [[h, round(v, 5)] for h, v in self.top_heads(k)],
            "estimate_spearman": round(self.estimate_spearman, 4),
            "verified_heads": self.verified_heads,
            "timings": self.timings,
        }


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation (no tie correction; ties are measure-zero here)."""
    if a.numel() < 2:
        return float("nan")
    ra = a.double().argsort().argsort().double()
    rb = b.double().argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / math.sqrt(float((ra * ra).sum() * (rb * rb).sum())))


def sweep(
    model: Model,
    trace: Trace,
    mode: str = "mean",
    *,
    method: str = "exact",
    verify: int | None = None,
    resample_text: str | None = None,
    progress: bool = False,
) -> SweepResult:
    """Ablate every head alone. `method="exact"` runs them all (fast path); `"triage"` ranks
    heads by the attribution-patching estimate and verifies the `verify` largest exactly
    (default: 3/8 of the heads; on SmolLM2 the exact top 20 sat at estimate ranks up to
    ~150 of 270, and the top 100 held 19 of them)."""
    if method not in ("exact", "triage"):
        raise InvalidSettingError(f"unknown sweep method {method!r}; choose exact or triage")
    trace.bind(model)
    n_layers, n_heads = model.n_layers, model.n_heads
    all_heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    ablation = make_ablation(model, trace, all_heads, mode, resample_text=resample_text)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    estimate = attribution_estimate(model, trace, ablation)
    timings["estimate_s"] = round(time.perf_counter() - t0, 4)
    if method == "exact":
        chosen = all_heads
    else:
        if verify is None:
            verify = max(1, round(TRIAGE_FRACTION * len(all_heads)))
        order = estimate.abs().flatten().argsort(descending=True)[: max(1, verify)]
        chosen = sorted((int(i) // n_heads, int(i) % n_heads) for i in order)
    t0 = time.perf_counter()
    per_token = exact_effects(model, trace, ablation, chosen, progress=progress)
    timings["exact_s"] = round(time.perf_counter() - t0, 4)
    steps = trace.n_generated
    delta_tok = torch.full((n_layers, n_heads, steps), float("nan"))
    verified = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    for (layer, head), row in per_token.items():
        delta_tok[layer, head] = row
        verified[layer, head] = True
    return SweepResult(
        mode=mode,
        method=method,
        delta=delta_tok.sum(-1),
        delta_per_token=delta_tok,
        estimate=estimate,
        verified=verified,
        timings=timings,
    )


def exact_effects(
    model: Model,
    trace: Trace,
    ablation: Ablation,
    heads: Sequence[tuple[int, int]],
    *,
    progress: bool = False,
    max_logits: int = 64_000_000,
) -> dict[tuple[int, int], Tensor]:
    """Per-token change in log-prob with each head in `heads` ablated alone (exact).

    Runs blocks L.. only, on the recorded residual entering block L, one batch item per head;
    the batch is capped so that its logits stay under `max_logits` numbers.
    """
    trace.require_hooks([H.resid_pre(layer) for layer, _ in heads], "the exact sweep")
    base, _ = continuation_logprobs(model, trace)
    p, n = trace.prompt_len, trace.n_positions
    targets = trace.token_ids[p:n].to(model.device)
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    batch_cap = max(1, max_logits // (n * model.d_vocab))
    out: dict[tuple[int, int], Tensor] = {}
    bar = tqdm(total=len(heads), desc="sweep", unit="head", disable=not progress, file=sys.stderr)
    for layer, layer_heads in sorted(by_layer.items()):
        resid = trace.activations[H.resid_pre(layer)].to(model.device)
        value = ablation.values[layer].to(model.device)
        for start in range(0, len(layer_heads), batch_cap):
            group = layer_heads[start : start + batch_cap]
            hook = _one_head_per_item_hook(group, value)
            batch = resid.unsqueeze(0).expand(len(group), -1, -1).contiguous()
            with torch.no_grad(), model.bridge.hooks(fwd_hooks=[(H.z(layer), hook)]):
                logits = run_from_layer(model, batch, layer, keep=n - p + 1)
            lp = logits[:, -(n - p + 1) : -1].float().log_softmax(-1)
            lp = lp.gather(-1, targets.view(1, -1, 1).expand(len(group), -1, 1))[..., 0].cpu()
            for i, head in enumerate(group):
                out[(layer, head)] = lp[i] - base
            bar.update(len(group))
    bar.close()
    return out


def _one_head_per_item_hook(heads: list[int], value: Tensor) -> Callable:
    """Batch item i ablates head heads[i] (value: [1 or pos, head, d_head])."""

    def hook(z: Tensor, hook) -> Tensor:
        z = z.clone()
        n = z.shape[1]
        rows = value if value.shape[0] == 1 else value[:n]
        for i, head in enumerate(heads):
            z[i, :, head] = rows[:, head].to(z.dtype).expand(n, -1)
        return z

    return hook


def run_from_layer(
    model: Model, resid: Float[Tensor, "batch pos d_model"], layer: int, keep: int | None = None
) -> Tensor:
    """Logits of the model run from block `layer` on, given the residual entering it.

    TransformerLens's `start_at_layer` swaps `resid` in at block `layer` but still runs the
    blocks before it; here those blocks are also taken out of the Hugging Face layer list for
    the call, so only blocks `layer`.. run. `keep`: unembed only the last `keep` positions
    (Hugging Face's `logits_to_keep`), where the model accepts it.
    """
    kwargs = {}
    if keep is not None and _accepts_logits_to_keep(model):
        kwargs["logits_to_keep"] = keep
    with _blocks_from(model, layer):
        return model.bridge(resid, start_at_layer=layer, return_type="logits", **kwargs)


def _accepts_logits_to_keep(model: Model) -> bool:
    import inspect

    forward = model.bridge.original_model.forward
    return "logits_to_keep" in inspect.signature(forward).parameters


@contextlib.contextmanager
def _blocks_from(model: Model, layer: int) -> Iterator[None]:
    blocks = model.bridge.blocks
    parent, name = _layer_list_owner(model)
    if parent is None or layer == 0:
        yield  # nothing to skip (or the layer list was not found: run everything, exactly)
        return
    setattr(parent, name, torch.nn.ModuleList(list(blocks)[layer:]))
    try:
        yield
    finally:
        setattr(parent, name, blocks)


def _layer_list_owner(model: Model) -> tuple[torch.nn.Module | None, str]:
    """The module holding the Hugging Face layer list that the bridge's blocks are."""
    cached = model.extra.get("_layer_list_owner")
    if cached is not None:
        return cached
    blocks = model.bridge.blocks
    found: tuple[torch.nn.Module | None, str] = (None, "")
    for module in model.bridge.original_model.modules():
        for child_name, child in module.named_children():
            if child is blocks:
                found = (module, child_name)
                break
        if found[0] is not None:
            break
    model.extra["_layer_list_owner"] = found
    return found


def naive_sweep(model: Model, trace: Trace, ablation: Ablation) -> Float[Tensor, "layer head"]:
    """Reference sweep: one full forward per head with a hook on its z (slow, for checks)."""
    base, _ = continuation_logprobs(model, trace)
    out = torch.zeros(model.n_layers, model.n_heads)
    for layer, head in ablation.heads:
        single = Ablation([(layer, head)], ablation.mode, ablation.values, ablation.source)
        lp, _ = continuation_logprobs(model, trace, single.hooks(model.device))
        out[layer, head] = (lp - base).sum()
    return out


def attribution_estimate(
    model: Model, trace: Trace, ablation: Ablation
) -> Float[Tensor, "layer head"]:
    """First-order estimate of each head's effect on the continuation's total log-prob:
    (z_ablated - z_clean) . d(total log-prob)/dz, from one forward and one backward pass
    (attribution patching, Kramar et al. 2024). An estimate, not an effect: on SmolLM2 it
    ranks heads only loosely and can get the sign of the largest effects wrong."""
    p, n = trace.prompt_len, trace.n_positions
    targets = trace.token_ids[p:n].to(model.device)
    layers = sorted({layer for layer, _ in ablation.heads})
    seen: dict[int, Tensor] = {}

    def keep(layer: int) -> Callable:
        def hook(z: Tensor, hook) -> Tensor:
            # a fresh node that the rest of the forward consumes, so autograd can reach it
            # (TransformerLens 4.3's backward hooks on hook_z deliver no gradient here)
            seen[layer] = z * 1.0
            return seen[layer]

        return hook

    with torch.enable_grad(), model.bridge.hooks(fwd_hooks=[(H.z(l_), keep(l_)) for l_ in layers]):
        logits = model.bridge(trace.token_ids[None].to(model.device), return_type="logits")
        lp = logits[0, p - 1 : n - 1].float().log_softmax(-1)
        metric = lp.gather(-1, targets[:, None]).sum()
        grads = torch.autograd.grad(metric, [seen[layer] for layer in layers])
    out = torch.zeros(model.n_layers, model.n_heads)
    for layer, grad in zip(layers, grads, strict=True):
        z = seen[layer][0].detach().float().cpu()  # [pos, head, d_head]
        g = grad[0].float().cpu()
        value = ablation.values[layer]
        value = value if value.shape[0] == 1 else value[: z.shape[0]]
        out[layer] = ((value - z) * g).sum((0, 2))
    selected = torch.zeros_like(out, dtype=torch.bool)
    for layer, head in ablation.heads:
        selected[layer, head] = True
    return torch.where(selected, out, torch.zeros_like(out))


# ---------------------------------------------------------------------------------------
# One call: effect on the continuation plus regeneration


@dataclass
class AblationReport:
    """What `interp ablate` computes: the teacher-forced effect and the regenerated texts."""

    def _repr_html_(self) -> str:
        from interp.report.notebook import ablation_html

        return ablation_html(self)

    ablation: Ablation
    effect: AblationEffect
    regeneration: Regeneration | None

    def summary(self) -> dict:
        """The content of effect.json."""
        e, r = self.effect, self.regeneration
        return {
            "heads": e.heads,
            "mode": e.mode,
            "source": e.source,
            "delta_logprob_total": round(e.delta_logprob_total, 6),
            "delta_logprob": [round(float(x), 6) for x in e.delta_logprob],
            "kl": [round(float(x), 6) for x in e.kl],
            "baseline_logprobs": [round(float(x), 6) for x in e.baseline_logprobs],
            "ablated_logprobs": [round(float(x), 6) for x in e.ablated_logprobs],
            "hardest": e.hardest(),
            "baseline_text": r.baseline.continuation if r else None,
            "ablated_text": r.ablated.continuation if r else None,
            "first_divergence": r.first_divergence if r else None,
            # where the divergence falls in each text, for reports that mark it
            "baseline_divergence_char": _char_offset(r.baseline, r.first_divergence) if r else None,
            "ablated_divergence_char": _char_offset(r.ablated, r.first_divergence) if r else None,
        }


def _char_offset(trace: Trace, step: int | None) -> int | None:
    if step is None or trace.model is None:
        return None
    return len(trace.model.decode(trace.continuation_ids[:step]))


def ablate(
    model: Model,
    trace: Trace,
    heads: str | Sequence[tuple[int, int]],
    mode: str = "mean",
    *,
    resample_text: str | None = None,
    regenerate_text: bool = True,
    progress: bool = False,
) -> AblationReport:
    """Ablate `heads` ("L5H1,L9H3", "L5", or (layer, head) pairs): the effect on the recorded
    continuation, and (unless `regenerate_text=False`) a regeneration with the same seed."""
    from interp.heads import parse_heads

    if isinstance(heads, str):
        heads = parse_heads(heads, model.n_layers, model.n_heads)
    ablation = make_ablation(model, trace, heads, mode, resample_text=resample_text)
    effect = ablation_effect(model, trace, ablation)
    regeneration = (
        regenerate(model, trace, ablation, progress=progress) if regenerate_text else None
    )
    return AblationReport(ablation, effect, regeneration)
