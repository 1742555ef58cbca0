"""Build `index.html` (and PNG figures beside it) from a trace directory's saved results.

Reads the trace (tokens and statistics), its analysis (with the attention patterns of the last
positions), and, where present, its sweep and its ablations, all as typed results
(`Analysis.load`, `SweepResult.load`, `AblationRecord.load_all`). Never runs the model.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interp.analysis.suite import Analysis
from interp.interventions.ablation_record import AblationRecord
from interp.interventions.metrics import describe
from interp.interventions.sweep import SweepResult
from interp.models.heads import Head, head_label
from interp.report import figures, style
from interp.report.features import HOW_TO, feature_sections
from interp.report.formats import Format
from interp.report.html import (
    b64,
    circuitsvis_bundle,
    pack_pattern,
    probability_color,
    render_call,
    script_json,
)
from interp.report.tokens import visible, visible_in_text
from interp.report.writing import write_report
from interp.trace.trace import Trace

ATTENTION_WINDOW = 128  # attention views show at most the last this-many positions


@dataclass
class ReportInputs:
    """Everything the page shows, loaded from disk."""

    directory: Path
    trace: Trace  # without activations
    analysis: Analysis  # attention patterns of the last ATTENTION_WINDOW positions
    sweep: SweepResult | None = None
    ablations: list[AblationRecord] = field(default_factory=list)
    features: list[dict[str, Any]] = field(default_factory=list)  # the features section

    @property
    def tokens(self) -> list[str]:
        return self.trace.token_strs

    @property
    def prompt_len(self) -> int:
        return self.trace.prompt_len

    @property
    def window_start(self) -> int:
        return self.analysis.attention.window_start

    def pattern(self, layer: int, head: int) -> torch.Tensor:
        return self.analysis.attention.patterns[layer, head]


def load_inputs(directory: str | os.PathLike[str]) -> ReportInputs:
    """Read a trace directory's results; a clear error if they are missing or too old."""
    path = Path(directory)
    trace = Trace.load(path, activations=False)
    analysis = Analysis.load(path, trace, pattern_window=ATTENTION_WINDOW)
    sweep = SweepResult.load(path) if SweepResult.saved_in(path) else None
    ablations = AblationRecord.load_all(path)
    return ReportInputs(path, trace, analysis, sweep, ablations, feature_sections(path))


# ---------------------------------------------------------------------------------------


def build_trace_report(
    directory: str | os.PathLike[str],
    title: str | None = None,
    formats: Sequence[Format] = ("png",),
) -> Path:
    """Write DIR/index.html and DIR/figures/ (each figure in each of `formats`) atomically;
    returns the page's path."""
    inputs = load_inputs(directory)
    files = style.render(make_figures(inputs), formats)
    html = render_page(inputs, style.pngs(files), title)
    return write_report(directory, html, files)


def make_figures(inputs: ReportInputs) -> style.Figures:
    a = inputs.analysis
    lens = a.logit_lens
    generated = inputs.tokens[inputs.prompt_len :]
    figs: style.Figures = {
        "logit_lens.png": figures.logit_lens_heatmap(
            lens.target_probs.numpy(),
            lens.layers,
            generated,
            "Logit lens: probability of each generated token, layer by layer",
        ),
        "logit_lens_kl.png": figures.lens_curves(
            lens.mean_kl.numpy(), lens.top1_agreement.numpy(), lens.layers
        ),
        "head_roles.png": figures.head_roles_figure(
            a.head_roles.scores.numpy(), list(a.head_roles.roles)
        ),
        "dla_heads.png": figures.head_heatmap(
            a.attribution.heads.mean(0).numpy(),
            "Direct logit attribution: mean signed contribution to the generated tokens' logits",
            "mean logit",
            diverging=True,
        ),
    }
    heads = chosen_heads(inputs)[:6]
    if heads:
        pats = np.stack([inputs.pattern(layer, head).numpy() for layer, head, _ in heads])
        figs["attention_top_heads.png"] = figures.attention_grid(
            pats,
            [f"{head_label(layer, head)} ({why})" for layer, head, why in heads],
            inputs.tokens[inputs.window_start :],
            "Attention patterns of the heads that matter",
        )
    for i, record in enumerate(inputs.ablations):
        if record.paired is not None:
            figs |= _sample_figures(i, record.paired)
    if inputs.sweep is not None:
        figs["sweep.png"] = figures.head_heatmap(
            inputs.sweep.delta.numpy(),
            f"Ablation sweep ({inputs.sweep.mode}, {inputs.sweep.method}): change in "
            f"{describe(inputs.sweep.metric)}",
            f"change in {inputs.sweep.metric}",
            diverging=True,
            robust=True,
        )
    return figs


