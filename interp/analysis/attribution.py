"""Direct logit attribution: how much each head, each MLP layer and the embeddings write, along
the unembedding direction of the generated token, into the final logit.

The final residual is the sum of the components: embeddings (block 0's input), each head's
write `z_h @ W_O[h]` (through a post-attention norm, as in Gemma 3, with that norm's scale on
the summed heads frozen: `interp.trace.components.head_writes`), each layer's attention bias, and
each MLP's output, which is derived exactly from the recorded residuals (`resid_pre[L+1] -
resid_pre[L] - attention output`). Each component is centred if the final norm is a LayerNorm
(the norm subtracts the mean, a linear map that distributes over the sum), divided by the final
norm's recorded scale, and dotted with `w_ln * W_U[:, token]` (`w_ln` as the norm applies it:
`1 + weight` in Gemma). The constant `b_ln . W_U[:, token] + b_U[token]` is kept apart, so
that components plus constant equal the model's logit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import overload

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.analysis.stats import mean_and_se
from interp.errors import InvalidSettingError
from interp.models import hooks as H
from interp.models.heads import Head, head_label, rank_heads
from interp.models.model import Model
from interp.models.surgery import norm_gain, norm_parameter
from interp.trace import components
from interp.trace.answers import single_token
from interp.trace.trace import Trace
from interp.trace.traceset import TraceSet


@dataclass
class AttributionResult:
    """Per generated step `j` (read at `positions[j]`, scoring `target_ids[j]`)."""

    positions: list[int]
    target_ids: Int[Tensor, " step"]  # the generated token, or the answer asked about
    embed: Float[Tensor, " step"]
    heads: Float[Tensor, "step layer head"]
    attn_bias: Float[Tensor, "step layer"]
    mlp: Float[Tensor, "step layer"]
    constant: Float[Tensor, " step"]  # final-norm bias and unembedding bias
    logits: Float[Tensor, " step"]  # the model's own logit of the target (minus distractor)
    distractor_ids: Int[Tensor, " step"] | None = None  # a logit difference: target - this

    @property
    def total(self) -> Float[Tensor, " step"]:
        """Sum of every component and the constant: equals `logits`."""
        return (
            self.embed
            + self.heads.sum((1, 2))
            + self.attn_bias.sum(1)
            + self.mlp.sum(1)
            + self.constant
        )

    def top_heads(self, k: int = 10) -> list[tuple[Head, float]]:
        """Heads with their signed mean attribution over the steps, ranked by its magnitude
        (a head that pushes the logit down ranks as high as one that pushes it up)."""
        return rank_heads(self.heads.mean(0), k, by_magnitude=True)

    def components(self, step: int) -> list[tuple[str, float]]:
        """Every component's attribution at one step, labelled, in model order."""
        n_layers, n_heads = self.heads.shape[1:]
        out = [("embed", float(self.embed[step]))]
        for layer in range(n_layers):
            out += [
                (head_label(layer, h), float(self.heads[step, layer, h])) for h in range(n_heads)
            ]
            if torch.any(self.attn_bias[:, layer] != 0):
                out.append((f"L{layer} attn bias", float(self.attn_bias[step, layer])))
            out.append((f"L{layer} MLP", float(self.mlp[step, layer])))
        out.append(("biases", float(self.constant[step])))
        return out


def attribution_hooks(n_layers: int) -> list[str]:
    names = [H.resid_pre(layer) for layer in range(n_layers)]
    names += [H.z(layer) for layer in range(n_layers)]
    return names + [H.resid_post(n_layers - 1), H.FINAL_SCALE]


@dataclass
class AttributionSetResult:
    """Direct logit attribution of every row of a `TraceSet` (`rows[i]`, as for one trace)."""

    rows: list[AttributionResult]

    def heads_mean(self) -> tuple[Float[Tensor, "layer head"], Float[Tensor, "layer head"]]:
        """(mean over rows, standard error) of each row's mean attribution per head."""
        return mean_and_se([r.heads.mean(0) for r in self.rows])

    def top_heads(self, k: int = 10) -> list[tuple[Head, float]]:
        """Heads with their signed mean attribution (the mean over rows of each row's mean
        over its steps), ranked by its magnitude."""
        return rank_heads(self.heads_mean()[0], k, by_magnitude=True)


Tokens = str | int | Sequence[str | int] | None


@overload
def direct_logit_attribution(
    model: Model, trace: Trace, *, answer: Tokens = ..., distractor: Tokens = ...
) -> AttributionResult: ...


@overload
def direct_logit_attribution(
    model: Model, trace: TraceSet, *, answer: Tokens = ..., distractor: Tokens = ...
) -> AttributionSetResult: ...


