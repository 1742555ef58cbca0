"""Matplotlib figures (`matplotlib.figure.Figure` directly: no pyplot state), each built under
one style (`interp.report.style`) at a column's or a page's width, and written out in every
format asked for by `style.render`. Every token on an axis gets its label: long sequences are
split into panels, or the figure grows with them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from interp.errors import InvalidSettingError
from interp.report.style import COLUMN, PAGE, styled
from interp.report.tokens import short

KL_FLOOR = 1e-3  # the lowest KL a log axis shows (nats)
ROBUST_PERCENTILE = 98  # where a robust colour scale ends
LENS_PANEL = 50  # generated tokens per panel of the logit-lens heatmap
ATTENTION_POSITIONS = 32  # the attention figure's last positions (the page's views show more)
TOKEN_PITCH = 0.1  # inches per labelled token (a 5.5-pt label and its gap)
POSITION_PITCH = 0.16  # inches per position of a position heatmap (its label and index)
MAX_POSITIONS = 1024  # positions one position heatmap labels (about 166 inches wide)


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


@styled
def logit_lens_heatmap(
    probs: np.ndarray, layers: Sequence[str], tokens: Sequence[str], title: str
) -> Figure:
    """[layer, step] probability of the generated token under each layer's lens, in panels of
    at most `LENS_PANEL` tokens, every token labelled."""
    n_layers, n_steps = probs.shape
    starts = list(range(0, max(n_steps, 1), LENS_PANEL))
    panel_h = 0.9 + TOKEN_PITCH * n_layers
    fig = _figure(PAGE, 0.4 + panel_h * len(starts))
    axes = fig.subplots(len(starts), 1, squeeze=False)[:, 0]
    im = None
    for ax, start in zip(axes, starts, strict=True):
        stop = min(start + LENS_PANEL, n_steps)
        im = ax.imshow(
            probs[:, start:stop],
            aspect="auto",
            cmap="viridis",
            vmin=0,
            vmax=1,
            origin="lower",
            extent=(start - 0.5, stop - 0.5, -0.5, n_layers - 0.5),
        )
        if len(starts) > 1:  # every panel at one scale
            ax.set_xlim(start - 0.5, start + LENS_PANEL - 0.5)
        ax.set_yticks(range(n_layers), list(layers), fontsize=5.5)
        ax.set_xticks(
            range(start, stop),
            [short(t, 10) for t in tokens[start:stop]],
            rotation=90,
            fontsize=6,
        )
        ax.set_ylabel("layer", fontsize=7)
    axes[-1].set_xlabel("generated token")
    fig.suptitle(title)
    if im is not None:
        fig.colorbar(im, ax=list(axes), label="probability of the generated token", shrink=0.8)
    return fig


@styled
def lens_curves(
    mean_kl: np.ndarray,
    agreement: np.ndarray,
    layers: Sequence[str],
    errors: tuple[np.ndarray, np.ndarray] | None = None,
) -> Figure:
    """Per-layer mean KL to the final layer, and top-1 agreement with it; with `errors`
    (their standard errors over a set's rows), a band of one standard error each side."""
    fig = _figure(PAGE, 3.0)
    ax = fig.add_subplot()
    x = np.arange(len(layers))
    # a plain log axis; values under the floor (the final layer's own 0) sit on it
    shown = np.maximum(mean_kl, KL_FLOOR)
    ax.plot(x, shown, marker="o", color="tab:blue", label="mean KL(final || layer)")
    if errors is not None:
        kl_se = np.nan_to_num(errors[0])
        low, high = np.maximum(mean_kl - kl_se, KL_FLOOR), np.maximum(mean_kl + kl_se, KL_FLOOR)
        ax.fill_between(x, low, high, color="tab:blue", alpha=0.2)
    ax.set_yscale("log")
    ax.set_ylim(bottom=KL_FLOOR / 1.5)
    ax.set_ylabel(f"mean KL (nats; below {KL_FLOOR:g} drawn at {KL_FLOOR:g})", color="tab:blue")
    ax2 = ax.twinx()
    ax2.spines["right"].set_visible(True)  # the style hides it; this axis reads from it
    ax2.plot(x, agreement, marker="s", color="tab:orange", label="top-1 agreement")
    if errors is not None:
        a_se = np.nan_to_num(errors[1])
        ax2.fill_between(x, agreement - a_se, agreement + a_se, color="tab:orange", alpha=0.2)
    ax2.set_ylabel("top-1 agreement with the final layer", color="tab:orange")
    ax2.set_ylim(0, 1.05)
    ax.set_xticks(x, list(layers), rotation=90, fontsize=6)
    ax.set_xlabel("layer")
    ax.set_title("Logit lens: where the lens can be trusted")
    return fig


@styled
def attention_grid(
    patterns: np.ndarray, names: Sequence[str], tokens: Sequence[str], title: str
) -> Figure:
    """[query, key] patterns, one panel per head, two panels across a page: the last
    `ATTENTION_POSITIONS` positions, each labelled."""
    n = len(tokens)
    keep = min(n, ATTENTION_POSITIONS)
    labels = [short(t, 8) for t in tokens[n - keep :]]
    k = len(names)
    cols = min(2, k)
    rows = int(np.ceil(k / cols))
    side = PAGE / 2
    fig = _figure(side * cols, 0.5 + (side + 0.2) * rows)
    for i, (pattern, name) in enumerate(zip(patterns, names, strict=True)):
        ax = fig.add_subplot(rows, cols, i + 1)
        im = ax.imshow(pattern[n - keep :, n - keep :], cmap="Blues", vmin=0, vmax=1)
        ax.set_title(name, fontsize=8)
        ax.set_xticks(range(keep), labels, rotation=90, fontsize=5)
        ax.set_yticks(range(keep), labels, fontsize=5)
        ax.set_xlabel("key (attended to)", fontsize=6)
        ax.set_ylabel("query", fontsize=6)
        fig.colorbar(im, ax=ax, fraction=0.046)
    shown = f"the last {keep} of {n} positions" if keep < n else f"all {n} positions"
    fig.suptitle(f"{title} ({shown})")
    return fig


def colour_limit(values: np.ndarray, robust: bool) -> tuple[float, np.ndarray]:
    """A diverging scale's limit (the largest |value|, or with `robust` its 98th percentile)
    and the cells beyond it (none without `robust`)."""
    finite = np.abs(values[np.isfinite(values)])
    peak = float(finite.max()) if finite.size else 1.0
    bound = float(np.percentile(finite, ROBUST_PERCENTILE)) if robust and finite.size else peak
    bound = bound or peak or 1.0
    beyond = np.nan_to_num(np.abs(values)) > bound * (1 + 1e-9)
    return bound, beyond if robust else np.zeros_like(beyond)


@styled
def head_heatmap(
    values: np.ndarray,
    title: str,
    label: str,
    *,
    diverging: bool = False,
    cmap: str = "magma",
    robust: bool = False,
) -> Figure:
    """[layer, head] values; diverging maps are centred at zero. `robust`: the colour scale
    ends at the 98th percentile of |value|, so a few huge cells do not wash out the rest;
    the clipped cells are marked and the limit is said on the colour bar."""
    n_layers, n_heads = values.shape
    fig = _figure(min(PAGE, max(COLUMN * 0.8, 1.6 + 0.42 * n_heads)), 1.2 + 0.16 * n_layers)
    ax = fig.add_subplot()
    shown = np.ma.masked_invalid(values)
    if diverging:
        bound, beyond = colour_limit(values, robust)
        norm = TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound)
        im = ax.imshow(shown, aspect="auto", cmap="RdBu_r", norm=norm, origin="lower")
        clipped = np.argwhere(beyond)
        if clipped.size:
            ax.scatter(clipped[:, 1], clipped[:, 0], marker="x", s=14, color="#111", linewidths=0.8)
            label = (
                f"{label}\n(scale ends at the {ROBUST_PERCENTILE}th percentile of |value|, "
                f"±{bound:.3g}; x: beyond it)"
            )
    else:
        im = ax.imshow(shown, aspect="auto", cmap=cmap, origin="lower")
    ax.set_xticks(range(n_heads), [f"H{h}" for h in range(n_heads)], fontsize=7)
    ax.set_yticks(range(n_layers), [f"L{layer}" for layer in range(n_layers)], fontsize=7)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=8, wrap=True)
    fig.colorbar(im, ax=ax, label=label)
    return fig


