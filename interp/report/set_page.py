"""A trace set's report: DIR/index.html with the set's summary (means over rows with their
standard errors, every row listed) and a row picker, and each row's own page, the single-trace
page, under DIR/rows/ (the CircuitsVis bundle written there once, beside them). Reads saved
results only (`TraceSet.load`, `SetAnalysis.load`); never runs the model."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from interp.analysis.suite import SetAnalysis
from interp.files import store
from interp.interventions.metrics import describe
from interp.interventions.sweep import SweepResult
from interp.report import figures, style
from interp.report.formats import Format
from interp.report.html import b64, circuitsvis_bundle
from interp.report.page import (
    ATTENTION_WINDOW,
    ReportInputs,
    make_figures,
    render_page,
)
from interp.report.writing import write_report
from interp.trace.traceset import TraceSet

BUNDLE_FILE = "circuitsvis.js"


def row_page(i: int) -> str:
    return f"row{i}.html"


def build_set_report(
    directory: str | os.PathLike[str],
    title: str | None = None,
    formats: Sequence[Format] = ("png",),
) -> Path:
    """Write DIR/index.html, DIR/figures/ (each figure in each of `formats`) and DIR/rows/
    atomically; returns the page's path."""
    path = Path(directory)
    traces = TraceSet.load(path, activations=False)
    analysis = SetAnalysis.load(path, traces, pattern_window=ATTENTION_WINDOW)
    pages = {BUNDLE_FILE: circuitsvis_bundle()}
    for i, (trace, row) in enumerate(zip(traces, analysis.rows, strict=True)):
        inputs = ReportInputs(path, trace, row)
        label = f"row {i} of {len(traces)}: {trace.prompt[:50]}"
        row_pngs = style.render(make_figures(inputs))
        pages[row_page(i)] = render_page(
            inputs, row_pngs, f"interp report, {label}", bundle_src=BUNDLE_FILE
        )
    sweep = SweepResult.load(path) if SweepResult.saved_in(path) else None
    files = style.render(set_figures(analysis, sweep), formats)
    html = render_set_page(traces, analysis, sweep, style.pngs(files), title)
    return write_report(path, html, files, folders={store.ROWS_DIR: pages})


def set_figures(analysis: SetAnalysis, sweep: SweepResult | None = None) -> style.Figures:
    lens = analysis.logit_lens
    kl, kl_se = lens.mean_kl
    agree, agree_se = lens.top1_agreement
    heads, _ = analysis.attribution.heads_mean()
    out = {
        "logit_lens_kl.png": figures.lens_curves(
            kl.numpy(), agree.numpy(), lens.layers, (kl_se.numpy(), agree_se.numpy())
        ),
        "head_roles.png": figures.head_roles_figure(
            analysis.head_roles.scores.numpy(), list(analysis.head_roles.roles)
        ),
        "dla_heads.png": figures.head_heatmap(
            heads.numpy(),
            "Direct logit attribution: mean signed contribution to the generated tokens' "
            "logits, over rows",
            "mean logit",
            diverging=True,
        ),
    }
    if sweep is not None:
        out["sweep.png"] = figures.head_heatmap(
            sweep.delta.numpy(),
            f"Ablation sweep ({sweep.mode}, {sweep.method}): mean change in "
            f"{describe(sweep.metric)} over rows",
            f"change in {sweep.metric}",
            diverging=True,
            robust=True,
        )
    return out


def render_set_page(
    traces: TraceSet,
    analysis: SetAnalysis,
    sweep: SweepResult | None,
    pngs: dict[str, bytes],
    title: str | None,
) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("interp.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    rows = []
    for i, trace in enumerate(traces):
        mean_lp = float(trace.token_logprobs.mean()) if trace.n_generated else math.nan
        rows.append(
            {
                "index": i,
                "page": f"{store.ROWS_DIR}/{row_page(i)}",
                "prompt": trace.prompt,
                "continuation": trace.continuation,
                "seed": trace.settings.seed,
                "tokens": trace.n_generated,
                "stop": trace.stop_reason,
                "mean_logprob": mean_lp,
            }
        )
    first = traces[0]
    s = first.settings
    settings = [
        ("model", first.model_name),
        ("rows", len(traces)),
        ("distinct prompts", len(dict.fromkeys(traces.prompts))),
        ("temperature", s.temperature),
        ("top-k", s.top_k or "off"),
        ("top-p", s.top_p or "off"),
        ("max new tokens", s.max_new_tokens),
        ("forced continuations", "yes" if s.continuation is not None else "no"),
        ("generated tokens", sum(t.n_generated for t in traces)),
    ]
    settings += [(k.replace("_", " "), v) for k, v in first.provenance.items()]
    lens = analysis.logit_lens
    kl, kl_se = lens.mean_kl
    agree, agree_se = lens.top1_agreement
    layers = [
        {
            "label": label,
            "kl": float(kl[i]),
            "kl_se": float(kl_se[i]),
            "agree": float(agree[i]),
            "agree_se": float(agree_se[i]),
        }
        for i, label in enumerate(lens.layers)
    ]
    roles = analysis.head_roles
    return env.get_template("set_report.html.j2").render(
        title=title or f"interp report: a set of {len(traces)} rows",
        settings=settings,
        rows=rows,
        layers=layers,
        roles={role: roles.top(role, 10) for role in roles.roles},
        probe=roles,
        dla_top=analysis.attribution.top_heads(10),
        sweep=None if sweep is None else _sweep_rows(sweep),
        sweep_result=sweep,
        sweep_metric="" if sweep is None else describe(sweep.metric),
        pngs={k: b64(v) for k, v in pngs.items()},
    )


def _sweep_rows(sweep: SweepResult) -> list[tuple[str, float, float | None]]:
    """(head, mean change, its standard error over rows) of the largest effects."""
    se = sweep.delta_se
    out = []
    for head, value in sweep.top_heads(10):
        out.append((str(head), value, None if se is None else float(se[head])))
    return out