def direct_logit_attribution(
    model: Model,
    trace: Trace | TraceSet,
    *,
    answer: Tokens = None,
    distractor: Tokens = None,
) -> AttributionResult | AttributionSetResult:
    """Attribution of every head, MLP layer and the embeddings to each generated token's logit
    (at the position predicting it); with `answer`, to that token's logit at the same positions,
    and with `distractor` too, to the logit difference answer - distractor (the IOI question
    reads step 0, the last prompt position). A list gives one token per row of a set. Of a
    `TraceSet`, every row's in one pass (the rows' steps side by side), then split."""
    traces = [trace] if isinstance(trace, Trace) else list(trace)
    n_layers = model.n_layers
    for t in traces:
        t.bind(model)
        t.require_hooks(attribution_hooks(n_layers), "direct logit attribution")
    # the positions whose logits predict the generated tokens, every row's side by side
    reads = [slice(t.prompt_len - 1, t.n_positions - 1) for t in traces]

    def read(name: str) -> Tensor:
        return torch.cat([t.activations[name][r] for t, r in zip(traces, reads, strict=True)])

    if distractor is not None and answer is None:
        raise InvalidSettingError("a distractor needs an answer: the difference is answer - it")
    steps = [t.n_generated for t in traces]
    if answer is None:
        targets = torch.cat([t.token_ids[t.prompt_len :] for t in traces])
    else:
        targets = _per_step(model, answer, steps, "answer")
    against = None if distractor is None else _per_step(model, distractor, steps, "distractor")
    bridge = model.bridge

    with torch.no_grad():
        w_u_all = bridge.W_U.detach().float().cpu()
        w_u = w_u_all[:, targets]  # [d_model, step]
        if against is not None:
            w_u = w_u - w_u_all[:, against]
        b_u = _param(bridge, "b_U")
        ln = bridge.ln_final
        b_ln = norm_parameter(ln, "bias")
        project = logit_projector(model, w_u, read(H.FINAL_SCALE))

        resid = [read(H.resid_pre(layer)).float() for layer in range(n_layers)]
        resid.append(read(H.resid_post(n_layers - 1)).float())
        head_out, bias_out, mlp_out = [], [], []
        for layer in range(n_layers):
            per_head, bias = components.head_writes(model, read(H.z(layer)), layer)  # [step,h,d]
            attn_out = per_head.sum(1) + bias
            head_out.append(project(per_head))
            bias_out.append(project(bias))
            mlp_out.append(project(resid[layer + 1] - resid[layer] - attn_out))

        constant = torch.zeros(len(targets))
        if b_u is not None:
            constant = b_u[targets] - (b_u[against] if against is not None else 0.0)
        if b_ln is not None:
            constant = constant + b_ln @ w_u
        # the model's own logit, read through its real final norm module (not the algebra
        # above), for the target tokens only: no product over the whole vocabulary
        normed = ln(resid[-1].to(model.device)).float().cpu()
        logits = (normed * w_u.T).sum(-1)
        if b_u is not None:
            logits = logits + b_u[targets] - (b_u[against] if against is not None else 0.0)

    fields = {
        "target_ids": targets.clone(),
        "embed": project(resid[0]),
        "heads": torch.stack(head_out, dim=1),
        "attn_bias": torch.stack(bias_out, dim=1),
        "mlp": torch.stack(mlp_out, dim=1),
        "constant": constant,
        "logits": logits,
    }
    results, start = [], 0
    for r in reads:
        cut = slice(start, start + r.stop - r.start)
        start = cut.stop
        positions = list(range(r.start, r.stop))
        part = {k: v[cut] for k, v in fields.items()}
        results.append(
            AttributionResult(
                positions, **part, distractor_ids=None if against is None else against[cut]
            )
        )
    return results[0] if isinstance(trace, Trace) else AttributionSetResult(results)


def logit_projector(
    model: Model, w_u: Float[Tensor, "d_model step"], scale: Float[Tensor, "step 1"]
) -> Callable[..., Tensor]:
    """`project(vectors [step, ..., d])`: each step's vectors' direct effect on its logit
    direction `w_u[:, step]` (`shared=True`: vectors [n, d] alike at every step -> [step, n]),
    through the final norm with its recorded `scale` frozen (centred first where the norm is a
    LayerNorm; `w_ln` applied as the norm applies it)."""
    w_ln = norm_gain(model, model.bridge.ln_final)
    layer_norm = model.cfg.normalization_type in ("LN", "LNPre")
    direction = w_u if w_ln is None else w_u * w_ln[:, None]
    rows = direction.T.contiguous()  # [step, d_model]
    scale = scale.float()

    def project(vectors: Float[Tensor, "step ... d_model"], shared: bool = False) -> Tensor:
        # a product and a sum, not an einsum: the einsum runs one tiny matmul per step
        if layer_norm:
            vectors = vectors - vectors.mean(-1, keepdim=True)
        if shared:  # the same vectors [n, d] at every step: one matmul -> [step, n]
            return (rows @ vectors.T) / scale.view(-1, 1)
        middle = [1] * (vectors.dim() - 2)
        dots = (vectors * rows.view(-1, *middle, rows.shape[-1])).sum(-1)
        return dots / scale.view(-1, *middle)

    return project


def _per_step(model: Model, tokens: Tokens, steps: list[int], what: str) -> Tensor:
    """One token id per step: one token for every row, or a list with one per row."""
    if isinstance(tokens, (str, int)):
        tokens = [tokens] * len(steps)
    assert tokens is not None
    if len(tokens) != len(steps):
        raise InvalidSettingError(f"{len(tokens)} {what} tokens for {len(steps)} rows")
    ids = [single_token(model, t, f"the {what}") for t in tokens]
    return torch.cat(
        [torch.full((n,), i, dtype=torch.long) for i, n in zip(ids, steps, strict=True)]
    )


def _param(module, name: str) -> Tensor | None:
    value = getattr(module, name, None)
    return None if value is None else value.detach().float().cpu()