@styled
def head_roles_figure(scores: np.ndarray, roles: Sequence[str]) -> Figure:
    """One [layer, head] heatmap per role score."""
    n_layers, n_heads = scores.shape[1:]
    fig = _figure(PAGE, 1.2 + 0.13 * n_layers)
    for i, role in enumerate(roles):
        ax = fig.add_subplot(1, len(roles), i + 1)
        im = ax.imshow(scores[i], aspect="auto", cmap="viridis", vmin=0, vmax=1, origin="lower")
        ax.set_title(role.replace("_", " "), fontsize=8)
        ax.set_xticks(range(n_heads), [str(h) for h in range(n_heads)], fontsize=5.5)
        ax.set_yticks(range(n_layers), [f"L{x}" for x in range(n_layers)], fontsize=5)
        ax.set_xlabel("head")
        fig.colorbar(im, ax=ax, fraction=0.05)
    fig.suptitle("Head role scores (mean attention weight on the role's target position)")
    return fig


@styled
def loss_bars(labels: Sequence[str], values: Sequence[float], title: str, ylabel: str) -> Figure:
    fig = _figure(min(PAGE, max(COLUMN, 0.9 * len(labels))), 2.8)
    ax = fig.add_subplot()
    bars = ax.bar(range(len(labels)), values, color="tab:purple")
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig


