"""A steering evaluation on disk and on a page: DIR/vector.safetensors, DIR/steering.json and
DIR/index.html (concept against damage at each scale, with the random directions' band and
the prompting baseline as a point; the separability by layer; pairs with their divergence
marked), written together, atomically. Reads results; never runs the model."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup, escape
from matplotlib.figure import Figure

from interp.files import store
from interp.report import style
from interp.report.formats import Format
from interp.report.simple import Section, render_experiment
from interp.report.style import COLUMN, PAGE, styled
from interp.report.writing import Content, write_report
from interp.stats import Estimate
from interp.steering.result import Measures, SteeringEval
from interp.steering.vector import SteeringVector

STEERING_FORMAT = "interp-steering"
STEERING_FILE = "steering.json"
VECTOR_FILE = "vector.safetensors"
# all a steering evaluation's directory holds: replacing it deletes nothing else
STEERING_ENTRIES = frozenset({VECTOR_FILE, STEERING_FILE, store.REPORT_FILE, store.FIGURES_DIR})


def write_steering(
    directory: str | os.PathLike[str],
    result: SteeringEval,
    vector: SteeringVector,
    formats: Sequence[Format] = ("png",),
) -> Path:
    """Write DIR (replaced whole; refused where DIR holds something else than a steering
    evaluation): the vector, steering.json, index.html and figures/."""
    target = Path(directory)
    check_steering_dir(target)
    figs = steering_figures(result)
    files = style.render(figs, formats)
    html = render_experiment(
        f"interp: steering at layer {result.layer}",
        result.sentence(),
        steering_sections(result, figs),
        style.pngs(files),
    )
    record = json.dumps({"format": STEERING_FORMAT, **result.json()}, indent=1, ensure_ascii=False)
    records: dict[str, Content] = {VECTOR_FILE: vector.save, STEERING_FILE: record}
    return write_report(target, html, files, records=records)


def check_steering_dir(path: str | os.PathLike[str]) -> None:
    """An evaluation may replace its own earlier output, never anything else."""
    store.check_output_dir(
        Path(path),
        own=STEERING_ENTRIES,
        formats=(STEERING_FORMAT,),
        record=STEERING_FILE,
        what="a steering evaluation",
    )


def steering_sections(result: SteeringEval, figs: style.Figures) -> list[Section]:
    header = ["condition", "concept", "against the controls", "KL", "log-prob/token"]
    rows: list[list[object]] = [[*header, "repeats", "first divergence"]]
    pairs_of = list(zip(result.scales, result.steered, result.controls, strict=True))
    conditions: list[tuple[str, Measures, str]] = [("unsteered", result.unsteered, "")]
    conditions += [
        (f"steered, scale {s:g}", m, verdict)
        for (s, m, _), verdict in zip(pairs_of, result.verdicts, strict=True)
    ]
    conditions += [(f"random directions, scale {s:g}", c, "") for s, _, c in pairs_of if c.samples]
    if result.prompt_baseline is not None:
        conditions.append((f"prompted: {result.instruction}", result.prompt_baseline, ""))
    for name, m, verdict in conditions:
        rows.append(
            [
                name,
                m.concept.text(),
                verdict,
                m.kl.text(2),
                m.logprob_per_token.text(2),
                m.repetition.text(2),
                m.first_divergence.text(1),
            ]
        )
    unit = "the vector" if result.unit == "vector" else "the stream's typical norm"
    sections = [
        Section(
            "Concept against damage",
            [
                f"Concept: {result.concept}. Damage: KL from the unsteered model per step along "
                "each text, its log-probability per token under the unsteered model, and the "
                "rate of repeated 3-grams. First divergence: the mean token index at which a "
                "text parts from the unsteered text of its seed (one that never does counts "
                f"as {result.horizon}). Each value has its bootstrap 95% interval over "
                f"{result.samples} seeds a prompt ({len(result.prompts)} prompt(s), "
                f"{result.horizon} new tokens). Scale: in units of {unit}; op {result.op} at "
                f"{result.positions} positions of L{result.layer}.resid_pre. Against the "
                "controls: whether the steered concept interval lies above every random "
                "direction's at that scale; where every control's interval has zero width "
                "(controls degenerate, e.g. 0 [0, 0]), no claim is made.",
                *result.warnings,
            ],
            rows,
            ["curve.png"],
        )
    ]
    if "separability.png" in figs:
        sections.append(
            Section(
                "Separability by layer",
                [
                    "Held-out balanced accuracy of projecting each prompt onto the layer's vector "
                    "(fitted on half of each set, tested on the other half): the mean over "
                    "random splits, the bars from the 2.5th to the 97.5th percentile of the "
                    "splits' accuracies; 0.5 is chance."
                ],
                None,
                ["separability.png"],
            )
        )
    pairs: list[list[object]] = [["scale", "seed", "unsteered", "steered"]]
    for p in result.pairs():
        chars = p["divergence_chars"]
        pairs.append(
            [
                f"{p['scale']:g}",
                p["seed"],
                _marked(p["unsteered_text"], chars, 0),
                _marked(p["steered_text"], chars, 1),
            ]
        )
    sections.append(
        Section(
            "Pairs",
            [
                "Each pair shares its seed, and so its sampling noise; the texts are highlighted "
                "from where they part."
            ],
            pairs,
        )
    )
    return sections


def _marked(text: str, chars: list[int] | None, side: int) -> Markup:
    if chars is None:
        return Markup(escape(text))
    at = chars[side]
    return Markup(f"{escape(text[:at])}<mark>{escape(text[at:])}</mark>")


def steering_figures(result: SteeringEval) -> style.Figures:
    figs: style.Figures = {"curve.png": concept_damage(result)}
    if result.separability_by_layer:
        figs["separability.png"] = separability_figure(result.separability_by_layer, result.layer)
    return figs


@styled
def concept_damage(result: SteeringEval) -> Figure:
    """Concept (y) against KL from the unsteered model (x), one point per scale with both
    intervals; the random directions alike in grey with their concept band; prompting a star."""
    fig = Figure(figsize=(PAGE * 0.7, 3.2), layout="constrained")
    ax = fig.add_subplot()

    def series(ms: list[Measures], **kw: Any) -> None:
        x, y = _points([m.kl for m in ms]), _points([m.concept for m in ms])
        ax.errorbar(x[0], y[0], xerr=x[1:], yerr=y[1:], capsize=2, linewidth=1, **kw)

    controls = [m for m in result.controls if m.samples]
    if controls:
        lo = min(m.concept.lo for m in controls)
        hi = max(m.concept.hi for m in controls)
        ax.axhspan(lo, hi, color="0.85", label="random directions' concept band")
        series(controls, color="0.45", marker="s", markersize=3, label="random directions")
    series(result.steered, color="tab:red", marker="o", markersize=4, label="steered")
    for scale, m in zip(result.scales, result.steered, strict=True):
        ax.annotate(
            f"{scale:g}",
            (m.kl.value, m.concept.value),
            fontsize=7,
            xytext=(4, 3),
            textcoords="offset points",
        )
    u = result.unsteered
    ax.plot([u.kl.value], [u.concept.value], "o", color="black", markersize=4, label="unsteered")
    if result.prompt_baseline is not None:
        series(
            [result.prompt_baseline],
            color="tab:blue",
            marker="*",
            markersize=9,
            linestyle="none",
            label="prompting",
        )
    ax.set_xlabel("damage: KL from the unsteered model (nats per step)")
    ax.set_ylabel(f"concept: {result.concept}"[:60])
    ax.set_title(f"Steering at layer {result.layer} (labels: scale)")
    ax.legend(fontsize=6)
    return fig


def _points(estimates: list[Estimate]) -> np.ndarray:
    """`[3, n]`: values, and their distances down and up to the interval's ends."""
    v = np.array([e.value for e in estimates], dtype=float)
    lo = np.array([e.lo for e in estimates], dtype=float)
    hi = np.array([e.hi for e in estimates], dtype=float)
    return np.nan_to_num(np.stack([v, np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)]))


@styled
def separability_figure(scores: list[Estimate], chosen: int) -> Figure:
    fig = Figure(figsize=(max(COLUMN, 0.16 * len(scores) + 1), 2.2), layout="constrained")
    ax = fig.add_subplot()
    colors = ["tab:red" if i == chosen else "tab:grey" for i in range(len(scores))]
    x = _points(scores)
    ax.bar(range(len(scores)), x[0], yerr=x[1:], color=colors, capsize=1.5, linewidth=0.6)
    ax.axhline(0.5, color="black", linewidth=0.8, linestyle="--")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("layer (red: the one steered)")
    ax.set_ylabel("held-out accuracy")
    return fig
