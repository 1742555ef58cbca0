"""Matplotlib figures as PNG bytes. `matplotlib.figure.Figure` directly: no pyplot state."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from interp.report.tokens import short

DPI = 110
KL_FLOOR = 1e-3  # the lowest KL a log axis shows (nats)
ROBUST_PERCENTILE = 98  # where a robust colour scale ends


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _tick_labels(labels: Sequence[str], max_ticks: int = 60) -> tuple[list[int], list[str]]:
    step = max(1, int(np.ceil(len(labels) / max_ticks)))
    idx = list(range(0, len(labels), step))
    return idx, [short(labels[i]) for i in idx]


def logit_lens_heatmap(
    probs: np.ndarray, layers: Sequence[str], tokens: Sequence[str], title: str
) -> bytes:
    """[layer, step] probability of the generated token under each layer's lens."""
    width = min(24, 4 + 0.16 * probs.shape[1])
    fig = Figure(figsize=(width, max(3.0, 1.6 + 0.18 * probs.shape[0])))
    ax = fig.add_subplot()
    im = ax.imshow(probs, aspect="auto", cmap="viridis", vmin=0, vmax=1, origin="lower")
    ax.set_yticks(range(len(layers)), layers, fontsize=7)
    idx, labels = _tick_labels(tokens)
    ax.set_xticks(idx, labels, rotation=90, fontsize=7)
    ax.set_xlabel("generated token")
    ax.set_ylabel("layer (residual stream entering the block)")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="probability of the generated token")
    return _png(fig)


def lens_curves(
    mean_kl: np.ndarray,
    agreement: np.ndarray,
    layers: Sequence[str],
    errors: tuple[np.ndarray, np.ndarray] | None = None,
) -> bytes:
    """Per-layer mean KL to the final layer, and top-1 agreement with it; with `errors`
    (their standard errors over a set's rows), a band of one standard error each side."""
    fig = Figure(figsize=(9, 4))
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
    ax2.plot(x, agreement, marker="s", color="tab:orange", label="top-1 agreement")
    if errors is not None:
        a_se = np.nan_to_num(errors[1])
        ax2.fill_between(x, agreement - a_se, agreement + a_se, color="tab:orange", alpha=0.2)
    ax2.set_ylabel("top-1 agreement with the final layer", color="tab:orange")
    ax2.set_ylim(0, 1.05)
    idx, labels = _tick_labels(list(layers), 32)
    ax.set_xticks(idx, labels, rotation=90, fontsize=7)
    ax.set_xlabel("layer")
    ax.set_title("Logit lens: where the lens can be trusted")
    return _png(fig)


def attention_grid(
    patterns: np.ndarray, names: Sequence[str], tokens: Sequence[str], title: str
) -> bytes:
    """A grid of [query, key] patterns, one panel per head."""
    k = len(names)
    cols = min(3, k)
    rows = int(np.ceil(k / cols))
    fig = Figure(figsize=(4.6 * cols, 4.4 * rows))
    for i, (pattern, name) in enumerate(zip(patterns, names, strict=True)):
        ax = fig.add_subplot(rows, cols, i + 1)
        im = ax.imshow(pattern, cmap="Blues", vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
        idx, labels = _tick_labels(tokens, 20)
        ax.set_xticks(idx, labels, rotation=90, fontsize=6)
        ax.set_yticks(idx, labels, fontsize=6)
        ax.set_xlabel("key (attended to)", fontsize=7)
        ax.set_ylabel("query", fontsize=7)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(title)
    fig.subplots_adjust(hspace=0.45, wspace=0.45)  # room for tick labels and colour bars
    return _png(fig)


def colour_limit(values: np.ndarray, robust: bool) -> tuple[float, np.ndarray]:
    """A diverging scale's limit (the largest |value|, or with `robust` its 98th percentile)
    and the cells beyond it (none without `robust`)."""
    finite = np.abs(values[np.isfinite(values)])
    peak = float(finite.max()) if finite.size else 1.0
    bound = float(np.percentile(finite, ROBUST_PERCENTILE)) if robust and finite.size else peak
    bound = bound or peak or 1.0
    beyond = np.nan_to_num(np.abs(values)) > bound * (1 + 1e-9)
    return bound, beyond if robust else np.zeros_like(beyond)


def head_heatmap(
    values: np.ndarray,
    title: str,
    label: str,
    *,
    diverging: bool = False,
    cmap: str = "magma",
    robust: bool = False,
) -> bytes:
    """[layer, head] values; diverging maps are centred at zero. `robust`: the colour scale
    ends at the 98th percentile of |value|, so a few huge cells do not wash out the rest;
    the clipped cells are marked and the limit is said on the colour bar."""
    n_layers, n_heads = values.shape
    fig = Figure(figsize=(1.2 + 0.55 * n_heads, 1.2 + 0.24 * n_layers))
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
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label=label)
    return _png(fig)


