"""The teacher-forced effect of an intervention on a trace's recorded continuation, per token
and by a metric (`interp.metrics`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from jaxtyping import Float
from torch import Tensor

from interp.edits.value import Intervention
from interp.interventions import sites
from interp.interventions.measuring import forced_logits, measure
from interp.interventions.metrics import Metric, MetricFn, kl_divergence
from interp.models.heads import Head
from interp.models.model import Model
from interp.trace.trace import Trace

INTERVENTION = "intervention"  # the mode and site of an effect of any `interp.edits` intervention


@dataclass
class AblationEffect:
    """Per generated token: log-prob of the recorded token with and without the ablation, and
    the KL divergence KL(baseline || ablated) of the next-token distribution. `heads`: the
    heads ablated (none for a layer's site or an intervention); `targets` labels what was
    ablated, for display (heads, a layer's site, or an intervention's edits); `held_callable`:
    the intervention (or the run's own) held a callable edit, run in this process only."""

    heads: list[Head]
    mode: str  # an AblationMode
    source: str
    baseline_logprobs: Float[Tensor, " step"]
    ablated_logprobs: Float[Tensor, " step"]
    kl: Float[Tensor, " step"]
    metric: str = "logprob"  # what baseline_metric and ablated_metric measure
    baseline_metric: float = 0.0
    ablated_metric: float = 0.0
    site: str = "heads"
    targets: list[str] = field(default_factory=list)
    held_callable: bool = False

    @property
    def delta_metric(self) -> float:
        return self.ablated_metric - self.baseline_metric

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
    return _step_logprobs(trace, forced_logits(model, [trace], fwd_hooks)[0])


def _step_logprobs(trace: Trace, logits: Tensor) -> tuple[Tensor, Tensor]:
    p, n = trace.prompt_len, trace.n_positions
    rows = logits[p - 1 : n - 1].float().log_softmax(-1).cpu()
    return rows.gather(-1, trace.token_ids[p:n, None])[:, 0], rows


def ablation_effect(
    model: Model,
    trace: Trace,
    ablation: Intervention,
    *,
    metric: Metric | MetricFn | str | None = None,
) -> AblationEffect:
    """The teacher-forced effect of `ablation` (an ablation's edits, or any intervention) on the
    trace's continuation: per token, and by `metric` (default: the continuation's total
    log-prob); a run recorded under an intervention is compared under it, with and without."""
    why = "an ablation's effect"
    base = measure(model, trace, metric, purpose=why)
    moved = measure(model, trace, metric, ablation, baseline=base.window, purpose=why)
    base_tokens, base_rows = _step_logprobs(trace, base.logits[0])
    moved_tokens, moved_rows = _step_logprobs(trace, moved.logits[0])
    described = sites.describe(ablation)
    if described is None:  # its edits, as the heads of an ablation are listed
        named = ([e.label for e in ablation.edits], INTERVENTION, ablation.label, INTERVENTION)
    else:
        labels = [sites.label(described.site, t) for t in described.targets]
        named = (labels, described.mode, described.source, described.site)
    return AblationEffect(
        heads=[]
        if described is None or described.site != "heads"
        else [Head(layer, head) for layer, head in described.targets if head is not None],
        mode=named[1],
        source=named[2],
        baseline_logprobs=base_tokens,
        ablated_logprobs=moved_tokens,
        kl=kl_divergence(base_rows, moved_rows),
        metric=base.bound.label,
        baseline_metric=float(base.values[0]),
        ablated_metric=float(moved.values[0]),
        site=named[3],
        targets=named[0],
        held_callable=not ablation.replayable
        or (trace.intervention is not None and not trace.intervention.replayable),
    )
