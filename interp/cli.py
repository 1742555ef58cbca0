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
            "Sample a continuation of PROMPT token by token (KV cache, one run_with_cache per "
            "step), record the activations, print the text and write the trace to --out."
        ),
    )
    gen.add_argument("prompt", metavar="PROMPT", help="the text to continue")
    add_model_options(gen)
    gen.add_argument(
        "--max-new-tokens",
        type=_int,
        default=100,
        metavar="N",
        help="how many tokens to generate at most (default: 100)",
    )
    gen.add_argument(
        "--temperature",
        type=_float,
        default=1.0,
        metavar="T",
        help="divide the logits by T before sampling; 0 means greedy (default: 1.0)",
    )
    gen.add_argument(
        "--top-k",
        type=_int,
        default=None,
        metavar="K",
        help="sample only among the K most likely tokens (default: off)",
    )
    gen.add_argument(
        "--top-p",
        type=_float,
        default=None,
        metavar="P",
        help="sample only among the most likely tokens whose probability reaches P, "
        "0 < P <= 1 (default: off)",
    )
    gen.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the sampler's own random generator; same seed, same text (default: 0)",
    )
    gen.add_argument(
        "--continuation",
        metavar="TEXT",
        default=None,
        help="record this given continuation instead of sampling one (teacher forcing); "
        "include its leading space, e.g. ' the sun.'",
    )
    gen.add_argument(
        "--no-stop-at-eos",
        dest="stop_at_eos",
        action="store_false",
        help="keep generating past the end-of-sequence token",
    )
    gen.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="where to write the trace (default: reports/<slug-of-prompt>/); an existing "
        "trace there is replaced, any other existing content is refused",
    )
    gen.set_defaults(func=cmd_generate)
    return parser


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
    from interp.models import load_model

    model = load_model(args.model, device=args.device)
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
    )
    trace.save(out)
    print(f"{trace.prompt}\u2502{trace.continuation}")
    mean_lp = float(trace.token_logprobs.mean())
    print(
        f"[{trace.n_generated} tokens, {trace.stop_reason}, mean log-prob {mean_lp:.3f}, "
        f"{trace.timings['tokens_per_s']:.1f} tok/s]"
    )
    print(f"trace written to {out}")
    return 0


def _configure_logging() -> None:
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
    _configure_logging()
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
    sys.exit(main())


if __name__ == "__main__":
    console_main()