def _sample_figures(i: int, paired: dict[str, Any]) -> style.Figures:
    """An ablation's paired samples: where the texts part, and the KL curve, beside its
    controls' (pooled)."""
    horizon = int(paired["horizon"])

    def positions(pairs: list[dict[str, Any]]) -> list[int]:
        return [
            horizon if p["first_divergence"] is None else min(p["first_divergence"], horizon)
            for p in pairs
        ]

    def band(curve: dict[str, list[float | None]]) -> np.ndarray:
        rows = [curve["mean"], curve["lo"], curve["hi"]]
        return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)

    hist = {"ablated": positions(paired["pairs"])}
    curves = {"ablated": band(paired["kl_curve"])}
    for k, control in enumerate(paired["controls"]):
        curves[f"control {k + 1}"] = band(control["kl_curve"])
    if paired.get("control_first_divergences"):
        hist["controls (pooled)"] = list(paired["control_first_divergences"])
    return {
        f"samples_{i}_divergence.png": figures.divergence_histogram(hist, horizon),
        f"samples_{i}_kl.png": figures.kl_bands(curves),
    }


def _greedy_rows(greedy: Any) -> list[dict[str, Any]]:
    """The greedy pairs of an effect.json (a list; one object or none before sets), each
    labelled "greedy" in the seed column."""
    found = greedy if isinstance(greedy, list) else [] if greedy is None else [greedy]
    return [{**g, "seed": "greedy"} for g in found if isinstance(g, dict)]


def chosen_heads(inputs: ReportInputs) -> list[tuple[int, int, str]]:
    """Heads worth a look, as (layer, head, why): strongest by role, by direct logit
    attribution, by ablation; a head picked for several reasons appears once."""
    a = inputs.analysis
    picks: list[tuple[Head, str]] = []
    for role in ("induction", "previous_token", "duplicate_token"):
        if role in a.head_roles.roles:
            why = role.replace("_token", "").replace("_", " ")
            picks += [(h, why) for h, _ in a.head_roles.top(role, 2)]
    picks += [(h, "logit attribution") for h, _ in a.attribution.top_heads(2)]
    if inputs.sweep is not None:
        picks += [(h, "ablation") for h, _ in inputs.sweep.top_heads(3)]
    reasons: dict[Head, list[str]] = {}
    for head, why in picks:
        reasons.setdefault(head, []).append(why)
    return [(*head, ", ".join(whys)) for head, whys in reasons.items()]


# ---------------------------------------------------------------------------------------


