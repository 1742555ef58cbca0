"""Reading a subcommand's inputs: the generation options and prompts file, checked before
the model loads; the output directory; the model; a saved trace or set."""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "smollm2-135m"  # kept in step with interp.models.DEFAULT_MODEL (tested)


def integer(text: str) -> int:
    """An option's integer, or argparse's one-line error."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def figure_formats(text: str) -> tuple[str, ...]:
    """`--format png,svg,pdf`, or argparse's one-line error."""
    from interp.errors import InvalidSettingError
    from interp.report.formats import parse_formats

    try:
        return parse_formats(text)
    except InvalidSettingError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def number(text: str) -> float:
    """An option's number, or argparse's one-line error."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


RAY_LOCAL = "local"  # `--ray` alone: a cluster started on this machine


def add_executor_options(parser: argparse.ArgumentParser) -> None:
    """`--ray [ADDRESS]` and the workers' options: where a command's rows run."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const=RAY_LOCAL,
        default=None,
        metavar="ADDRESS",
        help="run the rows on a Ray cluster (pip install 'interp[ray]'): alone, one started on "
        "this machine (localhost only, token authentication); 'auto' or 'ray://HOST:PORT' "
        "joins a running one. The results equal one process's",
    )
    for flag, kind, meta, text in (
        ("--workers", integer, "N", "N workers, each loading the model once (default 2)"),
        ("--cpus-per-worker", number, "C", "each worker's CPUs and torch threads (default 1)"),
        ("--gpus-per-worker", number, "G", "each worker's GPUs; > 0 runs on CUDA (default 0)"),
    ):
        parser.add_argument(flag, type=kind, default=None, metavar=meta, help=f"with --ray: {text}")


def executor_of(args: argparse.Namespace) -> Any:
    """The executor the options name: None (this process) or an `interp.Ray`, checked."""
    from interp.errors import InvalidSettingError
    from interp.executors import Ray

    names = ("workers", "cpus_per_worker", "gpus_per_worker")
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.ray is None:
        if given:
            raise InvalidSettingError(f"--{next(iter(given)).replace('_', '-')} goes with --ray")
        return None
    return Ray(address=None if args.ray == RAY_LOCAL else args.ray, **given)


def slug(text: str, limit: int = 60) -> str:
    """A directory name for a prompt: lower case, words (of any script) joined by '-'."""
    words = re.sub(r"[\W_]+", "-", text.lower()).strip("-")
    return words[:limit].rstrip("-") or "trace"


@contextlib.contextmanager
def recorded(args: argparse.Namespace) -> Iterator[tuple[Any, Any, Path]]:
    """Check the options and the output, take the output's lock, record and save the trace:
    (model, trace, output directory), the lock held until the block ends."""
    from interp.files.atomic import exclusive

    out = _check_generation(args)
    with exclusive(out):
        _check_output(args, out)
        model, trace = _generate(args, out)
        yield model, trace, out


def _check_generation(args: argparse.Namespace) -> Path:
    """Every generation option that can be checked without the model; the output path."""
    from interp import inputs
    from interp.errors import InvalidSettingError
    from interp.generation.prompts import read_prompts
    from interp.generation.sampling import SamplingConfig

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
    args.executor = executor_of(args) if hasattr(args, "ray") else None
    if args.executor is not None and args.rows is None:
        raise InvalidSettingError("--ray spreads a set's rows: give --prompts FILE")
    if args.continuation is not None:
        inputs.text(args.continuation, "--continuation", blank_ok=True)
    for option in ("num_samples", "batch_size"):
        value = getattr(args, option, None)
        if value is not None and value < 1:
            raise InvalidSettingError(f"--{option.replace('_', '-')} must be >= 1, got {value}")
    if getattr(args, "num_samples", 1) > 1 and (args.continuation or _forced_rows(args)):
        raise InvalidSettingError("--num-samples > 1 with forced continuations: they have one")
    if args.rows is not None:  # each row's record repeats its line's fields
        from interp.files.store import MAX_JSON_BYTES, dumps

        size = sum(len(dumps(r.fields).encode()) for r in args.rows)
        size *= getattr(args, "num_samples", 1) or 1
        if size > MAX_JSON_BYTES:
            raise InvalidSettingError(
                f"{file}: its extra fields, copied into every sample's record, would make "
                f"{size:,} bytes of the set's summary.json, more than the {MAX_JSON_BYTES:,} "
                "interp reads back; keep the fields small or use fewer samples"
            )
    SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    inputs.seed(args.seed)
    path = getattr(args, "intervention", None)
    args.edits = None if path is None else intervention_file(path)
    if args.out is not None:
        return args.out
    return Path("reports") / slug(str(file.stem if file is not None else args.prompt))


