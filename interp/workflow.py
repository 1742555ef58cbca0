"""Library steps that compute results and store them beside a trace: what the CLI commands
and the experiment scripts compose."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from interp import store
from interp.analysis.suite import Analysis, analyze
from interp.interventions.ablate import AblationReport, ablate
from interp.interventions.ablation import AblationMode, ablation_dirname
from interp.interventions.sweep import SweepMethod, SweepResult, sweep
from interp.models.model import Model
from interp.store import check_output_dir
from interp.trace import Trace


def analyze_into(model: Model, trace: Trace, directory: str | os.PathLike[str]) -> Analysis:
    """Run every analysis; write analysis.safetensors and summary.json's `analysis`."""
    result = analyze(model, trace)
    result.save(directory)
    return result


def sweep_into(
    model: Model,
    trace: Trace,
    directory: str | os.PathLike[str],
    mode: AblationMode = "mean",
    *,
    method: SweepMethod = "exact",
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
    result.save(directory)
    return result


def ablate_into(
    model: Model,
    trace: Trace,
    directory: str | os.PathLike[str],
    heads: Sequence[tuple[int, int]],
    mode: AblationMode = "mean",
    *,
    resample_text: str | None = None,
    progress: bool = False,
) -> tuple[AblationReport, Path]:
    """Ablate `heads`; write DIR/ablations/<heads>-<mode>/ (the ablated run's trace and
    effect.json). The output directory is checked before any work."""
    out = Path(directory) / store.ABLATIONS_DIR / ablation_dirname(sorted(set(heads)), mode)
    check_output_dir(out, own=store.TRACE_ENTRIES | {store.EFFECT_FILE})
    report = ablate(model, trace, heads, mode, resample_text=resample_text, progress=progress)
    assert report.regeneration is not None  # ablate regenerates by default
    report.regeneration.ablated.save(out, extra_json={store.EFFECT_FILE: report.summary()})
    return report, out
