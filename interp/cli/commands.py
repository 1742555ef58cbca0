"""The subcommands: each validates what it can before loading the model, calls the library,
and prints what it did."""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

AUTO_SWEEP_TOKENS = 40  # interp run sweeps by default up to this many generated tokens


def slug(text: str, limit: int = 60) -> str:
    """A directory name for a prompt: lower case, words (of any script) joined by '-'."""
    words = re.sub(r"[\W_]+", "-", text.lower()).strip("-")
    return words[:limit].rstrip("-") or "trace"


def cmd_generate(args: argparse.Namespace) -> int:
    with _recorded(args) as (_, trace, out):
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


@contextlib.contextmanager
def _recorded(args: argparse.Namespace) -> Iterator[tuple[Any, Any, Path]]:
    """Check the options and the output, take the output's lock, record and save the trace:
    (model, trace, output directory), the lock held until the block ends."""
    from interp.atomic import exclusive

    out = _check_generation(args)
    with exclusive(out):
        _check_output(args, out)
        model, trace = _generate(args, out)
        yield model, trace, out


def _check_generation(args: argparse.Namespace) -> Path:
    """Every generation option that can be checked without the model; the output path."""
    from interp import inputs
    from interp.errors import InvalidSettingError
    from interp.prompts import read_prompts
    from interp.sampling import SamplingConfig

    file = getattr(args, "prompts", None)
    args.rows = None
    if file is not None:
        if args.prompt is not None:
            raise InvalidSettingError("give a PROMPT or --prompts FILE, not both")
        if args.continuation is not None:
            raise InvalidSettingError(
                '--continuation with --prompts: give each line its "continuation" (JSON Lines)'
            )
        args.rows = read_prompts(file)
    elif args.prompt is None:
        raise InvalidSettingError("give a PROMPT (or --prompts FILE)")
    else:
        inputs.text(args.prompt, "the prompt")
    if args.max_new_tokens < 1:
        raise InvalidSettingError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.continuation is not None:
        inputs.text(args.continuation, "--continuation", blank_ok=True)
    for option in ("num_samples", "batch_size"):
        value = getattr(args, option, None)
        if value is not None and value < 1:
            raise InvalidSettingError(f"--{option.replace('_', '-')} must be >= 1, got {value}")
    if getattr(args, "num_samples", 1) > 1 and (args.continuation or _forced_rows(args)):
        raise InvalidSettingError("--num-samples > 1 with forced continuations: they have one")
    SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    inputs.seed(args.seed)
    if args.out is not None:
        return args.out
    return Path("reports") / slug(str(file.stem if file is not None else args.prompt))


def _forced_rows(args: argparse.Namespace) -> bool:
    return bool(args.rows) and args.rows[0].continuation is not None


def _check_output(args: argparse.Namespace, out: Path) -> None:
    """The output directory may be written; a default one that holds another prompt's trace
    is never replaced without --out."""
    from interp.errors import OutputPathError
    from interp.store import FORMAT, SET_FORMAT, check_output_dir, is_trace_dir, read_summary

    check_output_dir(out)
    if args.out is None and is_trace_dir(out):
        other = read_summary(out, (FORMAT, SET_FORMAT)).get("prompt", "a trace set")
        if other != args.prompt or args.rows is not None:
            raise OutputPathError(
                f"{out} holds the trace of another prompt ({str(other)[:40]!r}); pass "
                f"--out {out} to replace it, or another --out"
            )


def _generate(args: argparse.Namespace, out: Path) -> tuple[Any, Any]:
    """Load the model, record the trace and save it to `out`."""
    from interp.generation import generate

    model = _load_model(args, args.model)
    rows = args.rows
    if rows is not None:
        _check_lengths(model, args, rows)
    trace = generate(
        model,
        args.prompt if rows is None else [r.prompt for r in rows],
        num_samples=getattr(args, "num_samples", 1),
        batch_size=getattr(args, "batch_size", None),
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        continuation=args.continuation
        if not _forced_rows(args)
        else [r.continuation for r in rows],
        stop_at_eos=args.stop_at_eos,
        progress=sys.stderr.isatty(),
        engine=args.engine,
    )
    trace.save(out)
    return model, trace


def _check_lengths(model: Any, args: argparse.Namespace, rows: list[Any]) -> None:
    """Each prompt of a file fits the context with its new tokens (the error names its line)."""
    from interp.errors import InvalidSettingError

    for row in rows:
        n = len(model.encode(row.prompt))
        new = (
            args.max_new_tokens
            if row.continuation is None
            else len(model.encode(row.continuation, add_special_tokens=False))
        )
        if n + new > model.n_ctx:
            raise InvalidSettingError(
                f"{args.prompts}:{row.line}: the prompt ({n} tokens) plus {new} new tokens "
                f"exceeds {model.name}'s context of {model.n_ctx} tokens"
            )


