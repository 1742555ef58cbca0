"""`interp ablate` (heads, a layer's site, or any intervention: the effect, the regenerated
text and paired samples) and the ablation options `interp sweep` shares."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from interp.cli.inputs import (
    add_executor_options,
    add_trace_dir,
    executor_of,
    integer,
    intervention_file,
    load_trace,
)
from interp.cli.printing import marked, print_samples


def add_ablating_parsers(sub: Any) -> None:
    abl = sub.add_parser(
        "ablate",
        help="knock heads out: effect on the recorded continuation and on regenerated text",
        description=(
            "Ablate attention heads of the model that recorded TRACE_DIR. Measures the "
            "teacher-forced change in log-probability of the recorded continuation, then "
            "generates again with the same prompt, seed and sampler noise with the heads "
            "ablated. Writes TRACE_DIR/ablations/<heads>-<mode>/ (the ablated run's trace and "
            "effect.json)."
        ),
    )
    add_trace_dir(abl)
    abl.add_argument(
        "--heads",
        default=None,
        help="heads to ablate: L5H1 (layer 5, head 1), comma-separated, or L5 for a whole layer; "
        "with a layer --site, layers (L5,L7)",
    )
    abl.add_argument(
        "--intervention",
        type=Path,
        default=None,
        metavar="FILE",
        help="instead of --heads: any intervention (JSON, the serialised form of an "
        "interp.Intervention), its effect, regeneration and paired samples; written to "
        "TRACE_DIR/ablations/intervention-<digest>/",
    )
    abl.add_argument(
        "--site",
        choices=("heads", "resid", "attn-out", "mlp-out"),
        default="heads",
        help="where: heads' outputs (L5H1, each head's slice of L5.z; default), the residual "
        "stream entering a block (L5.resid_pre), a layer's attention or MLP output (L5.attn, "
        "L5.mlp)",
    )
    add_ablation_options(abl)
    abl.add_argument(
        "--samples",
        type=integer,
        default=0,
        metavar="N",
        help="N paired regenerations (one seed each for the baseline and the ablated run): "
        "divergence rate, first divergence, KL and log-prob change with 95%% intervals",
    )
    abl.add_argument(
        "--controls",
        type=integer,
        default=0,
        metavar="K",
        help="with --samples: K random head sets of the same size, outside the strongest heads "
        "by role score and by the trace's sweep, measured the same way",
    )
    abl.add_argument(
        "--max-new-tokens",
        type=integer,
        default=None,
        metavar="T",
        help="with --samples: tokens per regeneration (default: the trace's)",
    )
    add_executor_options(abl)
    abl.set_defaults(func=cmd_ablate)


def add_ablation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode",
        choices=("mean", "zero", "resample"),
        default=None,
        help="what replaces a head's output: its mean over the trace's positions (default), "
        "zero, or its output at the same position on another text (resample)",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        metavar="FILE_OR_DIR",
        help="replace by the mean over a reference distribution instead: a trace set (or trace) "
        "directory, or a prompts file (each prompt recorded with one greedy token)",
    )
    parser.add_argument(
        "--metric",
        default="logprob",
        metavar="SPEC",
        help="what the effect is measured by: logprob (the continuation's total log-prob, "
        'default), kl, logit-diff:" Mary"," John" (at the last prompt position), prob:" Paris"; '
        'logit-diff or prob alone read each row\'s "answer" and "distractor" fields',
    )
    parser.add_argument(
        "--resample-text",
        metavar="TEXT",
        default=None,
        help="with --mode resample: the text whose head outputs are used (default: a fixed "
        "neutral paragraph)",
    )
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, mps")


def cmd_ablate(args: argparse.Namespace) -> int:
    from interp.cli.workflow import ablate_into
    from interp.edits.value import Intervention
    from interp.errors import InvalidSettingError
    from interp.files.atomic import exclusive
    from interp.interventions import sites
    from interp.models.heads import check_spec
    from interp.trace.traceset import TraceSet

    metric, mode = _check_ablation(args)
    site = args.site
    edits = _own_intervention(args)
    if args.samples < 0 or args.controls < 0:
        raise InvalidSettingError("--samples and --controls must be >= 0")
    if (args.controls or args.max_new_tokens is not None) and not args.samples:
        raise InvalidSettingError("--controls and --max-new-tokens go with --samples N")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise InvalidSettingError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if edits is None:
        check_spec(args.heads)  # the spelling, before the model; its range after
    executor = executor_of(args)
    with exclusive(args.trace_dir):
        model, trace = load_trace(args, sets=args.samples > 0)
        if executor is not None and not isinstance(trace, TraceSet):
            raise InvalidSettingError("--ray spreads a set's rows; this is one trace")
        targets = (
            edits if edits is not None else sites.parse_targets(args.heads, site, model)
        )  # checked before any work
        if isinstance(trace, TraceSet):  # a set: its rows' paired samples, pooled
            from interp.cli.workflow import ablate_set_into

            paired, out = ablate_set_into(
                model,
                trace,
                args.trace_dir,
                targets,
                mode,
                site=site,
                samples=args.samples,
                controls=args.controls,
                max_new_tokens=args.max_new_tokens,
                reference=_reference(args, model),
                resample_text=args.resample_text,
                progress=sys.stderr.isatty(),
                executor=executor,
            )
            print_samples(paired, f"[{len(trace)} rows]")
            print(f"written to {out}")
            return 0
        metric.bind(model, [trace])  # its tokens checked before any work too
        reference = _reference(args, model)
        report, out = ablate_into(
            model,
            trace,
            args.trace_dir,
            targets,
            mode,
            site=site,
            metric=metric,
            reference=reference,
            resample_text=args.resample_text,
            samples=args.samples,
            controls=args.controls,
            max_new_tokens=args.max_new_tokens,
            progress=sys.stderr.isatty(),
        )
    regen = report.regeneration
    assert regen is not None  # ablate_into always regenerates

    effect = report.effect
    done = report.ablation
    if isinstance(done, Intervention):
        print(f"under {done.label}")
    else:
        print(f"ablated {done.label} ({mode}: {done.source})")
    print(
        f"teacher-forced: total log-prob of the recorded continuation changes by "
        f"{effect.delta_logprob_total:+.3f} over {len(effect.delta_logprob)} tokens"
    )
    if effect.metric != "logprob":
        print(
            f"{effect.metric}: {effect.baseline_metric:.3f} -> {effect.ablated_metric:.3f} "
            f"({effect.delta_metric:+.3f})"
        )
    strs = trace.token_strs[trace.prompt_len :]
    hardest = ", ".join(
        f"#{i} {strs[i]!r} {float(effect.delta_logprob[i]):+.2f}" for i in effect.hardest(3)
    )
    print(f"hardest hit: {hardest}")
    div = regen.first_divergence
    print(f"baseline: {trace.prompt}\u2502{marked(regen.baseline.continuation_ids, model, div)}")
    print(f"ablated:  {trace.prompt}\u2502{marked(regen.ablated.continuation_ids, model, div)}")
    print("texts identical" if div is None else f"first divergence at generated token {div}")
    if report.samples is not None:
        print_samples(report.samples, trace.prompt)
    print(f"written to {out}")
    return 0


def _own_intervention(args: argparse.Namespace) -> Any:
    """`ablate`'s --intervention (read and checked), or None for --heads: exactly one of them,
    and nothing that says what replaces heads beside an intervention."""
    from interp.errors import InvalidSettingError

    if (args.heads is None) == (args.intervention is None):
        raise InvalidSettingError("give --heads or --intervention FILE (one of them)")
    if args.intervention is None:
        return None
    given = [
        flag
        for flag, value in (
            ("--mode", args.mode),
            ("--reference", args.reference),
            ("--resample-text", args.resample_text),
            ("--controls", args.controls or None),
            ("--site", None if args.site == "heads" else args.site),
        )
        if value is not None
    ]
    if given:
        raise InvalidSettingError(
            f"{given[0]} says how heads are ablated; an --intervention holds its own edits"
        )
    return intervention_file(args.intervention)


def _check_ablation(args: argparse.Namespace) -> tuple[Any, Any]:
    """The metric (parsed) and the mode, checked before any model loads."""
    from interp import inputs
    from interp.errors import InvalidSettingError
    from interp.interventions import metrics

    if args.resample_text is not None:
        inputs.text(args.resample_text, "--resample-text")
    mode = args.mode or "mean"
    if args.reference is not None:
        if args.mode not in (None, "mean"):
            raise InvalidSettingError(
                f"--reference replaces by a mean: not with --mode {args.mode}"
            )
        if not args.reference.exists():
            raise InvalidSettingError(f"--reference {args.reference}: no such file or directory")
    return metrics.parse(args.metric), mode


def _reference(args: argparse.Namespace, model: Any) -> Any:
    from interp.cli.workflow import reference_rows

    return None if args.reference is None else reference_rows(model, args.reference)
