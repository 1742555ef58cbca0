"""Ablations as `Intervention`s: what replaces the value at a site
(`interp.interventions.sites`: a head's `hook_z`, a block's `hook_resid_pre`, a layer's
`hook_attn_out` or `hook_mlp_out`), at all positions or named ones, built as edits
(`replacing`), so the sweep, patching, regeneration and paired samples all run one value.

Sources of the replacement (the `mode`):
- mean (the default): the site's mean over every position of the trace; with `reference=`,
  over every position of every row of a reference `TraceSet` (the ABC-dataset style of the
  IOI work). A run with a forced continuation contributes its prompt positions only, so the
  answer it was given never leaks into the mean;
- zero: 0;
- resample: the site's value at the same position in another run: a text (`resample_text`) or
  a recorded trace (`source=`, of at least the trace's length: a patch).
With grouped-query attention one query head is replaced, not its whole KV group.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from torch import Tensor

from interp.edits.applying import Row, resolve_positions
from interp.edits.positions import Positions, as_positions
from interp.edits.value import Edit, Intervention
from interp.errors import InvalidSettingError
from interp.interventions import sites
from interp.interventions.ablation_values import (
    MODES,
    AblationMode,
    MeanOver,
    replacement_values,
)
from interp.interventions.sites import Site, Target
from interp.models.model import Model
from interp.trace.trace import Trace
from interp.trace.traceset import TraceSet

MAX_DIRNAME_HEADS = 80  # characters of head labels in a directory name


def replacing(
    site: Site,
    targets: Sequence[Target],
    values: dict[int, Tensor],
    *,
    op: AblationMode = "resample",
    positions: Sequence[int] | None = None,
    origin: str = "",
) -> Intervention:
    """The edits that put `values[layer]` in at `site` for `targets`, one edit a layer:
    `[pos or 1, head, d_head]` for heads (every head's entries; the targets' are used), `[pos
    or 1, d_model]` for a layer's site; at absolute `positions` (None: every position). What
    an ablation, a patching cell and a path-patching receiver are built from. The values are
    the model's own recorded activations, so they go in as they are (`interp.edit` checks a
    user's)."""
    out: list[Edit] = []
    at = None if positions is None else tuple(int(p) for p in positions)
    for layer in sorted({layer for layer, _ in targets}):
        heads = (
            tuple(sorted({h for l_, h in targets if l_ == layer and h is not None}))
            if site == "heads"
            else None
        )
        where = sites.at(site, layer)
        if op == "zero":
            out.append(Edit(where, "zero", at, heads))
            continue
        value = values[layer] if heads is None else values[layer][:, list(heads)]
        params = {"values": value.detach().float().cpu(), "origin": origin}
        out.append(Edit(where, op, at, heads, None, params))
    return Intervention(tuple(out))


def ablation_dirname(
    targets: Sequence[Target], mode: str, site: Site = "heads", reference: str | None = None
) -> str:
    """The directory name of an ablation under TRACE_DIR/ablations/: the targets themselves,
    or for a long list their count and a hash of it (effect.json lists them all); a mean over
    a reference set adds the set's digest, so two references never share a directory."""
    label = sites.targets_label(site, targets).replace(" ", "-")
    kind = site
    if reference is not None:
        mode = f"{mode}-ref-{reference}"
    if len(label) > MAX_DIRNAME_HEADS:
        digest = hashlib.sha256(label.encode()).hexdigest()[:12]
        return f"{len(targets)}-{kind}-{digest}-{mode}"
    return f"{label.replace(',', '_')}-{mode}"


def reference_digest(reference: TraceSet | Trace) -> str:
    """A short digest of a reference set's tokens (what its means are taken over)."""
    rows = [reference] if isinstance(reference, Trace) else list(reference)
    h = hashlib.sha256()
    for row in rows:
        h.update(f"{row.prompt_len}:{row.settings.continuation is not None}:".encode())
        h.update(row.token_ids.numpy().astype("<i8").tobytes())
    return h.hexdigest()[:8]


