"""Library steps that compute results and store them beside a trace: what the CLI commands
and the experiment scripts compose."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from interp.analysis.ablation import AblationReport, SweepResult, ablate, ablation_dirname, sweep
from interp.analysis.suite import ANALYSIS_FILE, Analysis, analyze
from interp.models import Model
from interp.trace import Trace, check_output_dir, write_results

SWEEP_FILE = "sweep.safetensors"


def analyze_into(model: Model, trace: Trace, directory: str | os.PathLike) -> Analysis:
    """Run every analysis; write analysis.safetensors and summary.json's `analysis`."""
    result = analyze(model, trace)
    write_results(directory, "analysis", result.summary(), result.tensors(), ANALYSIS_FILE)
    return result


def sweep_into(
    model: Model,
    trace: Trace,
    directory: str | os.PathLike,
    mode: str = "mean",
    *,
    method: str = "exact",
    verify: int | None = None,
    resample_text: str | None = None,
    progress: bool = False,
) -> SweepResult:
    """Sweep every head; write sweep.safetensors and summary.json's `sweep`."""
    result = sweep(
        model,
        trace,
        mode,
        method=method,
        verify=verify,
        resample_text=resample_text,
        progress=progress,
    )
    tensors = {
        "delta": result.delta,
        "delta_per_token": result.delta_per_token,
        "estimate": result.estimate,
        "verified": result.verified,
    }
    write_results(directory, "sweep", result.summary(), tensors, SWEEP_FILE)
    return result


def ablate_into(
    model: Model,
    trace: Trace,
    directory: str | os.PathLike,
    heads: Sequence[tuple[int, int]],
    mode: str = "mean",
    *,
    resample_text: str | None = None,
    progress: bool = False,
) -> tuple[AblationReport, Path]:
    """Ablate `heads`; write DIR/ablations/<heads>-<mode>/ (the ablated run's trace and
    effect.json). The output directory is checked before any work."""
    out = Path(directory) / "ablations" / ablation_dirname(sorted(set(heads)), mode)
    check_output_dir(out)
    report = ablate(model, trace, heads, mode, resample_text=resample_text, progress=progress)
    report.regeneration.ablated.save(out, extra_json={"effect.json": report.summary()})
    return report, out
