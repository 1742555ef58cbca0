"""The subcommands: each validates what it can before loading the model, calls the library,
and prints what it did."""

from __future__ import annotations

import argparse
import sys

from interp.cli.inputs import executor_of, load_trace, recorded
from interp.cli.printing import print_analysis, print_set_analysis

AUTO_SWEEP_TOKENS = 40  # interp run sweeps by default up to this many generated tokens


def cmd_generate(args: argparse.Namespace) -> int:
    with recorded(args) as (_, trace, out):
        pass
    if not hasattr(trace, "token_logprobs"):  # a set of rows
        for i, row in enumerate(trace):
            print(f"[{i}] {row.prompt}\u2502{row.continuation}")
        tokens = sum(row.n_generated for row in trace)
        rate = trace[0].timings["tokens_per_s"]
        where = ""
        if args.executor is not None:
            record = args.executor.record()
            where = f", on Ray: {record['workers']} workers on {record['nodes']} node(s)"
        print(f"[{len(trace)} rows, {tokens} tokens, {rate:.1f} tok/s{where}]")
        print(f"trace set written to {out}")
        return 0
    print(f"{trace.prompt}\u2502{trace.continuation}")
    mean_lp = float(trace.token_logprobs.mean())
    print(
        f"[{trace.n_generated} tokens, {trace.stop_reason}, mean log-prob {mean_lp:.3f}, "
        f"{trace.timings['tokens_per_s']:.1f} tok/s]"
    )
    print(f"trace written to {out}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from interp.cli.workflow import analyze_into
    from interp.errors import InvalidSettingError
    from interp.files.atomic import exclusive
    from interp.files.store import ANALYSIS_FILE
    from interp.trace.traceset import TraceSet

    executor = executor_of(args)
    with exclusive(args.trace_dir):
        model, trace = load_trace(args, sets=True)
        if executor is not None and not isinstance(trace, TraceSet):
            raise InvalidSettingError("--ray spreads a set's rows; this is one trace")
        summary = analyze_into(model, trace, args.trace_dir, executor=executor).summary()
    if "set" in summary:
        print_set_analysis(trace, summary)
    else:
        print_analysis(trace, summary)
    if executor is not None:
        ran = summary["executor"]
        print(f"[on Ray: {ran['workers']} workers on {ran['nodes']} node(s)]")
    print(f"analysis written to {args.trace_dir} (summary.json 'analysis', {ANALYSIS_FILE})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from interp.files.atomic import exclusive
    from interp.report.build import build_report

    with exclusive(args.trace_dir):
        page = build_report(args.trace_dir, formats=args.formats)
    print(f"report written to {page.resolve().as_uri()}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from interp.cli.workflow import analyze_into, sweep_into
    from interp.report.build import build_report

    with recorded(args) as (model, trace, out):
        print(f"{trace.prompt}\u2502{trace.continuation}")
        analyze_into(model, trace, out)
        args.kept.append("its analysis")
        auto = trace.n_generated <= AUTO_SWEEP_TOKENS
        if args.sweep if args.sweep is not None else auto:
            sweep_into(model, trace, out, progress=sys.stderr.isatty())
            args.kept.append("its sweep")
        page = build_report(out, formats=args.formats)
    print(f"report written to {page.resolve().as_uri()}")
    return 0