def render_page(
    inputs: ReportInputs,
    pngs: dict[str, bytes],
    title: str | None = None,
    *,
    bundle_src: str | None = None,
) -> str:
    """The page's HTML; the CircuitsVis bundle inlined, or where `bundle_src` names a script
    file beside the page (a set's row pages share one), loaded from there."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("interp.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    trace, a = inputs.trace, inputs.analysis
    p = inputs.prompt_len
    tokens = inputs.tokens
    text_tokens = []
    for i, tok in enumerate(tokens):
        if i < p:
            text_tokens.append(
                {"text": visible_in_text(tok), "color": "#e8e8e8", "title": "prompt"}
            )
            continue
        j = i - p
        prob = math.exp(float(trace.token_logprobs[j]))
        alts = ", ".join(
            f"{visible(a.token_str(k))} {q:.3f}"
            for k, q in zip(trace.top_ids[j].tolist(), trace.top_probs[j].tolist(), strict=True)
        )
        text_tokens.append(
            {
                "text": visible_in_text(tok),
                "color": probability_color(prob),
                "title": f"p={prob:.3f}, rank {int(trace.token_ranks[j])}\ntop: {alts}",
            }
        )

    lens = a.logit_lens
    n_layers, n_steps = lens.target_probs.shape
    grid = []
    for layer in reversed(range(n_layers)):  # final layer on top
        row = []
        for j in range(n_steps):
            alts = ", ".join(
                f"{visible(a.token_str(k))} {q:.2f}"
                for k, q in zip(
                    lens.top_ids[layer, j].tolist(), lens.top_probs[layer, j].tolist(), strict=True
                )
            )
            prob = float(lens.target_probs[layer, j])
            row.append(
                {
                    "text": visible(a.token_str(int(lens.top_ids[layer, j, 0]))),
                    "color": probability_color(prob),
                    "title": f"{lens.layers[layer]}, predicting {visible(tokens[p + j])}: "
                    f"p={prob:.3f}, rank {int(lens.target_ranks[layer, j])}\ntop: {alts}",
                }
            )
        grid.append({"label": lens.layers[layer], "cells": row})

    depth = lens.prediction_depth.tolist()
    depth_text = [
        {"token": visible(tokens[p + j]), "layer": lens.layers[d]} for j, d in enumerate(depth)
    ]

    # attention: CircuitsVis for the chosen heads, and a layer selector over compressed data
    window_tokens = [visible(t) for t in tokens[inputs.window_start :]]
    heads = chosen_heads(inputs)[:8]
    scripts = []
    top_heads_props = {
        "attention": [inputs.pattern(layer, head).tolist() for layer, head, _ in heads],
        "tokens": window_tokens,
        # short names: CircuitsVis's head selector gives each about 95 px
        "attentionHeadNames": [head_label(layer, head) for layer, head, _ in heads],
    }
    if heads:
        scripts.append(render_call("cv-top-heads", "AttentionHeads", top_heads_props))
    layers_data = [pack_pattern(pattern) for pattern in a.attention.patterns]

    # direct logit attribution for a chosen token: every component, in model order
    components = [a.attribution.components(j) for j in range(n_steps)]
    dla_labels = [label for label, _ in components[0]] if components else []
    dla_values = [[value for _, value in step] for step in components]
    dla_steps = [f"#{j} {visible(tokens[p + j])}" for j in range(n_steps)]

    settings = trace.settings
    rows: list[tuple[str, Any]] = [
        ("model", trace.model_name),
        ("prompt", trace.prompt),
        ("seed", settings.seed),
        ("temperature", settings.temperature),
        ("top-k", settings.top_k or "off"),
        ("top-p", settings.top_p or "off"),
        ("max new tokens", settings.max_new_tokens),
        ("forced continuation", "yes" if settings.continuation is not None else "no"),
        ("stop reason", trace.stop_reason),
        ("generated tokens", len(tokens) - p),
    ]
    rows += [(k.replace("_", " "), v) for k, v in trace.provenance.items()]
    roles = a.head_roles
    template = env.get_template("report.html.j2")
    return template.render(
        title=title or f"interp report: {trace.prompt[:60]}",
        prompt=trace.prompt,
        rows=rows,
        text_tokens=text_tokens,
        grid=grid,
        steps=[visible(tokens[p + j]) for j in range(n_steps)],
        depth=depth_text,
        roles={role: roles.top(role, 10) for role in roles.roles},
        probe=roles,
        dla_top=a.attribution.top_heads(10),
        sweep=inputs.sweep,
        sweep_metric=describe(inputs.sweep.metric) if inputs.sweep is not None else "",
        ablations=inputs.ablations,
        feature_sections=inputs.features,
        features_how_to=HOW_TO,
        greedy_rows=_greedy_rows,
        window_start=inputs.window_start,
        n_positions=len(tokens),
        pngs={k: b64(v) for k, v in pngs.items()},
        bundle=None if bundle_src else circuitsvis_bundle(),
        bundle_src=bundle_src,
        scripts=scripts,
        chosen=[(head_label(layer, head), why) for layer, head, why in heads],
        data_json=script_json(
            {
                "tokens": window_tokens,
                "layers": layers_data,
                "dla": {"labels": dla_labels, "values": dla_values, "steps": dla_steps},
            },
            digits=3,
        ),
    )
