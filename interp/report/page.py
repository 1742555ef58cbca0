"""Build `index.html` (and PNG figures beside it) from a trace directory's saved results.

Reads summary.json, analysis.safetensors, the attention patterns in activations.safetensors,
and, where present, sweep.safetensors and ablations/*/effect.json. Never runs the model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interp import hooks as H
from interp.errors import TraceFormatError
from interp.heads import parse_label
from interp.report import figures
from interp.report.html import (
    b64,
    circuitsvis_bundle,
    probability_color,
    render_call,
    script_json,
)
from interp.trace import ACTIVATIONS, read_summary

REPORT_FILE = "index.html"
FIGURES_DIR = "figures"
ATTENTION_WINDOW = 128  # attention views show at most the last this-many positions
SUPPORTED_ANALYSIS_VERSION = 1


@dataclass
class ReportInputs:
    """Everything the page shows, loaded from disk."""

    directory: Path
    summary: dict[str, Any]
    analysis: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    patterns: list[torch.Tensor]  # per layer [head, q, k], window-cropped
    window_start: int
    sweep: dict[str, Any] | None = None
    sweep_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    ablations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tokens(self) -> list[str]:
        return self.summary["token_strs"]

    @property
    def prompt_len(self) -> int:
        return int(self.summary["prompt_len"])

    def token_str(self, token_id: int) -> str:
        return self.analysis["vocab"].get(str(int(token_id)), f"<{int(token_id)}>")


def load_inputs(directory: str | os.PathLike) -> ReportInputs:
    """Read a trace directory's results; a clear error if they are missing or too old."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(directory)
    summary = read_summary(path)
    analysis = summary.get("analysis")
    if analysis is None:
        raise TraceFormatError(
            f"{path} has no analysis results: run `interp analyze {path}` first (or `interp run`)"
        )
    version = analysis.get("format_version")
    if version != SUPPORTED_ANALYSIS_VERSION or "vocab" not in analysis:
        raise TraceFormatError(
            f"{path} holds analysis results of an older format (version {version}); "
            f"run `interp analyze {path}` again"
        )
    try:
        tensors = load_file(path / "analysis.safetensors")
        n = len(summary["token_ids"])
        start = max(0, n - ATTENTION_WINDOW)
        patterns = []
        with safe_open(path / ACTIVATIONS, framework="pt") as fh:
            layer = 0
            while H.pattern(layer) in fh.keys():  # noqa: SIM118 (safe_open has no __contains__)
                patterns.append(fh.get_slice(H.pattern(layer))[:, start:, start:])
                layer += 1
    except (OSError, KeyError, ValueError) as exc:
        raise TraceFormatError(f"{path}: cannot read the saved results ({exc})") from None
    inputs = ReportInputs(path, summary, analysis, tensors, patterns, start)
    if "sweep" in summary and (path / "sweep.safetensors").exists():
        inputs.sweep = summary["sweep"]
        inputs.sweep_tensors = load_file(path / "sweep.safetensors")
    for effect in sorted((path / "ablations").glob("*/effect.json")):
        try:
            inputs.ablations.append(json.loads(effect.read_text()))
        except (OSError, ValueError):
            continue  # a stray file is not worth refusing the report for
    return inputs


# ---------------------------------------------------------------------------------------


def build_report(directory: str | os.PathLike, title: str | None = None) -> Path:
    """Write DIR/index.html and DIR/figures/*.png atomically; returns the page's path."""
    inputs = load_inputs(directory)
    pngs = make_figures(inputs)
    html = render_page(inputs, pngs, title)
    return write_report(Path(directory), html, pngs)


def write_report(directory: Path, html: str, pngs: dict[str, bytes]) -> Path:
    """Figures into a temporary folder renamed into place, then the page by rename."""
    tmp = Path(tempfile.mkdtemp(prefix=".figures.tmp-", dir=directory))
    page_tmp = directory / f".{REPORT_FILE}.tmp-{os.getpid()}"
    try:
        for name, data in pngs.items():
            (tmp / name).write_bytes(data)
        page_tmp.write_text(html, encoding="utf-8")
        target = directory / FIGURES_DIR
        old = directory / f".{FIGURES_DIR}.old-{os.getpid()}"
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
        os.replace(page_tmp, directory / REPORT_FILE)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        page_tmp.unlink(missing_ok=True)
    return directory / REPORT_FILE