def head_roles_figure(scores: np.ndarray, roles: Sequence[str]) -> bytes:
    """One [layer, head] heatmap per role score."""
    n_layers, n_heads = scores.shape[1:]
    fig = Figure(figsize=(3.6 * len(roles), 1.5 + 0.2 * n_layers))
    for i, role in enumerate(roles):
        ax = fig.add_subplot(1, len(roles), i + 1)
        im = ax.imshow(scores[i], aspect="auto", cmap="viridis", vmin=0, vmax=1, origin="lower")
        ax.set_title(role.replace("_", " "), fontsize=10)
        ax.set_xticks(range(n_heads), [str(h) for h in range(n_heads)], fontsize=6)
        ax.set_yticks(range(0, n_layers, 2), [f"L{x}" for x in range(0, n_layers, 2)], fontsize=6)
        ax.set_xlabel("head")
        fig.colorbar(im, ax=ax, fraction=0.05)
    fig.suptitle("Head role scores (mean attention weight on the role's target position)")
    fig.subplots_adjust(wspace=0.45)
    return _png(fig)


def loss_bars(labels: Sequence[str], values: Sequence[float], title: str, ylabel: str) -> bytes:
    fig = Figure(figsize=(max(5, 1.3 * len(labels)), 4))
    ax = fig.add_subplot()
    bars = ax.bar(range(len(labels)), values, color="tab:purple")
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _png(fig)


def loss_curves(x: np.ndarray, curves: dict[str, np.ndarray], boundary: int) -> bytes:
    """Next-token loss along a sequence, one line per condition; a marker where the repeat
    starts."""
    fig = Figure(figsize=(10, 4))
    ax = fig.add_subplot()
    for name, y in curves.items():
        ax.plot(x, y, label=name, linewidth=1.2)
    ax.axvline(boundary, color="grey", linestyle="--", linewidth=1)
    ax.text(boundary, ax.get_ylim()[1] * 0.95, " second copy starts", fontsize=8, color="grey")
    ax.set_xlabel("position of the predicted token")
    ax.set_ylabel("next-token loss (nats)")
    ax.set_title("Loss along the probe")
    ax.legend(fontsize=8)
    return _png(fig)


def position_heatmap(
    values: np.ndarray, rows: Sequence[str], tokens: Sequence[str], title: str, label: str
) -> bytes:
    """[row, pos] values (a layer or a head per row), diverging at zero, every position
    labelled with its token."""
    n_rows, n_pos = values.shape
    fig = Figure(figsize=(min(24.0, 2.4 + 0.34 * n_pos), 1.4 + 0.22 * n_rows))
    ax = fig.add_subplot()
    bound = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-(bound or 1.0), vmax=bound or 1.0)
    im = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="RdBu_r", norm=norm,
                   origin="lower")  # fmt: skip
    ax.set_xticks(range(n_pos), [f"{short(t)} ({i})" for i, t in enumerate(tokens)],
                  rotation=90, fontsize=7)  # fmt: skip
    ax.set_yticks(range(n_rows), list(rows), fontsize=7)
    ax.set_xlabel("position (token)")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label=label)
    return _png(fig)


def row_spread(labels: Sequence[str], per_row: np.ndarray, title: str, label: str) -> bytes:
    """Each row's value (dots) of a few candidates ([row, candidate]), with their mean and
    its standard error (bars), candidates left to right."""
    n_rows, k = per_row.shape
    fig = Figure(figsize=(1.6 + 0.7 * k, 3.2))
    ax = fig.add_subplot()
    jitter = np.linspace(-0.18, 0.18, n_rows) if n_rows > 1 else np.zeros(1)
    for j in range(k):
        ax.scatter(j + jitter, per_row[:, j], s=9, color="#7b8794", zorder=2)
    mean = per_row.mean(0)
    se = per_row.std(0, ddof=1) / np.sqrt(n_rows) if n_rows > 1 else np.zeros(k)
    ax.errorbar(range(k), mean, yerr=se, fmt="o", color="#c0392b", capsize=4, zorder=3)
    ax.axhline(0.0, color="#444", linewidth=0.7)
    ax.set_xticks(range(k), list(labels), rotation=45, ha="right", fontsize=7)
    ax.set_ylabel(label)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def divergence_histogram(positions: dict[str, list[int]], horizon: int) -> bytes:
    """Where each pair's texts first part (a generated-token index; `horizon`: not within
    it), one bar series per intervention."""
    fig = Figure(figsize=(6.4, 2.8))
    ax = fig.add_subplot()
    bins = [i - 0.5 for i in range(horizon + 2)]
    ax.hist(list(positions.values()), bins=bins, label=list(positions), histtype="bar")
    ax.set_xlabel(f"first diverging generated token ({horizon}: none within {horizon})")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=7)
    ax.set_title("First divergence of the paired texts", fontsize=10)
    return _png(fig)


def kl_bands(curves: dict[str, np.ndarray]) -> bytes:
    """Mean KL(baseline || intervened) at each generated step over the pairs, with its 95%
    band (`[3, step]`: mean, low, high), one curve per intervention."""
    fig = Figure(figsize=(6.4, 2.8))
    ax = fig.add_subplot()
    for label, band in curves.items():
        x = np.arange(band.shape[1])
        (line,) = ax.plot(x, band[0], label=label, linewidth=1.4)
        ax.fill_between(x, band[1], band[2], color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("generated token")
    ax.set_ylabel("KL (nats)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax.set_title("KL(baseline || intervened) along the baseline's tokens", fontsize=10)
    return _png(fig)