def make_intervention(
    model: Model,
    trace: Trace,
    targets: Sequence[Target],
    mode: AblationMode = "mean",
    *,
    site: Site = "heads",
    positions: Positions = None,
    reference: TraceSet | Trace | None = None,
    source: Trace | None = None,
    resample_text: str | None = None,
    min_positions: int | None = None,
    mean_over: MeanOver = "auto",
) -> Intervention:
    """The ablation of `targets` at `site` by `mode`'s values (see the module's docstring;
    `mode="mean"` with `reference=` a set is the reference mean, and `mean_over` which
    positions of each run it covers, see `mean_positions`), as edits, one a layer;
    `positions` limits where they replace (any positions an edit takes, resolved in `trace`)."""
    return sum(
        ablation_parts(
            model,
            trace,
            targets,
            mode,
            site=site,
            positions=positions,
            reference=reference,
            source=source,
            resample_text=resample_text,
            min_positions=min_positions,
            mean_over=mean_over,
            each=False,
        ),
        Intervention(),
    )


def ablation_parts(
    model: Model,
    trace: Trace,
    targets: Sequence[Target],
    mode: AblationMode = "mean",
    *,
    site: Site = "heads",
    positions: Positions = None,
    reference: TraceSet | Trace | None = None,
    source: Trace | None = None,
    resample_text: str | None = None,
    min_positions: int | None = None,
    mean_over: MeanOver = "auto",
    each: bool = True,
) -> list[Intervention]:
    """`make_intervention`'s ablation, one `Intervention` a target (in the targets' sorted
    order: a sweep's candidates), the values computed once; `each=False`: one for all."""
    trace.bind(model)
    site = sites.check_site(site)
    if mode == "reference":
        raise InvalidSettingError(
            "a mean over a reference set is mode='mean' with reference=the set (there is no "
            "mode 'reference')"
        )
    if mode not in MODES:
        raise InvalidSettingError(f"unknown ablation mode {mode!r}; choose one of {MODES}")
    targets = sites.check_targets(site, targets, model)
    if reference is not None and mode != "mean":
        raise InvalidSettingError(
            f"a reference set gives a mean: give it with mode 'mean', not {mode!r}"
        )
    if reference is not None and not isinstance(reference, (Trace, TraceSet)):
        raise InvalidSettingError(
            f"reference must be a Trace or a TraceSet, got {type(reference).__name__}"
        )
    at = as_positions(positions)
    chosen = None if at is None else resolve_positions(at, Row.of(trace))
    values, described = replacement_values(
        model,
        trace,
        targets,
        mode,
        site,
        reference=reference,
        source=source,
        resample_text=resample_text,
        min_positions=min_positions,
        mean_over=mean_over,
    )
    groups = [[t] for t in targets] if each else [list(targets)]
    return [
        replacing(site, group, values, op=mode, positions=chosen, origin=described)
        for group in groups
    ]


def ablation(
    model: Model,
    trace: Trace,
    targets: str | Sequence[Target],
    mode: AblationMode = "mean",
    *,
    site: Site = "heads",
    positions: Positions = None,
    reference: TraceSet | Trace | None = None,
    resample_text: str | None = None,
    mean_over: MeanOver = "auto",
) -> Intervention:
    """An ablation as an `interp.Intervention`: `targets` ("L5H1,L9H3", (layer, head) pairs or
    `interp.Head`s; a layer site's layers) with their value replaced by `mode`'s (the mean over
    `trace` or `reference`, zero, or another text's), holding the numbers, so it composes
    (`+`), runs anywhere an intervention does and replays from its JSON."""
    if isinstance(targets, str):
        targets = sites.parse_targets(targets, sites.check_site(site), model)
    return make_intervention(
        model,
        trace,
        targets,
        mode,
        site=site,
        positions=positions,
        reference=reference,
        resample_text=resample_text,
        mean_over=mean_over,
    )


def make_ablation(
    model: Model,
    trace: Trace,
    heads: Sequence[tuple[int, int]],
    mode: AblationMode = "mean",
    *,
    reference: TraceSet | Trace | None = None,
    resample_text: str | None = None,
    min_positions: int | None = None,
    mean_over: MeanOver = "auto",
) -> Intervention:
    """Heads (validated (layer, head) pairs) with their output replaced in `mode`."""
    return make_intervention(
        model,
        trace,
        list(heads),
        mode,
        reference=reference,
        resample_text=resample_text,
        min_positions=min_positions,
        mean_over=mean_over,
    )