def make_figures(inputs: ReportInputs) -> dict[str, bytes]:
    a, t = inputs.analysis, inputs.tensors
    p = inputs.prompt_len
    generated = inputs.tokens[p:]
    lens = a["logit_lens"]
    pngs = {
        "logit_lens.png": figures.logit_lens_heatmap(
            t["logit_lens.target_probs"].numpy(),
            lens["layers"],
            generated,
            "Logit lens: probability of each generated token, layer by layer",
        ),
        "logit_lens_kl.png": figures.lens_curves(
            np.array(lens["mean_kl"]), np.array(lens["top1_agreement"]), lens["layers"]
        ),
        "head_roles.png": figures.head_roles_figure(
            t["head_roles.scores"].numpy(), list(a["head_roles"])
        ),
        "dla_heads.png": figures.head_heatmap(
            t["attribution.heads"].abs().mean(0).numpy(),
            "Direct logit attribution: mean |contribution| to the generated tokens' logits",
            "mean |logit|",
        ),
    }
    heads = chosen_heads(inputs)[:6]
    if heads and inputs.patterns:
        pats = np.stack([inputs.patterns[layer][head].numpy() for layer, head, _ in heads])
        pngs["attention_top_heads.png"] = figures.attention_grid(
            pats,
            [f"L{layer}H{head} ({why})" for layer, head, why in heads],
            inputs.tokens[inputs.window_start :],
            "Attention patterns of the heads that matter",
        )
    if inputs.sweep is not None:
        pngs["sweep.png"] = figures.head_heatmap(
            inputs.sweep_tensors["delta"].numpy(),
            f"Ablation sweep ({inputs.sweep['mode']}, {inputs.sweep['method']}): change in the "
            "continuation's total log-prob",
            "change in total log-prob (nats)",
            diverging=True,
        )
    return pngs


def chosen_heads(inputs: ReportInputs) -> list[tuple[int, int, str]]:
    """Heads worth a look, as (layer, head, why): strongest by role, by direct logit
    attribution, by ablation; a head picked for several reasons appears once."""
    a = inputs.analysis
    picks: list[tuple[str, str]] = []
    for role in ("induction", "previous_token", "duplicate_token"):
        why = role.replace("_token", "").replace("_", " ")
        picks += [(h, why) for h, _ in a["head_roles"].get(role, [])[:2]]
    picks += [(h, "logit attribution") for h, _ in a["dla_top_heads"][:2]]
    if inputs.sweep is not None:
        picks += [(h, "ablation") for h, _ in inputs.sweep["top_heads"][:3]]
    reasons: dict[str, list[str]] = {}
    for label, why in picks:
        reasons.setdefault(label, []).append(why)
    return [(*parse_label(label), ", ".join(whys)) for label, whys in reasons.items()]


# ---------------------------------------------------------------------------------------


