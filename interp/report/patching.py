"""Patching results on a page: each site as a heatmap diverging at zero (layer x head, or layer
x position labelled with the prompt's tokens) of the mean effect or of the mean patched metric
(`show`), its ten largest effects, and how they spread over rows. Reads a saved `Patching`;
never runs the model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from matplotlib.figure import Figure

from interp.errors import InvalidSettingError
from interp.interventions.metrics import describe
from interp.interventions.patching_result import Patching
from interp.interventions.patching_site import Cell, PatchingResult
from interp.models.heads import head_label
from interp.report import figures, style
from interp.report.formats import Format
from interp.report.simple import Section, render_experiment
from interp.report.writing import write_report

_WHAT = {
    "heads": "each head's output (all positions)",
    "heads-by-pos": "each head's output at one position",
    "resid": "the residual stream entering each block, at one position",
    "attn-out": "each layer's attention output, at one position",
    "mlp-out": "each layer's MLP output, at one position",
    "path": "each sender head's output, along its direct path only",
}
Show = Literal["effect", "patched"]  # a heatmap's value: the change, or the patched metric


def patching_sections(
    patching: Patching, prefix: str = "", heading: str = "", show: Show = "effect"
) -> tuple[list[Section], style.Figures]:
    """A section per site (`prefix` names its figures apart from others on the page), its
    heatmap of `show`: the mean effect, or the mean patched metric (ROME's restored value)."""
    _check_show(show)
    sections: list[Section] = []
    figs: style.Figures = {}
    into = f" into {patching.receivers}" if patching.receivers else ""
    how = (
        "the clean value into the corrupted run"
        if patching.direction == "denoise"
        else "the corrupted value into the clean run"
    )
    for site, result in patching.results.items():
        name = f"{prefix}{site}"
        heat, spread = f"{name}.png", f"{name}_rows.png"
        figs[heat] = site_figure(result, patching.tokens, into, show)
        span = ""
        if patching.window > 1 and site in ("resid", "attn-out", "mlp-out"):
            span = f" (a window of {patching.window} layers around each layer, patched at once)"
        intro = (
            f"Patched: {_WHAT[site]}{span}{into}, {how} ({patching.direction}). Effect: the change "
            f"in {describe(patching.metric)} from the run patched into; normalised, 1 is "
            f"the whole way to the other run (clean {patching.clean_metric:.3f}, corrupted "
            f"{patching.corrupted_metric:.3f}"
            + (f", means over {patching.rows} pairs" if patching.rows > 1 else "")
            + (f": each clean run under {patching.draws} noise draws" if patching.draws > 1 else "")
            + ")."
            + (
                " Red raises the metric, blue lowers it."
                if show == "effect"
                else " The heatmap shows the patched runs' metric itself, not its change."
            )
            + "".join(
                f" The {side} runs ran under {what}." for side, what in patching.under.items()
            )
            + (
                " A callable edit among them ran in the process that patched; what is saved "
                "cannot replay it."
                if patching.held_callable
                else ""
            )
        )
        if result.verified is not None:
            intro += (
                f" Triage: the {int(result.verified.sum())} of {result.verified.numel()} "
                "candidates with the largest attribution-patching estimates were patched "
                "exactly; the others are blank (an estimate ranks, it is not an effect)."
            )
        images = [heat]
        top = result.ranked(10)
        if patching.rows > 1 and top:
            figs[spread] = _spread(result, top)
            images.append(spread)
        table: list[list[object]] = [["candidate", "effect", "± SE", "normalised", "patched"]]
        for i, cell, value in top:
            se = "" if result.stderr is None else f"{float(result.stderr.flatten()[i]):.4f}"
            normalized = f"{float(result.effect_normalized.flatten()[i]):+.3f}"
            patched = f"{float(result.patched.flatten()[i]):.4f}"
            table.append([str(cell), f"{value:+.4f}", se, normalized, patched])
        title = f"{heading}{site} patching{into} ({patching.direction})"
        sections.append(Section(title, [intro], table, images))
    return sections, figs


def build_patching_report(
    directory: str | os.PathLike[str],
    title: str | None = None,
    formats: Sequence[Format] = ("png",),
    show: Show = "effect",
) -> Path:
    """Write DIR/index.html and DIR/figures/ (each figure in each of `formats`) of a saved
    patching result, its heatmaps of `show` (the effect, or the patched metric)."""
    _check_show(show)
    path = Path(directory)
    patching = Patching.load(path)
    for result in patching.results.values():  # before anything is drawn
        if result.site not in ("heads", "path"):
            figures.check_positions(int(result.effect.shape[-1]))
    sections, figs = patching_sections(patching, show=show)
    files = style.render(figs, formats)
    kind = "path patching" if patching.receivers else "activation patching"
    html = render_experiment(
        title or f"interp: {kind} ({patching.direction}, {describe(patching.metric)})",
        f"{patching.rows} pair(s) of runs; {patching.method}.",
        sections,
        style.pngs(files),
    )
    return write_report(path, html, files)


def site_figure(
    result: PatchingResult, tokens: list[str] | None, into: str = "", show: Show = "effect"
) -> Figure:
    """One site's mean effect or mean patched metric (`show`): a [layer, head] heatmap, or
    [layer or head, position]."""
    _check_show(show)
    values = (result.effect if show == "effect" else result.patched).float().numpy()
    label = f"change in {result.metric}" if show == "effect" else f"{result.metric}, patched"
    title = f"{result.site} patching{into}: mean {'effect' if show == 'effect' else 'patched'}"
    if result.site in ("heads", "path"):
        return figures.head_heatmap(values, title, label, diverging=True)
    n_pos = values.shape[-1]
    figures.check_positions(n_pos, None if tokens is None else len(tokens))
    labels = tokens if tokens is not None else [str(i) for i in range(n_pos)]
    if result.site == "heads-by-pos":  # the ten heads with the largest effect anywhere
        peak = np.nan_to_num(np.abs(values)).max(-1)
        order = np.argsort(-peak, axis=None, kind="stable")[:10]
        picked = [divmod(int(i), values.shape[1]) for i in order]
        rows = [head_label(layer, head) for layer, head in picked]
        grid = np.stack([values[layer, head] for layer, head in picked])
        return figures.position_heatmap(grid, rows, labels, f"{title} (top heads)", label)
    rows = [f"L{layer}" for layer in range(values.shape[0])]
    return figures.position_heatmap(values, rows, labels, title, label)


def _spread(result: PatchingResult, top: list[tuple[int, Cell, float]]) -> Figure:
    rows = result.per_row.flatten(1).float()
    per_row = np.stack([rows[:, i].numpy() for i, _, _ in top], axis=1)
    return figures.row_spread(
        [str(cell) for _, cell, _ in top],
        per_row,
        f"{result.site}: each row's effect (top ten)",
        f"change in {result.metric}",
    )


def _check_show(show: str) -> None:
    if show not in ("effect", "patched"):
        raise InvalidSettingError(f"show is 'effect' or 'patched', got {show!r}")
