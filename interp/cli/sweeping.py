"""`interp sweep`: every head ablated alone, ranked by its effect (of a set: every row, the
mean over rows)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from interp.cli.ablating import _check_ablation, _reference, add_ablation_options
from interp.cli.inputs import (
    add_executor_options,
    add_trace_dir,
    executor_of,
    integer,
    intervention_file,
    load_trace,
)


def add_sweep_parser(sub: Any) -> None:
    swp = sub.add_parser(
        "sweep",
        help="ablate every head alone and rank heads by their effect on the continuation",
        description=(
            "Ablate each head in turn and measure the change in --metric (the total "
            "log-probability of the recorded continuation by default; exact), with the "
            "attribution-patching "
            "estimate beside it. --triage verifies only the heads the estimate ranks highest. Of "
            "a trace set: every row, the mean over rows. Writes sweep.safetensors and the key "
            "'sweep' of TRACE_DIR/summary.json."
        ),
    )
    add_trace_dir(swp)
    add_ablation_options(swp)
    swp.add_argument(
        "--intervention",
        type=Path,
        default=None,
        metavar="FILE",
        help="sweep the run's own tokens recorded again under this intervention (JSON, the "
        "serialised form of an interp.Intervention), written with its sweep to "
        "TRACE_DIR/interventions/intervention-<digest>/",
    )
    swp.add_argument(
        "--triage",
        action="store_true",
        help="estimate every head, then verify only the --verify highest exactly (faster)",
    )
    swp.add_argument(
        "--verify",
        type=integer,
        default=None,
        metavar="N",
        help="with --triage: how many heads to verify exactly (default: 3/8 of the heads)",
    )
    add_executor_options(swp)
    swp.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from interp.cli.workflow import record_under_into, sweep_into
    from interp.errors import InvalidSettingError
    from interp.files.atomic import exclusive
    from interp.files.store import SWEEP_FILE
    from interp.interventions.metrics import describe
    from interp.trace.traceset import TraceSet

    if args.verify is not None and args.verify < 1:
        raise InvalidSettingError(f"--verify must be >= 1, got {args.verify}")
    metric, mode = _check_ablation(args)
    edits = None if args.intervention is None else intervention_file(args.intervention)
    executor = executor_of(args)
    if executor is not None and args.triage:
        raise InvalidSettingError("--triage picks its heads from every row: drop --ray")
    with exclusive(args.trace_dir):
        model, trace = load_trace(args, sets=True)
        if executor is not None and not isinstance(trace, TraceSet):
            raise InvalidSettingError("--ray spreads a set's rows; this is one trace")
        rows = list(trace) if isinstance(trace, TraceSet) else [trace]
        metric.bind(model, rows)  # every row's answer checked before any work
        reference = _reference(args, model)
        out = args.trace_dir
        if edits is not None:  # the runs' tokens again under it, in a directory of their own
            trace, out = record_under_into(model, trace, args.trace_dir, edits)
        result = sweep_into(
            model,
            trace,
            out,
            mode,
            metric=metric,
            reference=reference,
            method="triage" if args.triage else "exact",
            verify=args.verify,
            resample_text=args.resample_text,
            progress=sys.stderr.isatty(),
            executor=executor,
        )
    summary = result.summary()
    n = int(result.verified.sum())
    rho = summary["estimate_spearman"]
    over = f", mean over {len(rows)} rows" if isinstance(trace, TraceSet) else ""
    how = f"{mode} ablation" + (" over the reference" if args.reference is not None else "")
    print(
        f"{result.method} sweep ({how}{over}), {n} heads computed exactly, "
        f"estimate rank correlation {'n/a' if rho is None else f'{rho:+.2f}'}"
    )
    print(f"largest effects on {describe(result.metric)}:")
    se = result.delta_se
    for head, delta in result.top_heads(10):
        spread = "" if se is None else f" ± {float(se[head]):.3f}"
        print(f"  {head:8s} {delta:+.3f}{spread}")
    if edits is not None:
        print(f"under {edits.label}")
    print(f"written to {out} (summary.json 'sweep', {SWEEP_FILE})")
    return 0