def render_page(inputs: ReportInputs, pngs: dict[str, bytes], title: str | None = None) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("interp.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    s, a, t = inputs.summary, inputs.analysis, inputs.tensors
    p = inputs.prompt_len
    tokens = inputs.tokens
    logprobs = s["token_logprobs"]
    text_tokens = []
    for i, tok in enumerate(tokens):
        if i < p:
            text_tokens.append({"text": tok, "color": "#e8e8e8", "title": "prompt"})
            continue
        j = i - p
        prob = float(np.exp(logprobs[j]))
        alts = ", ".join(f"{inputs.token_str(k)!r} {q:.3f}" for k, q in s["top_alternatives"][j])
        text_tokens.append(
            {
                "text": tok,
                "color": probability_color(prob),
                "title": f"p={prob:.3f}, rank {s['token_ranks'][j]}\ntop: {alts}",
            }
        )

    lens = a["logit_lens"]
    top_ids, top_probs = t["logit_lens.top_ids"], t["logit_lens.top_probs"]
    target_probs, target_ranks = t["logit_lens.target_probs"], t["logit_lens.target_ranks"]
    n_layers, n_steps = target_probs.shape
    grid = []
    for layer in reversed(range(n_layers)):  # final layer on top
        row = []
        for j in range(n_steps):
            alts = ", ".join(
                f"{inputs.token_str(k)!r} {q:.2f}"
                for k, q in zip(
                    top_ids[layer, j].tolist(), top_probs[layer, j].tolist(), strict=True
                )
            )
            prob = float(target_probs[layer, j])
            row.append(
                {
                    "text": inputs.token_str(int(top_ids[layer, j, 0])),
                    "color": probability_color(prob),
                    "title": f"{lens['layers'][layer]}, predicting {tokens[p + j]!r}: "
                    f"p={prob:.3f}, rank {int(target_ranks[layer, j])}\ntop: {alts}",
                }
            )
        grid.append({"label": lens["layers"][layer], "cells": row})

    depth = a["prediction_depth"]
    layer_names = lens["layers"]
    depth_text = [{"token": tokens[p + j], "layer": layer_names[d]} for j, d in enumerate(depth)]

    # attention: CircuitsVis for the chosen heads, and a layer selector over compressed data
    window_tokens = tokens[inputs.window_start :]
    heads = chosen_heads(inputs)[:8]
    scripts = []
    top_heads_props = {
        "attention": [inputs.patterns[layer][head].tolist() for layer, head, _ in heads],
        "tokens": window_tokens,
        "attentionHeadNames": [f"L{layer}H{head} ({why})" for layer, head, why in heads],
    }
    if heads:
        scripts.append(render_call("cv-top-heads", "AttentionHeads", top_heads_props))
    layers_data = [_pack_pattern(pattern) for pattern in inputs.patterns]

    # direct logit attribution for a chosen token
    dla_labels, dla_values = _dla_table(t)
    dla_steps = [f"#{j} {tokens[p + j]!r}" for j in range(n_steps)]

    sweep = inputs.sweep
    ablations = []
    for effect in inputs.ablations:
        ablations.append(
            {
                **effect,
                "baseline_parts": _split(effect["baseline_text"], effect),
                "ablated_parts": _split(effect["ablated_text"], effect, ablated=True),
            }
        )

    settings = s["settings"]
    rows = [
        ("model", s["model"]),
        ("prompt", s["prompt"]),
        ("seed", settings["seed"]),
        ("temperature", settings["temperature"]),
        ("top-k", settings["top_k"] or "off"),
        ("top-p", settings["top_p"] or "off"),
        ("max new tokens", settings["max_new_tokens"]),
        ("forced continuation", "yes" if settings["continuation"] is not None else "no"),
        ("stop reason", s["stop_reason"]),
        ("generated tokens", len(tokens) - p),
    ]
    prov = s["provenance"]
    rows += [(k.replace("_", " "), v) for k, v in prov.items()]
    template = env.get_template("report.html.j2")
    return template.render(
        title=title or f"interp report: {s['prompt'][:60]}",
        prompt=s["prompt"],
        rows=rows,
        text_tokens=text_tokens,
        grid=grid,
        steps=[tokens[p + j] for j in range(n_steps)],
        depth=depth_text,
        lens=lens,
        roles=a["head_roles"],
        probe=a["probe"],
        dla_top=a["dla_top_heads"],
        sweep=sweep,
        ablations=ablations,
        window_start=inputs.window_start,
        n_positions=len(tokens),
        pngs={k: b64(v) for k, v in pngs.items()},
        bundle=circuitsvis_bundle(),
        scripts=scripts,
        data_json=script_json(
            {
                "tokens": window_tokens,
                "layers": layers_data,
                "dla": {"labels": dla_labels, "values": dla_values, "steps": dla_steps},
            },
            digits=3,
        ),
    )


def _pack_pattern(pattern: torch.Tensor) -> dict[str, Any]:
    """[head, q, k] -> the lower triangle of each head as uint8 (x/255), zlib, base64."""
    heads, n, _ = pattern.shape
    rows, cols = torch.tril_indices(n, n)
    tri = (pattern[:, rows, cols].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return {"heads": heads, "n": n, "data": b64(zlib.compress(tri.tobytes(), 6))}


def _dla_table(t: dict[str, torch.Tensor]) -> tuple[list[str], list[list[float]]]:
    heads = t["attribution.heads"]  # [step, layer, head]
    steps, n_layers, n_heads = heads.shape
    labels = ["embed"]
    columns = [t["attribution.embed"][:, None]]
    for layer in range(n_layers):
        labels += [f"L{layer}H{h}" for h in range(n_heads)]
        columns.append(heads[:, layer])
        if torch.any(t["attribution.attn_bias"][:, layer] != 0):
            labels.append(f"L{layer} attn bias")
            columns.append(t["attribution.attn_bias"][:, layer : layer + 1])
        labels.append(f"L{layer} MLP")
        columns.append(t["attribution.mlp"][:, layer : layer + 1])
    labels.append("biases")
    columns.append(t["attribution.constant"][:, None])
    values = torch.cat(columns, dim=1)
    return labels, values.tolist()


def _split(text: str | None, effect: dict[str, Any], ablated: bool = False) -> list[str]:
    """(before, from the first divergence on) using the stored token boundary if present."""
    if text is None:
        return ["", ""]
    cut = effect.get("ablated_divergence_char" if ablated else "baseline_divergence_char")
    if cut is None or effect.get("first_divergence") is None:
        return [text, ""]
    return [text[:cut], text[cut:]]
