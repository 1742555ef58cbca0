"""Library steps that compute results and store them beside a trace: what the CLI commands
and the experiment scripts compose."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from interp.analysis.attention import PROBE_SEQUENCES, ROLES, HeadRoles, head_roles
from interp.analysis.stored import ANALYSIS_FORMAT_VERSION, role_tensors, roles_from
from interp.analysis.suite import Analysis, SetAnalysis, analyze, default_probe_block
from interp.edits.value import Intervention
from interp.errors import TraceFormatError, WriteError
from interp.executors import Executor, describe
from interp.files import atomic, store
from interp.files.store import check_output_dir
from interp.generation.generate import record_under
from interp.interventions import sites
from interp.interventions.ablate import ablate, ablate_samples
from interp.interventions.ablation import AblationMode, ablation_dirname, reference_digest
from interp.interventions.ablation_record import AblationReport
from interp.interventions.effect import INTERVENTION
from interp.interventions.metrics import Metric, MetricFn
from interp.interventions.sample_stats import PairedSamples
from interp.interventions.sites import Site, Target
from interp.interventions.sweep import SweepMethod, SweepResult, sweep
from interp.models.cache import cache_root
from interp.models.model import Model
from interp.trace.trace import Trace
from interp.trace.traceset import TraceSet

__all__ = [
    "ablate_into",
    "ablate_set_into",
    "analyze_into",
    "model_head_roles",
    "record_under_into",
    "sweep_into",
]

PROBES_DIR = "probes"  # under the model cache: each model's default head-role probe


def model_head_roles(model: Model) -> HeadRoles:
    """The model's default head-role probe (`interp.analysis.head_roles`), a property of its
    weights: read from the cache beside converted models where it was run before, else run
    and kept there (a model without a weights checksum is never cached; a cache that cannot
    be read or written is passed over)."""
    from safetensors.torch import save_file

    block = default_probe_block(model)
    if model.checksum in ("", "random-init") or model.checksum.endswith("@unknown"):
        return head_roles(model, block_len=block)
    key = f"{model.name}:{model.checksum}:{block}:{PROBE_SEQUENCES}:{ANALYSIS_FORMAT_VERSION}"
    path = (
        cache_root() / PROBES_DIR / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.safetensors"
    )
    if path.is_file():
        try:
            return roles_from(store.load_tensors(path, "cached head roles"), path, block, ROLES)
        except TraceFormatError:
            pass  # run the probe again, and replace the file
    roles = head_roles(model, block_len=block)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_file(path) as tmp:
            save_file({k: v.contiguous() for k, v in role_tensors(roles).items()}, tmp)
    except (OSError, WriteError):
        pass
    return roles


def reference_rows(model: Model, path: str | os.PathLike[str]) -> Trace | TraceSet:
    """A reference distribution for mean ablation: the trace or set in a directory, or each
    prompt of a prompts file (`interp.generation.prompts`) recorded with one greedy token."""
    from interp.generation.generate import generate
    from interp.generation.prompts import read_prompts
    from interp.trace.traceset import load_recorded

    if Path(path).is_dir():
        recorded = load_recorded(path)
        for row in [recorded] if isinstance(recorded, Trace) else recorded:
            row.bind(model)
        return recorded
    prompts = [line.prompt for line in read_prompts(path)]
    return generate(
        model, prompts + [prompts[0]] * (len(prompts) == 1), max_new_tokens=1, temperature=0.0
    )


def analyze_into(
    model: Model,
    trace: Trace | TraceSet,
    directory: str | os.PathLike[str],
    *,
    executor: Executor | None = None,
) -> Analysis | SetAnalysis:
    """Run every analysis (of a trace or of every row of a set, its rows where `executor`
    says; the head roles from the model's cached probe); write analysis.safetensors and
    summary.json's `analysis`."""
    result = analyze(model, trace, roles=model_head_roles(model), executor=executor)
    result.save(directory)
    return result


def sweep_into(
    model: Model,
    trace: Trace | TraceSet,
    directory: str | os.PathLike[str],
    mode: AblationMode = "mean",
    *,
    metric: Metric | MetricFn | str | None = None,
    reference: TraceSet | Trace | None = None,
    method: SweepMethod = "exact",
    verify: int | None = None,
    resample_text: str | None = None,
    progress: bool = False,
    executor: Executor | None = None,
) -> SweepResult:
    """Sweep every head (of a trace, or of every row of a set); write sweep.safetensors and
    summary.json's `sweep`."""
    result = sweep(
        model,
        trace,
        mode,
        metric=metric,
        reference=reference,
        method=method,
        verify=verify,
        resample_text=resample_text,
        progress=progress,
        executor=executor,
    )
    result.save(directory)
    return result


def record_under_into(
    model: Model, runs: Trace | TraceSet, directory: str | os.PathLike[str], under: Intervention
) -> tuple[Trace | TraceSet, Path]:
    """The runs' own tokens recorded again under an intervention (`record_under`), written to
    DIR/interventions/intervention-<digest>/, a trace directory of its own (for a sweep, say).
    The output directory is checked before any work."""
    out = Path(directory) / store.INTERVENTIONS_DIR / f"{INTERVENTION}-{under.digest()}"
    check_output_dir(out)
    again = record_under(model, runs, under)
    again.save(out)
    return again, out


def strong_heads(
    model: Model, directory: str | os.PathLike[str] | None = None
) -> list[tuple[int, int]]:
    """The heads that matter, which random controls leave out: the strongest 4% of the heads
    by each head role (the model's probe) and, where DIR holds a sweep, its 7.5% largest
    effects."""
    total = model.n_layers * model.n_heads
    roles = model_head_roles(model)
    per_role, swept = max(1, round(0.04 * total)), max(1, round(0.075 * total))
    heads = {head for role in roles.roles for head, _ in roles.top(role, per_role)}
    if directory is not None and SweepResult.saved_in(directory):
        heads |= {head for head, _ in SweepResult.load(directory).top_heads(swept)}
    return sorted(heads)


def ablate_into(
    model: Model,
    trace: Trace,
    directory: str | os.PathLike[str],
    heads: Sequence[Target] | Intervention,
    mode: AblationMode = "mean",
    *,
    site: Site = "heads",
    metric: Metric | MetricFn | str | None = None,
    reference: TraceSet | Trace | None = None,
    resample_text: str | None = None,
    samples: int = 0,
    controls: int = 0,
    max_new_tokens: int | None = None,
    progress: bool = False,
) -> tuple[AblationReport, Path]:
    """Ablate `heads` (or a layer's site's targets, or apply any intervention); write
    DIR/ablations/<targets>-<mode>/ (or intervention-<digest>/: the ablated run's trace and
    effect.json). The output directory is checked before any work."""
    targets = heads if isinstance(heads, Intervention) else sites.check_targets(site, heads, model)
    out = Path(directory) / store.ABLATIONS_DIR / _dirname(targets, mode, site, reference)
    check_output_dir(out, own=store.TRACE_ENTRIES | {store.EFFECT_FILE})
    report = ablate(
        model,
        trace,
        targets,
        mode,
        site=site,
        metric=metric,
        reference=reference,
        resample_text=resample_text,
        samples=samples,
        controls=controls,
        exclude=strong_heads(model, directory) if controls else (),
        max_new_tokens=max_new_tokens,
        progress=progress,
    )
    assert report.regeneration is not None  # ablate regenerates by default
    report.regeneration.ablated.save(out, extra_json={store.EFFECT_FILE: report.summary()})
    return report, out


def ablate_set_into(
    model: Model,
    rows: TraceSet,
    directory: str | os.PathLike[str],
    heads: Sequence[Target] | Intervention,
    mode: AblationMode = "mean",
    *,
    site: Site = "heads",
    samples: int = 16,
    controls: int = 0,
    max_new_tokens: int | None = None,
    reference: TraceSet | Trace | None = None,
    resample_text: str | None = None,
    progress: bool = False,
    executor: Executor | None = None,
) -> tuple[PairedSamples, Path]:
    """Paired samples of an ablation on every row of a set (`ablate_samples`), written to
    SET_DIR/ablations/<targets>-<mode>/effect.json (the targets, mode, site, row count and the
    paired samples' keys; summary.json names the format). The output directory is checked
    before any work."""
    targets = heads if isinstance(heads, Intervention) else sites.check_targets(site, heads, model)
    out = Path(directory) / store.ABLATIONS_DIR / _dirname(targets, mode, site, reference)
    own = frozenset({store.SUMMARY, store.EFFECT_FILE})
    check_output_dir(out, own=own, formats=(SET_ABLATION_FORMAT,))
    paired = ablate_samples(
        model,
        rows,
        targets,
        mode,
        site=site,
        samples=samples,
        controls=controls,
        exclude=strong_heads(model, directory) if controls else (),
        max_new_tokens=max_new_tokens,
        reference=reference,
        resample_text=resample_text,
        progress=progress,
        executor=executor,
    )
    kind = {"format": SET_ABLATION_FORMAT, "format_version": 1}
    record = {
        **kind,
        **_named(targets, mode, site),
        "rows": len(rows),
        **paired.summary(),
        **({} if executor is None else {"executor": describe(executor)}),
    }
    with atomic.atomic_dir(out) as tmp:
        (tmp / store.EFFECT_FILE).write_text(store.dumps(record), encoding="utf-8")
        (tmp / store.SUMMARY).write_text(store.dumps(kind), encoding="utf-8")
    return paired, out


SET_ABLATION_FORMAT = "interp-set-ablation"


def _dirname(
    targets: Sequence[Target] | Intervention, mode: str, site: Site, reference: Any
) -> str:
    """An ablation's directory name; an intervention's is its digest (a callable is refused)."""
    if isinstance(targets, Intervention):
        return f"{INTERVENTION}-{targets.digest()}"
    digest = None if reference is None else reference_digest(reference)
    return ablation_dirname(targets, mode, site, digest)


def _named(targets: Sequence[Target] | Intervention, mode: str, site: Site) -> dict[str, Any]:
    """What a set's effect.json says was done: the targets (an intervention's edits), the mode
    and the site."""
    if isinstance(targets, Intervention):
        return {
            "heads": [e.label for e in targets.edits],
            "mode": INTERVENTION,
            "site": INTERVENTION,
        }
    return {"heads": [sites.label(site, t) for t in targets], "mode": mode, "site": site}