def _load_model(args: argparse.Namespace, name: str) -> Any:
    """`load_model`, with the imported model stack frozen out of garbage collection first when
    the process is the CLI's own (`interp.program.freeze_imports`; not when `main` is called
    from another program, the tests included)."""
    from interp import models
    from interp.program import freeze_imports

    if getattr(args, "own_process", False):
        freeze_imports()
    return models.load_model(name, device=args.device)


def load_trace(args: argparse.Namespace) -> tuple[Any, Any]:
    """The trace in `args.trace_dir` (read and checked first), then the model it was recorded
    with, bound to it."""
    from interp.trace import Trace

    trace = Trace.load(args.trace_dir)  # a clear error before any model is loaded
    model = _load_model(args, trace.model_name)
    return model, trace.bind(model)


def cmd_analyze(args: argparse.Namespace) -> int:
    from interp.atomic import exclusive
    from interp.store import ANALYSIS_FILE
    from interp.workflow import analyze_into

    with exclusive(args.trace_dir):
        model, trace = load_trace(args)
        summary = analyze_into(model, trace, args.trace_dir).summary()

    lens = summary["logit_lens"]
    shown = range(0, len(lens["layers"]), max(1, len(lens["layers"]) // 6))
    picks = sorted(set(shown) | {len(lens["layers"]) - 1})
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
    probe = summary["probe"]
    print(
        f"head roles on 2 x {probe['block_len']} repeated random tokens "
        f"(loss {probe['loss_first_copy']:.2f} on the first copy, "
        f"{probe['loss_second_copy']:.2f} on the second):"
    )
    for role, heads in summary["head_roles"].items():
        print(f"  {role:16s} " + "  ".join(f"{h} {v:.2f}" for h, v in heads[:5]))
    print(
        "direct logit attribution, top heads (mean |logit|): "
        + "  ".join(f"{h} {v:.3f}" for h, v in summary["dla_top_heads"][:5])
    )
    print(f"analysis written to {args.trace_dir} (summary.json 'analysis', {ANALYSIS_FILE})")
    return 0


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
    from interp.heads import parse_heads
    from interp.workflow import ablate_into

    _check_resample_text(args)
    with exclusive(args.trace_dir):
        model, trace = load_trace(args)
        heads = parse_heads(args.heads, model.n_layers, model.n_heads)  # before any work
        report, out = ablate_into(
            model,
            trace,
            args.trace_dir,
            heads,
            args.mode,
            resample_text=args.resample_text,
            progress=sys.stderr.isatty(),
        )
    regen = report.regeneration
    assert regen is not None  # ablate_into always regenerates

    effect = report.effect
    print(f"ablated {report.ablation.label} ({args.mode}: {report.ablation.source})")
    print(
        f"teacher-forced: total log-prob of the recorded continuation changes by "
        f"{effect.delta_logprob_total:+.3f} over {len(effect.delta_logprob)} tokens"
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
    print(f"written to {out}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from interp.atomic import exclusive
    from interp.errors import InvalidSettingError
    from interp.store import SWEEP_FILE
    from interp.workflow import sweep_into

    if args.verify is not None and args.verify < 1:
        raise InvalidSettingError(f"--verify must be >= 1, got {args.verify}")
    _check_resample_text(args)
    with exclusive(args.trace_dir):
        model, trace = load_trace(args)
        result = sweep_into(
            model,
            trace,
            args.trace_dir,
            args.mode,
            method="triage" if args.triage else "exact",
            verify=args.verify,
            resample_text=args.resample_text,
            progress=sys.stderr.isatty(),
        )
    summary = result.summary()
    n = int(result.verified.sum())
    rho = summary["estimate_spearman"]
    print(
        f"{result.method} sweep ({args.mode} ablation), {n} heads computed exactly, "
        f"estimate rank correlation {'n/a' if rho is None else f'{rho:+.2f}'}"
    )
    print("largest effects on the continuation's total log-prob:")
    for head, delta in summary["top_heads"]:
        print(f"  {head:8s} {delta:+.3f}")
    print(f"written to {args.trace_dir} (summary.json 'sweep', {SWEEP_FILE})")
    return 0


def _check_resample_text(args: argparse.Namespace) -> None:
    from interp import inputs

    if args.resample_text is not None:
        inputs.text(args.resample_text, "--resample-text")


def cmd_report(args: argparse.Namespace) -> int:
    from interp.atomic import exclusive
    from interp.report.page import build_report

    with exclusive(args.trace_dir):
        page = build_report(args.trace_dir)
    print(f"report written to {page.resolve().as_uri()}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from interp.report.page import build_report
    from interp.workflow import analyze_into, sweep_into

    with _recorded(args) as (model, trace, out):
        print(f"{trace.prompt}\u2502{trace.continuation}")
        analyze_into(model, trace, out)
        auto = trace.n_generated <= AUTO_SWEEP_TOKENS
        if args.sweep if args.sweep is not None else auto:
            sweep_into(model, trace, out, progress=sys.stderr.isatty())
        page = build_report(out)
    print(f"report written to {page.resolve().as_uri()}")
    return 0