@styled
def loss_curves(x: np.ndarray, curves: dict[str, np.ndarray], boundary: int) -> Figure:
    """Next-token loss along a sequence, one line per condition; a marker where the repeat
    starts."""
    fig = _figure(PAGE, 2.8)
    ax = fig.add_subplot()
    for name, y in curves.items():
        ax.plot(x, y, label=name, linewidth=1.2)
    ax.axvline(boundary, color="grey", linestyle="--", linewidth=1)
    ax.text(boundary, ax.get_ylim()[1] * 0.95, " second copy starts", fontsize=8, color="grey")
    ax.set_xlabel("position of the predicted token")
    ax.set_ylabel("next-token loss (nats)")
    ax.set_title("Loss along the probe")
    ax.legend(fontsize=7)
    return fig


@styled
def position_heatmap(
    values: np.ndarray,
    rows: Sequence[str],
    tokens: Sequence[str],
    title: str,
    label: str,
    *,
    xlabel: str = "position (token)",
) -> Figure:
    """[row, pos] values (a layer or a head per row), diverging at zero, every position
    labelled with its token and index (one label a position, `MAX_POSITIONS` at most); with
    another `xlabel`, any labelled axis (layers, say), labelled as given."""
    n_rows, n_pos = values.shape
    check_positions(n_pos, len(tokens))
    fig = _figure(max(COLUMN, 2.0 + POSITION_PITCH * n_pos), 1.6 + 0.14 * n_rows)
    ax = fig.add_subplot()
    bound = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-(bound or 1.0), vmax=bound or 1.0)
    im = ax.imshow(
        np.ma.masked_invalid(values), aspect="auto", cmap="RdBu_r", norm=norm, origin="lower"
    )
    positions = xlabel == "position (token)"
    ticks = [f"{short(t)} ({i})" if positions else t for i, t in enumerate(tokens)]
    ax.set_xticks(range(n_pos), ticks, rotation=90, fontsize=6)
    ax.set_yticks(range(n_rows), list(rows), fontsize=6)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=8)
    fig.colorbar(im, ax=ax, label=label)
    return fig


def check_positions(n_pos: int, n_labels: int | None = None) -> None:
    """Refuse a position axis that cannot be drawn right: labels that do not match its
    positions, or more positions than one figure can label."""
    if n_labels is not None and n_labels != n_pos:
        raise InvalidSettingError(
            f"the heatmap has {n_pos} positions but {n_labels} token labels: give one label "
            "a position"
        )
    if n_pos > MAX_POSITIONS:
        raise InvalidSettingError(
            f"a position heatmap labels every position: {n_pos:,} positions would make a "
            f"figure about {2.0 + POSITION_PITCH * n_pos:,.0f} inches wide, more than the "
            f"{MAX_POSITIONS:,} positions one figure holds"
        )


@styled
def row_spread(labels: Sequence[str], per_row: np.ndarray, title: str, label: str) -> Figure:
    """Each row's value (dots) of a few candidates ([row, candidate]), with their mean and
    its standard error (bars), candidates left to right."""
    n_rows, k = per_row.shape
    fig = _figure(min(PAGE, max(COLUMN, 1.2 + 0.45 * k)), 2.6)
    ax = fig.add_subplot()
    jitter = np.linspace(-0.18, 0.18, n_rows) if n_rows > 1 else np.zeros(1)
    for j in range(k):
        ax.scatter(j + jitter, per_row[:, j], s=9, color="#7b8794", zorder=2)
    mean = per_row.mean(0)
    se = per_row.std(0, ddof=1) / np.sqrt(n_rows) if n_rows > 1 else np.zeros(k)
    ax.errorbar(range(k), mean, yerr=se, fmt="o", color="#c0392b", capsize=4, zorder=3)
    ax.axhline(0.0, color="#444", linewidth=0.7)
    ax.set_xticks(range(k), list(labels), rotation=45, ha="right", fontsize=6)
    ax.set_ylabel(label)
    ax.set_title(title, fontsize=8)
    return fig


@styled
def divergence_histogram(positions: dict[str, list[int]], horizon: int) -> Figure:
    """Where each pair's texts first part (a generated-token index; `horizon`: not within
    it), one bar series per intervention."""
    fig = _figure(COLUMN * 1.4, 2.4)
    ax = fig.add_subplot()
    bins = [i - 0.5 for i in range(horizon + 2)]
    ax.hist(list(positions.values()), bins=bins, label=list(positions), histtype="bar")
    ax.set_xlabel(f"first diverging generated token ({horizon}: none within {horizon})")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=7)
    ax.set_title("First divergence of the paired texts", fontsize=8)
    return fig


@styled
def kl_bands(curves: dict[str, np.ndarray]) -> Figure:
    """Mean KL(baseline || intervened) at each generated step over the pairs, with its 95%
    band (`[3, step]`: mean, low, high), one curve per intervention."""
    fig = _figure(COLUMN * 1.4, 2.4)
    ax = fig.add_subplot()
    for label, band in curves.items():
        x = np.arange(band.shape[1])
        (line,) = ax.plot(x, band[0], label=label, linewidth=1.4)
        ax.fill_between(x, band[1], band[2], color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("generated token")
    ax.set_ylabel("KL (nats)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax.set_title("KL(baseline || intervened) along the baseline's tokens", fontsize=8)
    return fig