def _forced_rows(args: argparse.Namespace) -> bool:
    return bool(args.rows) and args.rows[0].continuation is not None


def _check_output(args: argparse.Namespace, out: Path) -> None:
    """The output directory may be written; a default one that holds another prompt's trace
    is never replaced without --out."""
    from interp.errors import OutputPathError
    from interp.files.store import FORMAT, SET_FORMAT, check_output_dir, is_trace_dir, read_summary

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
    from interp.generation.generate import generate

    model = load_model(args, args.model)
    rows = args.rows
    if rows is not None:
        _check_lengths(model, args, rows)
    samples = getattr(args, "num_samples", 1)
    trace = generate(
        model,
        args.prompt if rows is None else [r.prompt for r in rows],
        executor=getattr(args, "executor", None),
        num_samples=samples,
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
        intervention=getattr(args, "edits", None),
        meta=None if rows is None else [dict(r.fields) for r in rows],  # position labels
    )
    if rows is not None:  # where each row came from
        for i, row in enumerate(trace):
            row.origin = f"{args.prompts}:{rows[i // samples].line}"
    trace.save(out)
    if hasattr(args, "kept"):
        args.kept.append(f"the trace in {out}")
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


def load_model(args: argparse.Namespace, name: str) -> Any:
    """`load_model`, with the imported model stack frozen out of garbage collection first when
    the process is the CLI's own (`interp.program.freeze_imports`; not when `main` is called
    from another program, the tests included)."""
    from interp import models
    from interp.cli.program import freeze_imports

    if getattr(args, "own_process", False):
        freeze_imports()
    return models.load_model(name, device=args.device)


def load_trace(args: argparse.Namespace, *, sets: bool = False) -> tuple[Any, Any]:
    """The trace (with `sets`, or the trace set) in `args.trace_dir`, read and checked first,
    then the model it was recorded with, bound to it."""
    from interp.errors import InvalidSettingError
    from interp.trace.traceset import TraceSet, load_recorded

    recorded = load_recorded(args.trace_dir)  # a clear error before any model is loaded
    if isinstance(recorded, TraceSet) and not sets:
        raise InvalidSettingError(
            f"{args.trace_dir} holds a trace set ({len(recorded)} rows); `interp "
            f"{args.command}` takes one trace"
        )
    rows = list(recorded) if isinstance(recorded, TraceSet) else [recorded]
    model = load_model(args, rows[0].model_name)
    for trace in rows:
        trace.bind(model)
    return model, recorded


MAX_INTERVENTION_BYTES = 64 << 20


def intervention_file(path: Path) -> Any:
    """An `interp.Intervention` from its JSON file, checked before any model loads."""
    import json

    from interp.edits.value import Intervention
    from interp.errors import InvalidSettingError

    try:
        if not path.is_file():
            raise InvalidSettingError(f"{path}: no such intervention file")
        if path.stat().st_size > MAX_INTERVENTION_BYTES:
            raise InvalidSettingError(f"{path}: too large for an intervention file")
        value = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_once)
    except InvalidSettingError as exc:
        raise InvalidSettingError(f"{path}: {exc}") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidSettingError(f"{path}: not a readable JSON intervention ({exc})") from None
    return Intervention.from_json(value, str(path))


def _once(items: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys each appear once (a second "edits" would drop the first)."""
    from interp.errors import InvalidSettingError

    out: dict[str, Any] = {}
    for key, value in items:
        if key in out:
            raise InvalidSettingError(f"the key {key!r} appears twice in one object")
        out[key] = value
    return out


def add_trace_dir(
    parser: argparse.ArgumentParser, help: str = "a directory written by generate"
) -> None:
    parser.add_argument("trace_dir", metavar="TRACE_DIR", type=Path, help=help)


def add_format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        dest="formats",
        type=figure_formats,
        default=("png",),
        metavar="FORMATS",
        help="write every figure in these formats too, e.g. png,svg,pdf (fonts embedded; PNG "
        "always: the page shows it)",
    )


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"model: {DEFAULT_MODEL} (embedded, the default), gemma3-270m (embedded, "
        "`make gemma`), gpt2, a Hugging Face repo id, or a local model folder given as a path "
        "(./dir, /dir, ~/dir)",
    )
    parser.add_argument(
        "--device", default="cpu", help="torch device: cpu (default), cuda, cuda:1, mps"
    )
