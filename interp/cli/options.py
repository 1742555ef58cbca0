"""The command line's options: one parser, its subcommands, their options and help."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn

from interp.cli.ablating import add_ablating_parsers
from interp.cli.circuits import add_circuit_parser
from interp.cli.commands import (
    AUTO_SWEEP_TOKENS,
    cmd_analyze,
    cmd_generate,
    cmd_report,
    cmd_run,
)
from interp.cli.features import add_features_parsers
from interp.cli.inputs import (
    add_executor_options,
    add_format_option,
    add_model_options,
    add_trace_dir,
    integer,
    number,
)
from interp.cli.patching import add_patching_parsers
from interp.cli.steering import add_steering_parser
from interp.cli.sweeping import add_sweep_parser


class _Parser(argparse.ArgumentParser):
    """argparse with interp's error form: one `interp: error:` line and a hint, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"interp: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    gen.add_argument(
        "prompt", metavar="PROMPT", nargs="?", default=None, help="the text to continue"
    )
    add_generation_options(gen)
    gen.add_argument(
        "--prompts",
        type=Path,
        default=None,
        metavar="FILE",
        help="a batch: one prompt a line (blank lines skipped), or JSON Lines (.jsonl) with "
        '"prompt" and an optional "continuation"; the output directory holds the set',
    )
    gen.add_argument(
        "--num-samples",
        type=integer,
        default=1,
        metavar="N",
        help="draw N samples of each prompt, batched, each with its own seed (default: 1)",
    )
    gen.add_argument(
        "--batch-size",
        type=integer,
        default=None,
        metavar="N",
        help="run at most N rows at once (default: as many as fit comfortably in memory)",
    )
    add_executor_options(gen)
    gen.set_defaults(func=cmd_generate)

    ana = sub.add_parser(
        "analyze",
        help="run every analysis on a saved trace and write the results beside it",
        description=(
            "Logit lens, attention and head roles, and direct logit attribution on the trace in "
            "TRACE_DIR (or on every row of a trace set, with means over rows). Writes "
            "analysis.safetensors and the headline figures under the key 'analysis' of "
            "TRACE_DIR/summary.json."
        ),
    )
    add_trace_dir(ana)
    ana.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, mps")
    add_executor_options(ana)
    ana.set_defaults(func=cmd_analyze)

    add_ablating_parsers(sub)
    add_sweep_parser(sub)
    add_patching_parsers(sub)
    add_circuit_parser(sub)
    add_steering_parser(sub)
    add_features_parsers(sub)

    rep = sub.add_parser(
        "report",
        help="render the HTML report and PNG figures of an analysed trace (no model run)",
        description=(
            "Write TRACE_DIR/index.html (self-contained, opens offline) and TRACE_DIR/figures/ "
            "from the saved trace and its results; the model is not run. Of a trace set: the "
            "set's summary, with a page per row under TRACE_DIR/rows/. Of a patching "
            "directory (interp patch, path-patch): its heatmaps and tables. Of a circuit "
            "directory (interp circuit): its faithfulness curve, a layered drawing of its top "
            "edges and a table of them (figures as PNG and SVG)."
        ),
    )
    add_trace_dir(rep, "an analysed trace directory")
    add_format_option(rep)
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
    add_format_option(run)
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


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    parser.add_argument(
        "--max-new-tokens",
        type=integer,
        default=100,
        metavar="N",
        help="how many tokens to generate at most (default: 100)",
    )
    parser.add_argument(
        "--temperature",
        type=number,
        default=1.0,
        metavar="T",
        help="divide the logits by T before sampling; 0 means greedy (default: 1.0)",
    )
    parser.add_argument(
        "--top-k",
        type=integer,
        default=None,
        metavar="K",
        help="sample only among the K most likely tokens (default: off)",
    )
    parser.add_argument(
        "--top-p",
        type=number,
        default=None,
        metavar="P",
        help="sample only among the most likely tokens whose probability reaches P, "
        "0 < P <= 1 (default: off)",
    )
    parser.add_argument(
        "--seed",
        type=integer,
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
        choices=("auto", "direct", "bridge"),
        default="auto",
        help="auto (default): run the Hugging Face modules directly where the layout is known "
        "(Llama, GPT-2), else the TransformerLens bridge; direct: insist on that (an error "
        "where it cannot); bridge: always the bridge. Both record the same activations",
    )
    parser.add_argument(
        "--intervention",
        type=Path,
        default=None,
        metavar="FILE",
        help="record the run under this intervention (JSON, the serialised form of an "
        'interp.Intervention: {"edits": [{"site", "op", "positions", "params"}]})',
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="where to write the trace (default: reports/<slug-of-prompt>/); an existing "
        "trace there is replaced, any other existing content is refused",
    )
