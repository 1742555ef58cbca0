"""Metrics: the number an effect is measured by, one per row.

A metric reads the logits of a teacher-forced run over one or more traces (`[row, pos, vocab]`,
the rows right-padded) and gives one number per row. Built in:
- `log_prob()`: the continuation's total log-prob (the default; the sum of the recorded tokens'
  log-probs);
- `logit_diff(answer, distractor)`: logit(answer) - logit(distractor) at the last prompt
  position (the one predicting the first continuation token) or a named position;
- `prob(answer)`: the probability of `answer` there;
- `kl()`: the mean over the continuation's steps of KL(baseline || this run), 0 for the
  baseline itself;
- any callable `(logits [row, pos, vocab], traces) -> [row]`.
An answer or distractor left out is read per row from the row's `meta` (a JSON Lines prompts
file's fields: "answer" and "distractor" as texts, or "answer_id" and "distractor_id" as token
ids).

`bind(model, traces)` resolves a metric for some rows: its answers as token ids (a text that
is not one token is an error showing how it tokenizes) and the first position it reads, so a
runner need only unembed positions from there on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InvalidSettingError
from interp.interventions import metric_reading as reading
from interp.interventions.metric_reading import Position
from interp.models.model import Model
from interp.trace.answers import Answer, row_tokens
from interp.trace.answers import single_token as single_token  # part of the metrics API
from interp.trace.trace import Trace

MetricFn = Callable[[Tensor, Sequence[Trace]], Tensor]
METRIC_NAMES = ("logprob", "logit-diff", "prob", "kl")


@dataclass
class Bound:
    """A metric resolved for some rows: `score(window)` of logits over positions `start..`
    (`[row, pos - start, vocab]`) -> `[row]`. `prepare(window)` shows it the baseline run's
    logits first (KL keeps them)."""

    label: str
    start: int
    score: Callable[[Tensor], Tensor]
    prepare: Callable[[Tensor], None] = field(default=lambda window: None)


class Metric:
    """A metric (see the module's docstring); `label` names it in results."""

    label: str = "metric"

    def bind(self, model: Model, traces: Sequence[Trace]) -> Bound:
        raise NotImplementedError

    def check(self, model: Model) -> Metric:
        """Check what the model alone decides (each given answer one token of its vocabulary,
        the answer not the distractor), before any row runs; returns the metric."""
        return self


class LogProb(Metric):
    """The recorded continuation's total log-prob."""

    label = "logprob"

    def bind(self, model: Model, traces: Sequence[Trace]) -> Bound:
        start = min(t.prompt_len - 1 for t in traces)
        index, mask = reading.continuation_index(traces, start)

        def score(window: Tensor) -> Tensor:
            return (reading.token_logprobs(window, index) * mask.to(window.device)).sum(-1)

        return Bound(self.label, start, score)

    @staticmethod
    def per_token(window: Tensor, traces: Sequence[Trace], start: int) -> Tensor:
        """Each recorded continuation token's log-prob, `[row, step]` (0 after a row's end)."""
        index, mask = reading.continuation_index(traces, start)
        return reading.token_logprobs(window, index) * mask.to(window.device)


@dataclass
class LogitDiff(Metric):
    answer: Answer = None
    distractor: Answer = None
    position: Position = "last_prompt"

    def __post_init__(self) -> None:
        _check_fields(self.position, answer=self.answer, distractor=self.distractor)

    def check(self, model: Model) -> Metric:
        ids = [single_token(model, a, f"the {k}") for k, a in self._given()]
        if len(ids) == 2 and ids[0] == ids[1]:
            raise InvalidSettingError(
                f"the answer and the distractor are the same token of {model.name} "
                f"({model.token_strs(ids[:1])[0]!r}): their logit difference is 0 whatever the "
                "model does"
            )
        return self

    def _given(self) -> list[tuple[str, str | int]]:
        pairs = (("answer", self.answer), ("distractor", self.distractor))
        return [(k, a) for k, a in pairs if a is not None]

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"logit-diff:{_shown(self.answer, 'answer')},{_shown(self.distractor, 'distractor')}"

    def bind(self, model: Model, traces: Sequence[Trace]) -> Bound:
        answers = row_tokens(model, traces, self.answer, "answer")
        distractors = row_tokens(model, traces, self.distractor, "distractor")
        same = (answers == distractors).nonzero().flatten().tolist()
        if same:
            t = traces[same[0]]
            raise InvalidSettingError(
                f"{t.origin or f'row {same[0]}'}: the answer and the distractor are the same "
                f"token ({model.token_strs([int(answers[same[0]])])[0]!r}): their logit "
                "difference is 0 whatever the model does"
            )
        positions = reading.positions(traces, self.position)
        start = min(positions)

        def score(window: Tensor) -> Tensor:
            at = reading.at(window, positions, start)  # [row, vocab]
            rows = torch.arange(len(positions), device=at.device)
            return at[rows, answers.to(at.device)] - at[rows, distractors.to(at.device)]

        return Bound(self.label, start, score)


@dataclass
class Prob(Metric):
    answer: Answer = None
    position: Position = "last_prompt"

    def __post_init__(self) -> None:
        _check_fields(self.position, answer=self.answer)

    def check(self, model: Model) -> Metric:
        if self.answer is not None:
            single_token(model, self.answer, "the answer")
        return self

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"prob:{_shown(self.answer, 'answer')}"

    def bind(self, model: Model, traces: Sequence[Trace]) -> Bound:
        answers = row_tokens(model, traces, self.answer, "answer")
        positions = reading.positions(traces, self.position)
        start = min(positions)

        def score(window: Tensor) -> Tensor:
            at = reading.at(window, positions, start).float().softmax(-1)
            return at[torch.arange(len(positions), device=at.device), answers.to(at.device)]

        return Bound(self.label, start, score)


class KL(Metric):
    """Mean over the continuation's steps of KL(baseline || this run), in nats."""

    label = "kl"

    def bind(self, model: Model, traces: Sequence[Trace]) -> Bound:
        start = min(t.prompt_len - 1 for t in traces)
        index, mask = reading.continuation_index(traces, start)
        kept: dict[str, Tensor] = {}

        def steps(window: Tensor) -> Tensor:  # [row, step, vocab] log-probs
            rows = torch.arange(window.shape[0], device=window.device)[:, None]
            return window[rows, index[0].to(window.device)].float().log_softmax(-1)

        def prepare(window: Tensor) -> None:
            kept["base"] = steps(window).detach()

        def score(window: Tensor) -> Tensor:
            if "base" not in kept:
                raise InvalidSettingError("the KL metric needs the baseline run first")
            base, run = kept["base"].to(window.device), steps(window)
            kl = kl_divergence(base, run)  # [row, step]
            m = mask.to(kl.device)
            return (kl * m).sum(-1) / m.sum(-1).clamp_min(1)

        return Bound(self.label, start, score, prepare)


@dataclass
class Custom(Metric):
    """Any callable `(logits [row, pos, vocab], traces) -> [row]`, over every position."""

    fn: MetricFn
    name: str = "custom"

    @property
    def label(self) -> str:  # type: ignore[override]
        return self.name

    def bind(self, model: Model, traces: Sequence[Trace]) -> Bound:
        rows = list(traces)

        def score(window: Tensor) -> Tensor:
            out = self.fn(window, rows)
            if not isinstance(out, Tensor) or out.shape != (len(rows),):
                shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise InvalidSettingError(
                    f"the metric {self.name!r} must return a tensor of shape [{len(rows)}] "
                    f"(one number per row), got {shape}"
                )
            bad = (~torch.isfinite(out.detach().float())).nonzero().flatten().tolist()
            if bad:
                named = list(
                    dict.fromkeys(rows[i].origin or repr(rows[i].prompt[:40]) for i in bad)
                )
                shown = ", ".join(named[:4])
                more = f" and {len(named) - 4} more" if len(named) > 4 else ""
                raise InvalidSettingError(
                    f"the metric {self.name!r} returned a non-finite value "
                    f"({float(out[bad[0]])}) for the row of {shown}{more}"
                )
            return out

        return Bound(self.label, 0, score)


def kl_divergence(
    p: Float[Tensor, "... vocab"], q: Float[Tensor, "... vocab"]
) -> Float[Tensor, " ..."]:
    """KL(p || q) = sum p (log p - log q) over the last dimension, from log-probs `p` and `q`;
    at least 0 (rounding can dip below where the two agree)."""
    return (p.exp() * (p - q)).sum(-1).clamp_min(0)


def log_prob() -> Metric:
    return LogProb()


def logit_diff(
    answer: Answer = None,
    distractor: Answer = None,
    *,
    position: Position = "last_prompt",
    model: Model | None = None,
) -> Metric:
    """logit(answer) - logit(distractor); with `model=`, each checked now to be one of its
    tokens (a two-token " Agra" is refused here, not at the first forward pass)."""
    metric = LogitDiff(answer, distractor, position)
    return metric if model is None else metric.check(model)


def prob(
    answer: Answer = None, *, position: Position = "last_prompt", model: Model | None = None
) -> Metric:
    """The probability of `answer`; with `model=`, checked now to be one of its tokens."""
    metric = Prob(answer, position)
    return metric if model is None else metric.check(model)


def kl() -> Metric:
    return KL()


def as_metric(metric: Metric | MetricFn | str | None) -> Metric:
    """A metric from what a caller gave: None (log-prob), a Metric, a callable, or a spec
    as the CLI writes it (`parse`)."""
    if metric is None:
        return LogProb()
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        return parse(metric)
    if callable(metric):
        return Custom(metric, getattr(metric, "__name__", "custom"))
    raise InvalidSettingError(f"a metric must be a Metric, a callable or a name, got {metric!r}")


def parse(spec: str) -> Metric:
    """`logprob`, `kl`, `logit-diff` (answers per row), `logit-diff:" Mary"," John"`,
    `prob` or `prob:" Paris"` (the texts as JSON strings, so spaces are kept)."""
    import json

    name, _, rest = spec.partition(":")
    if name not in METRIC_NAMES:
        raise InvalidSettingError(
            f'unknown metric {spec!r}; choose logprob, kl, logit-diff[:"A","B"] or prob[:"A"]'
        )
    texts: list[str] = []
    if rest:
        try:
            texts = json.loads(f"[{rest}]")
        except ValueError:
            texts = []
        if not texts or not all(isinstance(t, str) for t in texts):
            raise InvalidSettingError(
                f'the metric {spec!r}: give its tokens as JSON strings, e.g. logit-diff:" Mary",'
                '" John"'
            )
    wanted = {"logprob": 0, "kl": 0, "logit-diff": 2, "prob": 1}[name]
    if texts and len(texts) != wanted:
        raise InvalidSettingError(f"the metric {name} takes {wanted} tokens, got {len(texts)}")
    if name == "logprob":
        return LogProb()
    if name == "kl":
        return KL()
    if name == "prob":
        return Prob(texts[0] if texts else None)
    return LogitDiff(texts[0], texts[1]) if texts else LogitDiff()


def describe(label: str) -> str:
    """A metric's label (as results carry it) in words."""
    if label == "logprob":
        return "the continuation's total log-prob"
    if label == "kl":
        return "the mean KL from the baseline"
    return label


def _shown(answer: Answer, key: str) -> str:
    """A token as a label shows it; each row's own field as `<answer>`."""
    return f"<{key}>" if answer is None else repr(answer)


def _check_fields(position: Position, **answers: Answer) -> None:
    """A metric's fields as built: each answer a text, a token id or None; its position an
    index or "last_prompt"."""
    for key, a in answers.items():
        if isinstance(a, bool) or not isinstance(a, str | int | None):
            raise InvalidSettingError(f"the {key} is a text, a token id or None, got {a!r:.40}")
    if position != "last_prompt" and (isinstance(position, bool) or not isinstance(position, int)):
        raise InvalidSettingError(f"a position is an index or 'last_prompt', got {position!r:.40}")
