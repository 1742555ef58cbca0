"""The subcommands: each validates what it can before loading the model, calls the library,
and prints what it did."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from interp.cli.inputs import load_trace, recorded

AUTO_SWEEP_TOKENS = 40  # interp run sweeps by default up to this many generated tokens


def cmd_generate(args: argparse.Namespace) -> int:
    with recorded(args) as (_, trace, out):
        pass
    if not hasattr(trace, "token_logprobs"):  # a set of rows
        for i, row in enumerate(trace):
            print(f"[{i}] {row.prompt}\u2502{row.continuation}")
        tokens = sum(row.n_generated for row in trace)
        rate = trace[0].timings["tokens_per_s"]
        print(f"[{len(trace)} rows, {tokens} tokens, {rate:.1f} tok/s]")
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
    from interp.atomic import exclusive
    from interp.store import ANALYSIS_FILE
    from interp.workflow import analyze_into

    with exclusive(args.trace_dir):
        model, trace = load_trace(args, sets=True)
        summary = analyze_into(model, trace, args.trace_dir).summary()
    if "set" in summary:
        _print_set_analysis(trace, summary)
    else:
        _print_analysis(trace, summary)
    print(f"analysis written to {args.trace_dir} (summary.json 'analysis', {ANALYSIS_FILE})")
    return 0


def _layer_picks(layers: list[str]) -> list[int]:
    shown = range(0, len(layers), max(1, len(layers) // 6))
    return sorted(set(shown) | {len(layers) - 1})


def _print_set_analysis(traces: Any, summary: dict[str, Any]) -> None:
    lens = summary["set"]["logit_lens"]
    picks = _layer_picks(lens["layers"])

    def spread(name: str, i: int) -> str:
        se = lens[f"{name}_se"][i]
        return f"{lens['layers'][i]} {lens[name][i]:.2f}" + ("" if se is None else f"±{se:.2f}")

    tokens = sum(t.n_generated for t in traces)
    print(f"{len(traces)} rows, {tokens} generated tokens; means over rows ± standard error")
    print("logit lens, mean KL to the final layer (nats): " + "  ".join(
        spread("mean_kl", i) for i in picks
    ))  # fmt: skip
    print("logit lens, top-1 agreement with the final layer: " + "  ".join(
        spread("top1_agreement", i) for i in picks
    ))  # fmt: skip
    _print_roles(summary)
    print(
        "direct logit attribution over every row, top heads (signed mean logit, ranked by "
        "magnitude): " + "  ".join(f"{h} {v:+.3f}" for h, v in summary["set"]["dla_top_heads"][:5])
    )


def _print_roles(summary: dict[str, Any]) -> None:
    probe = summary["probe"]
    sd = probe["loss_first_copy_sd"], probe["loss_second_copy_sd"]
    spread = "" if sd[0] is None else f" (sd over sequences {sd[0]:.2f}, {sd[1]:.2f})"
    print(
        f"head roles on {probe['sequences']} x 2 x {probe['block_len']} repeated random tokens "
        f"(loss {probe['loss_first_copy']:.2f} on the first copy, "
        f"{probe['loss_second_copy']:.2f} on the second{spread}):"
    )
    for role, heads in summary["head_roles"].items():
        print(f"  {role:16s} " + "  ".join(f"{h} {v:.2f}" for h, v in heads[:5]))


def _print_analysis(trace: Any, summary: dict[str, Any]) -> None:
    lens = summary["logit_lens"]
    picks = _layer_picks(lens["layers"])
    print(f"{trace.prompt}\u2502{trace.continuation}")
    print(
        "logit lens, mean KL to the final layer (nats): "
        + "  ".join(f"{lens['layers'][i]} {lens['mean_kl'][i]:.2f}" for i in picks)
    )
    print(
        "logit lens, top-1 agreement with the final layer: "
        + "  ".join(f"{lens['layers'][i]} {lens['top1_agreement'][i]:.2f}" for i in picks)
    )
    depth = sorted(summary["prediction_depth"])
    median = lens["layers"][depth[len(depth) // 2]]
    print(f"prediction depth (median over {len(depth)} generated tokens): {median}")
    _print_roles(summary)
    print(
        "direct logit attribution, top heads (signed mean logit, ranked by magnitude): "
        + "  ".join(f"{h} {v:+.3f}" for h, v in summary["dla_top_heads"][:5])
    )


def _marked(text_ids: list[int], model, divergence: int | None) -> str:
    """The continuation with the first diverging token onwards in brackets."""
    if divergence is None:
        return model.decode(text_ids)
    return (
        model.decode(text_ids[:divergence])
        + "\u27e6"
        + model.decode(text_ids[divergence:])
        + "\u27e7"
    )


def cmd_ablate(args: argparse.Namespace) -> int:
    from interp.atomic import exclusive
    from interp.errors import InvalidSettingError
    from interp.heads import check_spec
    from interp.interventions import sites
    from interp.traceset import TraceSet
    from interp.workflow import ablate_into

    metric, mode = _check_ablation(args)
    site = args.site.replace("-", "_")
    if args.samples < 0 or args.controls < 0:
        raise InvalidSettingError("--samples and --controls must be >= 0")
    if (args.controls or args.max_new_tokens is not None) and not args.samples:
        raise InvalidSettingError("--controls and --max-new-tokens go with --samples N")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise InvalidSettingError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    check_spec(args.heads)  # the spelling, before the model; its range after
    with exclusive(args.trace_dir):
        model, trace = load_trace(args, sets=args.samples > 0)
        targets = sites.parse_targets(args.heads, site, model)  # before any work
        if isinstance(trace, TraceSet):  # a set: its rows' paired samples, pooled
            from interp.workflow import ablate_set_into

            paired, out = ablate_set_into(
                model, trace, args.trace_dir, targets, mode, site=site,
                samples=args.samples, controls=args.controls,
                max_new_tokens=args.max_new_tokens, reference=_reference(args, model),
                resample_text=args.resample_text, progress=sys.stderr.isatty(),
            )  # fmt: skip
            _print_samples(paired, f"[{len(trace)} rows]")
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
    print(f"ablated {report.ablation.label} ({mode}: {report.ablation.source})")
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
    print(f"baseline: {trace.prompt}\u2502{_marked(regen.baseline.continuation_ids, model, div)}")
    print(f"ablated:  {trace.prompt}\u2502{_marked(regen.ablated.continuation_ids, model, div)}")
    print("texts identical" if div is None else f"first divergence at generated token {div}")
    if report.samples is not None:
        _print_samples(report.samples, trace.prompt)
    print(f"written to {out}")
    return 0


def _print_samples(paired: Any, prompt: str, shown: int = 3) -> None:
    """The aggregate line of the ablation and of each control, and the first pairs with
    their divergence marked."""
    print(f"{paired.samples} paired samples, {paired.effect.horizon} tokens each:")
    print(f"  ablated {paired.effect.label}: {paired.effect.line()}")
    for control in paired.controls:
        print(f"  control {control.label}: {control.line()}")
    print(f"  {paired.comparison()}")
    for pair in paired.effect.pairs[:shown]:
        where = "identical" if pair.first_divergence is None else f"from {pair.first_divergence}"
        print(f"  seed {pair.seed} ({where}):")
        for name, text, i in (
            ("baseline", pair.baseline_text, 0),
            ("ablated", pair.ablated_text, 1),
        ):
            if pair.divergence_chars is not None:
                cut = pair.divergence_chars[i]
                text = f"{text[:cut]}\u27e6{text[cut:]}\u27e7"
            print(f"    {name + ':':9s} {prompt}\u2502{text}")


def cmd_sweep(args: argparse.Namespace) -> int:
    from interp.atomic import exclusive
    from interp.errors import InvalidSettingError
    from interp.metrics import describe
    from interp.store import SWEEP_FILE
    from interp.traceset import TraceSet
    from interp.workflow import sweep_into

    if args.verify is not None and args.verify < 1:
        raise InvalidSettingError(f"--verify must be >= 1, got {args.verify}")
    metric, mode = _check_ablation(args)
    with exclusive(args.trace_dir):
        model, trace = load_trace(args, sets=True)
        rows = list(trace) if isinstance(trace, TraceSet) else [trace]
        metric.bind(model, rows)  # every row's answer checked before any work
        reference = _reference(args, model)
        result = sweep_into(
            model,
            trace,
            args.trace_dir,
            mode,
            metric=metric,
            reference=reference,
            method="triage" if args.triage else "exact",
            verify=args.verify,
            resample_text=args.resample_text,
            progress=sys.stderr.isatty(),
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
    for head, delta in summary["top_heads"]:
        layer, h = (int(x) for x in head[1:].split("H"))
        spread = "" if se is None else f" ± {float(se[layer, h]):.3f}"
        print(f"  {head:8s} {delta:+.3f}{spread}")
    print(f"written to {args.trace_dir} (summary.json 'sweep', {SWEEP_FILE})")
    return 0


def _check_ablation(args: argparse.Namespace) -> tuple[Any, Any]:
    """The metric (parsed) and the mode, checked before any model loads."""
    from interp import inputs, metrics
    from interp.errors import InvalidSettingError

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
    from interp.workflow import reference_rows

    return None if args.reference is None else reference_rows(model, args.reference)


def cmd_report(args: argparse.Namespace) -> int:
    from interp.atomic import exclusive
    from interp.report.build import build_report

    with exclusive(args.trace_dir):
        page = build_report(args.trace_dir, formats=args.formats)
    print(f"report written to {page.resolve().as_uri()}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from interp.report.build import build_report
    from interp.workflow import analyze_into, sweep_into

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
