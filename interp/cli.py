"""The `interp` command. Thin: it parses options, calls the library, prints, and turns typed
errors into one line and an exit status. `--help` never imports torch."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m"  # kept in step with interp.models.DEFAULT_MODEL (tested)
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
AUTO_SWEEP_TOKENS = 40  # interp run sweeps by default up to this many generated tokens
_OWN_PROCESS = False  # set by console_main: the process runs the CLI alone


def _int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    return value


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interp",
        description="Record a model's sampled generation with TransformerLens and analyse it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    gen = sub.add_parser(
        "generate",
        help="sample a continuation of a prompt and record its activations as a trace",
        description=(
            "Sample a continuation of PROMPT token by token (KV cache, one new token per "
            "forward), record the activations, print the text and write the trace to --out."
        ),
    )
    gen.add_argument("prompt", metavar="PROMPT", help="the text to continue")
    add_generation_options(gen)
    gen.set_defaults(func=cmd_generate)

    ana = sub.add_parser(
        "analyze",
        help="run every analysis on a saved trace and write the results beside it",
        description=(
            "Logit lens, attention and head roles, and direct logit attribution on the trace in "
            "TRACE_DIR. Writes analysis.safetensors and the headline figures under the key "
            "'analysis' of TRACE_DIR/summary.json."
        ),
    )
    ana.add_argument(
        "trace_dir", metavar="TRACE_DIR", type=Path, help="a directory written by generate"
    )
    ana.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, mps")
    ana.set_defaults(func=cmd_analyze)

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
    abl.add_argument(
        "trace_dir", metavar="TRACE_DIR", type=Path, help="a directory written by generate"
    )
    abl.add_argument(
        "--heads",
        required=True,
        help="heads to ablate: L5H1 (layer 5, head 1), comma-separated, or L5 for a whole layer",
    )
    add_ablation_options(abl)
    abl.set_defaults(func=cmd_ablate)

    swp = sub.add_parser(
        "sweep",
        help="ablate every head alone and rank heads by their effect on the continuation",
        description=(
            "Ablate each head in turn and measure the change in total log-probability of the "
            "recorded continuation (exact), with the attribution-patching estimate beside it. "
            "--triage verifies only the heads the estimate ranks highest. Writes sweep.safetensors "
            "and the key 'sweep' of TRACE_DIR/summary.json."
        ),
    )
    swp.add_argument(
        "trace_dir", metavar="TRACE_DIR", type=Path, help="a directory written by generate"
    )
    add_ablation_options(swp)
    swp.add_argument(
        "--triage",
        action="store_true",
        help="estimate every head, then verify only the --verify highest exactly (faster)",
    )
    swp.add_argument(
        "--verify",
        type=_int,
        default=None,
        metavar="N",
        help="with --triage: how many heads to verify exactly (default: 3/8 of the heads)",
    )
    swp.set_defaults(func=cmd_sweep)

    rep = sub.add_parser(
        "report",
        help="render the HTML report and PNG figures of an analysed trace (no model run)",
        description=(
            "Write TRACE_DIR/index.html (self-contained, opens offline) and TRACE_DIR/figures/ "
            "from the saved trace and its results; the model is not run."
        ),
    )
    rep.add_argument(
        "trace_dir", metavar="TRACE_DIR", type=Path, help="an analysed trace directory"
    )
    rep.set_defaults(func=cmd_report)

    run = sub.add_parser(
        "run",
        help="prompt to report in one command: generate, analyze, sweep, report",
        description=(
            "Generate a continuation of PROMPT with recorded activations, run every analysis, "
            "sweep head ablations (by default for continuations of at most "
            f"{AUTO_SWEEP_TOKENS} tokens) and write the report; prints its file:// address."
        ),
    )
    run.add_argument("prompt", metavar="PROMPT", help="the text to continue")
    add_generation_options(run)
    run.add_argument(
        "--sweep",
        dest="sweep",
        action="store_true",
        default=None,
        help="sweep head ablations whatever the length "
        f"(default: only up to {AUTO_SWEEP_TOKENS} tokens)",
    )
    run.add_argument("--no-sweep", dest="sweep", action="store_false", help="skip the sweep")
    run.set_defaults(func=cmd_run)
    return parser


def add_ablation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode",
        choices=("mean", "zero", "resample"),
        default="mean",
        help="what replaces a head's output: its mean over the trace's positions (default), "
        "zero, or its output at the same position on another text (resample)",
    )
    parser.add_argument(
        "--resample-text",
        metavar="TEXT",
        default=None,
        help="with --mode resample: the text whose head outputs are used (default: a fixed "
        "neutral paragraph)",
    )
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, mps")


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    parser.add_argument(
        "--max-new-tokens",
        type=_int,
        default=100,
        metavar="N",
        help="how many tokens to generate at most (default: 100)",
    )
    parser.add_argument(
        "--temperature",
        type=_float,
        default=1.0,
        metavar="T",
        help="divide the logits by T before sampling; 0 means greedy (default: 1.0)",
    )
    parser.add_argument(
        "--top-k",
        type=_int,
        default=None,
        metavar="K",
        help="sample only among the K most likely tokens (default: off)",
    )
    parser.add_argument(
        "--top-p",
        type=_float,
        default=None,
        metavar="P",
        help="sample only among the most likely tokens whose probability reaches P, "
        "0 < P <= 1 (default: off)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the sampler's own random generator; same seed, same text (default: 0)",
    )
    parser.add_argument(
        "--continuation",
        metavar="TEXT",
        default=None,
        help="record this given continuation instead of sampling one (teacher forcing); "
        "include its leading space, e.g. ' the sun.'",
    )
    parser.add_argument(
        "--no-stop-at-eos",
        dest="stop_at_eos",
        action="store_false",
        help="keep generating past the end-of-sequence token",
    )
    parser.add_argument(
        "--engine",
        choices=("auto", "bridge"),
        default="auto",
        help="auto (default): run the Hugging Face modules directly where the layout is known "
        "(Llama, GPT-2), else the TransformerLens bridge; bridge: always the bridge. Both "
        "record the same activations",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="where to write the trace (default: reports/<slug-of-prompt>/); an existing "
        "trace there is replaced, any other existing content is refused",
    )


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"model name: {DEFAULT_MODEL} (embedded, the default), gpt2, or a Hugging Face "
        "repo id",
    )
    parser.add_argument(
        "--device", default="cpu", help="torch device: cpu (default), cuda, cuda:1, mps"
    )


def slug(text: str, limit: int = 60) -> str:
    """A directory name for a prompt: lower case, words joined by '-'."""
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return words[:limit].rstrip("-") or "trace"


def cmd_generate(args: argparse.Namespace) -> int:
    model, trace, out = _generate(args)
    print(f"{trace.prompt}\u2502{trace.continuation}")
    mean_lp = float(trace.token_logprobs.mean())
    print(
        f"[{trace.n_generated} tokens, {trace.stop_reason}, mean log-prob {mean_lp:.3f}, "
        f"{trace.timings['tokens_per_s']:.1f} tok/s]"
    )
    print(f"trace written to {out}")
    return 0


def _generate(args: argparse.Namespace):
    """Validate generation options, load the model, record and save the trace."""
    from interp.errors import InvalidSettingError
    from interp.sampling import SamplingConfig
    from interp.trace import check_output_dir

    # Everything that can be checked without the model is checked before loading it.
    if not args.prompt.strip():
        raise InvalidSettingError("the prompt is empty")
    if args.max_new_tokens < 1:
        raise InvalidSettingError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.continuation is not None and not args.continuation:
        raise InvalidSettingError("--continuation is empty")
    SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    out = args.out if args.out is not None else Path("reports") / slug(args.prompt)
    check_output_dir(out)

    from interp.generation import generate

    model = _load_model(args.model, args.device)
    trace = generate(
        model,
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        continuation=args.continuation,
        stop_at_eos=args.stop_at_eos,
        progress=sys.stderr.isatty(),
        engine=args.engine,
    )
    trace.save(out)
    return model, trace, out


def _load_model(name: str, device: str):
    """`load_model`, with the imported model stack frozen out of garbage collection first when
    the process is the CLI's own (`interp.models.freeze_imports`; not when `main` is called
    from another program, the tests included)."""
    from interp.models import freeze_imports, load_model

    if _OWN_PROCESS:
        freeze_imports()
    return load_model(name, device=device)


def load_trace(trace_dir: Path, device: str):
    """The trace in `trace_dir` with the model it was recorded with (checked before loading)."""
    from interp.trace import Trace, read_summary

    summary = read_summary(trace_dir)  # a clear error before any model is loaded
    model = _load_model(summary["model"], device)
    return model, Trace.load(trace_dir, model=model)


def cmd_analyze(args: argparse.Namespace) -> int:
    from interp.analysis.suite import ANALYSIS_FILE
    from interp.workflow import analyze_into

    model, trace = load_trace(args.trace_dir, args.device)
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
    from interp.heads import parse_heads
    from interp.workflow import ablate_into

    model, trace = load_trace(args.trace_dir, args.device)
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
    from interp.workflow import SWEEP_FILE, sweep_into

    if args.verify is not None and args.verify < 1:
        from interp.errors import InvalidSettingError

        raise InvalidSettingError(f"--verify must be >= 1, got {args.verify}")
    model, trace = load_trace(args.trace_dir, args.device)
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
    print(
        f"{result.method} sweep ({args.mode} ablation), {n} heads computed exactly, "
        f"estimate rank correlation {summary['estimate_spearman']:+.2f}"
    )
    print("largest effects on the continuation's total log-prob:")
    for head, delta in summary["top_heads"]:
        print(f"  {head:8s} {delta:+.3f}")
    print(f"written to {args.trace_dir} (summary.json 'sweep', {SWEEP_FILE})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from interp.report.page import build_report

    page = build_report(args.trace_dir)
    print(f"report written to {page.resolve().as_uri()}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from interp.report.page import build_report
    from interp.workflow import analyze_into, sweep_into

    model, trace, out = _generate(args)
    print(f"{trace.prompt}\u2502{trace.continuation}")
    analyze_into(model, trace, out)
    do_sweep = args.sweep if args.sweep is not None else trace.n_generated <= AUTO_SWEEP_TOKENS
    if do_sweep:
        sweep_into(model, trace, out, progress=sys.stderr.isatty())
    page = build_report(out)
    print(f"report written to {page.resolve().as_uri()}")
    return 0


def configure_output() -> None:
    """interp's log lines on stderr; library chatter off; progress bars only in a terminal."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("interp: %(message)s"))
    root = logging.getLogger("interp")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # Libraries below us speak only through warnings we already turn into clear messages.
    logging.getLogger("transformers").setLevel(logging.ERROR)
    logging.getLogger("transformer_lens").setLevel(logging.ERROR)
    logging.getLogger("root").setLevel(logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    if not sys.stderr.isatty():
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (testable without a subprocess)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_output()
    from interp.errors import (
        InterpError,
        InvalidSettingError,
        OutputPathError,
        TraceFormatError,
        UnknownModelError,
    )

    try:
        return int(args.func(args))
    except (InvalidSettingError, UnknownModelError, OutputPathError, TraceFormatError) as exc:
        _error(exc)
        return EXIT_BAD_INPUT
    except InterpError as exc:
        _error(exc)
        return EXIT_ERROR
    except KeyboardInterrupt:
        _error("interrupted; nothing was written")
        return 130


def _error(message: object) -> None:
    text = " ".join(str(message).split())
    print(f"interp: error: {text}", file=sys.stderr)


def console_main() -> None:
    global _OWN_PROCESS
    _OWN_PROCESS = True
    sys.exit(main())


if __name__ == "__main__":
    console_main()
