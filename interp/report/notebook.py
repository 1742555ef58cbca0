"""HTML for result objects in a notebook (registered by `interp.report.display`): the same
offline renderer as the reports (CircuitsVis inlined, no CDN, no network probe), small enough
for a notebook cell."""

from __future__ import annotations

import html
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from interp.interventions.metrics import describe
from interp.models.heads import head_label
from interp.report.figures import head_heatmap
from interp.report.html import b64, circuitsvis_bundle, probability_color, render_call
from interp.report.patching import site_figure
from interp.report.style import render
from interp.report.tokens import visible, visible_in_text

if TYPE_CHECKING:
    from interp.analysis.attention import AttentionResult, HeadRoles
    from interp.analysis.logit_lens import LogitLensResult
    from interp.interventions.ablation_record import AblationReport
    from interp.interventions.patching_result import Patching
    from interp.interventions.sweep import SweepResult
    from interp.trace.trace import Trace


def trace_html(trace: Trace) -> str:
    spans = []
    for i, tok in enumerate(trace.token_strs):
        tok = visible_in_text(tok)
        if i < trace.prompt_len:
            spans.append(f'<span style="background:#e8e8e8">{html.escape(tok)}</span>')
            continue
        j = i - trace.prompt_len
        prob = float(trace.token_logprobs[j].exp())
        title = html.escape(f"p={prob:.3f}, rank {int(trace.token_ranks[j])}", quote=True)
        color = probability_color(prob)
        spans.append(f'<span title="{title}" style="background:{color}">{html.escape(tok)}</span>')
    head = html.escape(
        f"{trace.model_name}: {trace.n_generated} tokens ({trace.stop_reason}), "
        f"seed {trace.settings.seed}"
    )
    body = "".join(spans)
    style = "font-family:monospace;white-space:pre-wrap"
    return f'<div><b>{head}</b><div style="{style}">{body}</div></div>'


class _Bundle:
    """Whether this kernel has shown the CircuitsVis bundle: a notebook carries it once (its
    first CircuitsVis output), and later outputs render with the global it defined."""

    shown = False


def bundle_once() -> str:
    """The bundle's script on the first call in this kernel, then nothing."""
    if _Bundle.shown:
        return ""
    _Bundle.shown = True
    return f"<script>{circuitsvis_bundle()}</script>"


def attention_html(result: AttentionResult, layer: int | None = None) -> str:
    """One layer's heads (default: the last layer). The render call waits for the bundle,
    which an earlier output of this notebook defined (or this one does)."""
    layer = result.patterns.shape[0] - 1 if layer is None else layer
    element = f"interp-{uuid.uuid4().hex[:12]}"
    props = {
        "attention": result.patterns[layer].tolist(),
        "tokens": [visible(t) for t in result.tokens],
        "attentionHeadNames": [head_label(layer, h) for h in range(result.patterns.shape[1])],
    }
    call = render_call(element, "AttentionHeads", props)
    missing = (
        "CircuitsVis is not loaded in this page: run "
        "interp.report.notebook.reload_bundle() and display the result again"
    )
    wait = (
        "(function (tries) { (function go() {"
        f" if (window.CircuitsVis) {{ {call} }}"
        " else if (tries-- > 0) { setTimeout(go, 100); }"
        f" else {{ document.getElementById({element!r}).textContent = {missing!r}; }}"
        " })(); })(50);"
    )
    return f'<div id="{element}"></div>{bundle_once()}<script>{wait}</script>'


def reload_bundle() -> None:
    """Carry the bundle again with the next CircuitsVis output (after clearing the output
    that had it)."""
    _Bundle.shown = False


def table_html(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def roles_html(roles: HeadRoles, k: int = 10) -> str:
    tops = {role: roles.top(role, k) for role in roles.roles}
    k = min(len(t) for t in tops.values())
    rows = [[f"{tops[r][i][0]} {tops[r][i][1]:.2f}" for r in roles.roles] for i in range(k)]
    return table_html([r.replace("_", " ") for r in roles.roles], rows)


def lens_html(lens: LogitLensResult) -> str:
    rows = [
        [name, f"{kl:.2f}", f"{rank:.1f}", f"{agree:.2f}"]
        for name, kl, rank, agree in zip(
            lens.layers,
            lens.mean_kl.tolist(),
            lens.mean_rank.tolist(),
            lens.top1_agreement.tolist(),
            strict=True,
        )
    ]
    return table_html(["layer", "mean KL", "mean rank", "top-1 agreement"], rows)


def sweep_html(result: SweepResult) -> str:
    figure = head_heatmap(
        result.delta.numpy(),
        f"{result.method} sweep ({result.mode}): change in {result.metric}",
        f"change in {result.metric}",
        diverging=True,
        robust=True,
    )
    data = b64(render({"sweep.png": figure})["sweep.png"])
    top = table_html(["head", "change"], [[h, f"{v:+.3f}"] for h, v in result.top_heads(10)])
    return f'<div><img src="data:image/png;base64,{data}">{top}</div>'


def patching_html(patching: Patching) -> str:
    """Each site's heatmap and its ten strongest candidates."""
    into = f" into {patching.receivers}" if patching.receivers else ""
    parts = [
        f"<p>{html.escape(patching.direction)} patching{html.escape(into)}, "
        f"{patching.rows} pair(s): {html.escape(describe(patching.metric))} clean "
        f"{patching.clean_metric:.3f}, corrupted {patching.corrupted_metric:.3f}</p>"
    ]
    for site, result in patching.results.items():
        png = render({"site.png": site_figure(result, patching.tokens, into)})["site.png"]
        rows = [
            [str(cell), f"{value:+.4f}", f"{float(result.effect_normalized.flatten()[i]):+.3f}"]
            for i, cell, value in result.ranked(10)
        ]
        parts.append(f'<img src="data:image/png;base64,{b64(png)}">')
        parts.append(table_html([site, "effect", "normalised"], rows))
    return "<div>" + "".join(parts) + "</div>"


def ablation_html(report: AblationReport) -> str:
    s = report.summary()
    rows: list[list[object]] = [
        ["heads", ", ".join(s["heads"])],
        ["mode", s["mode"]],
        ["change in total log-prob", f"{s['delta_logprob_total']:+.3f}"],
        [f"metric {s['metric']}", f"{s['baseline_metric']:.3f} -> {s['ablated_metric']:.3f}"],
    ]
    if s["baseline_text"] is None:
        rows.append(["text", "not regenerated (regenerate_text=False)"])
    else:
        first = s["first_divergence"]
        rows += [
            ["first divergence", "none: the texts are identical" if first is None else first],
            ["baseline text", s["baseline_text"]],
            ["ablated text", s["ablated_text"]],
        ]
    if report.samples is not None:
        rows.append(["paired samples", report.samples.comparison()])
    return table_html(["", ""], rows)
