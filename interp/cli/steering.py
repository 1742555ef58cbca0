"""`interp steer`: make a steering vector from two prompt sets (or read one), sample the prompts
steered at each scale beside random-direction controls and a prompting baseline, and write
DIR/vector.safetensors, DIR/steering.json and DIR/index.html. Every input is checked before
anything is generated; bad input writes nothing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from interp.cli.inputs import (
    add_executor_options,
    add_format_option,
    add_model_options,
    executor_of,
    integer,
    load_model,
    number,
)

MAX_WORDS_BYTES = 1 << 20
UNBALANCED = 2  # one set may be at most this many times the size of the other


def add_steering_parser(sub: Any) -> None:
    p = sub.add_parser(
        "steer",
        help="steer generation along a vector and measure it against controls and prompting",
        description=(
            "Make a steering vector (the difference of the residual stream's means over "
            "--positive and --negative, at L.resid_pre, the stream entering block L) or read "
            "one (--vector), "
            "then sample each prompt of PROMPTS unsteered, steered at each of --scales, along "
            "--controls random directions of the same norm, and with --prompt-baseline "
            "prepended: --samples seeds each, shared by every condition. Writes "
            "DIR/vector.safetensors, DIR/steering.json and DIR/index.html."
        ),
    )
    p.add_argument(
        "prompts",
        metavar="PROMPTS",
        type=Path,
        help='the prompts to continue: one a line, or JSON Lines with "prompt"',
    )
    p.add_argument("--positive", type=Path, metavar="FILE", help="prompts with the concept")
    p.add_argument("--negative", type=Path, metavar="FILE", help="prompts without it")
    p.add_argument(
        "--vector", type=Path, metavar="FILE", help="instead of the sets: a vector saved by interp"
    )
    p.add_argument(
        "--layer",
        default=None,
        metavar="L",
        help="the block whose input is steered, or 'best' (most separable)",
    )
    p.add_argument(
        "--method",
        choices=("diffmean", "caa"),
        default="diffmean",
        help="diffmean (default), or caa: the sets are pairs, line by line",
    )
    p.add_argument(
        "--read-at",
        choices=("mean", "last"),
        default="mean",
        help="read each set prompt's stream averaged over its tokens (default) or at "
        "its last token",
    )
    p.add_argument(
        "--scales",
        required=True,
        metavar="S,S,...",
        help="the scales, comma-separated, e.g. 0,2,4,8",
    )
    p.add_argument(
        "--unit",
        choices=("vector", "resid"),
        default="vector",
        help="a scale's unit: the vector itself (default) or the residual stream's "
        "typical norm at the layer (comparable across layers)",
    )
    p.add_argument(
        "--op",
        choices=("add", "project", "set"),
        default="add",
        help="add (default); project: remove the component along the vector; set: "
        "clamp it to the scale",
    )
    p.add_argument(
        "--positions",
        choices=("all", "prompt", "generated"),
        default="all",
        help="which positions are steered (default: all)",
    )
    p.add_argument(
        "--samples", type=integer, default=16, metavar="N", help="seeds per prompt (default 16)"
    )
    p.add_argument(
        "--controls",
        type=integer,
        default=4,
        metavar="K",
        help="random directions of the vector's norm (default 4)",
    )
    p.add_argument(
        "--concept-words",
        type=Path,
        metavar="FILE",
        default=None,
        help="the concept's words, one a line (their plurals, possessives and any case count)",
    )
    p.add_argument(
        "--concept-pattern",
        action="append",
        default=[],
        metavar="REGEX",
        help="a regular expression a whole word of the text may match to count as the concept "
        "(ignoring case; repeatable), beside or instead of --concept-words",
    )
    p.add_argument(
        "--concept",
        choices=("words", "mass"),
        default="words",
        help="the concept measure: the rate of concept words in the text (default) "
        "or the log-probability on them per step",
    )
    p.add_argument(
        "--prompt-baseline",
        metavar="TEXT",
        default=None,
        help="an instruction prepended to each prompt, unsteered, e.g. 'Write about weddings.'",
    )
    p.add_argument(
        "--splits",
        type=integer,
        default=200,
        metavar="N",
        help="random held-out splits each layer's separability is averaged over (default 200)",
    )
    p.add_argument("--max-new-tokens", type=integer, default=40, metavar="N")
    p.add_argument("--temperature", type=number, default=1.0, metavar="T")
    p.add_argument("--seed", type=integer, default=0)
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    add_model_options(p)
    add_format_option(p)
    add_executor_options(p)
    p.set_defaults(func=cmd_steer)


def cmd_steer(args: argparse.Namespace) -> int:
    from interp import inputs
    from interp.errors import InvalidSettingError
    from interp.files.atomic import exclusive
    from interp.generation.prompts import read_prompts
    from interp.report.steering import check_steering_dir, write_steering
    from interp.steering import SteeringVector, steer_eval, steering_vector
    from interp.steering.evaluate import check_counts
    from interp.steering.measures import check_patterns
    from interp.steering.vectors import check_splits

    scales = _scales(args.scales)
    check_counts(args.samples, args.controls)  # everything the model is not needed for, first
    check_splits(args.splits)
    executor = executor_of(args)
    patterns = check_patterns(args.concept_pattern)
    if args.concept_words is None and not patterns:
        raise InvalidSettingError("give --concept-words FILE, --concept-pattern REGEX, or both")
    if args.prompt_baseline is not None:
        inputs.text(args.prompt_baseline, "--prompt-baseline")
    if (args.vector is None) == (args.positive is None and args.negative is None):
        raise InvalidSettingError("give --positive and --negative, or --vector (not both)")
    if args.vector is None and (args.positive is None or args.negative is None):
        raise InvalidSettingError("--positive and --negative go together")
    prompts = [p.prompt for p in read_prompts(args.prompts)]
    sets = None
    if args.vector is None:
        sets = [[p.prompt for p in read_prompts(f)] for f in (args.positive, args.negative)]
        _balanced(sets[0], sets[1], args.method)
    words = [] if args.concept_words is None else _words(args.concept_words)
    given = None if args.vector is None else SteeringVector.load(args.vector)  # its record
    check_steering_dir(args.out)
    with exclusive(args.out):
        model = load_model(args, args.model)
        layer = None if args.layer is None else _layer(args.layer, model)
        by_layer = None
        if given is not None:
            vector = given.check(model)
            if layer is not None and layer != vector.layer:
                raise InvalidSettingError(
                    f"{args.vector} steers layer {vector.layer}, not --layer {args.layer}"
                )
        else:
            assert sets is not None
            if args.layer is None:
                raise InvalidSettingError("--layer L (or 'best') is needed with the sets")
            every = steering_vector(
                model,
                sets[0],
                sets[1],
                layer=None,
                position=args.read_at,
                method=args.method,
                splits=args.splits,
            )
            assert not isinstance(every, SteeringVector)
            by_layer = every.separability
            vector = every.best() if layer is None else every.at(layer)
        result = steer_eval(
            model,
            prompts,
            vector,
            scales=scales,
            samples=args.samples,
            controls=args.controls,
            max_new_tokens=args.max_new_tokens,
            concept_words=words,
            concept_patterns=patterns,
            concept=args.concept,
            prompt_baseline=args.prompt_baseline,
            op=args.op,
            positions=args.positions,
            unit=args.unit,
            temperature=args.temperature,
            seed=args.seed,
            separability_by_layer=by_layer,
            progress=sys.stderr.isatty(),
            executor=executor,
        )
        for warning in result.warnings:
            print(f"interp: warning: {warning}", file=sys.stderr)
        page = write_steering(args.out, result, vector, args.formats)
    print(result.sentence())
    for line in _statistics(result, vector):
        print(line)
    if executor is not None:
        ran = result.settings["executor"]
        print(f"[sampled on Ray: {ran['workers']} workers on {ran['nodes']} node(s)]")
    print(f"written to {page.parent} (vector.safetensors, steering.json, index.html)")
    return 0


def _statistics(result: Any, vector: Any) -> list[str]:
    """Per scale: the concept against the controls' and the verdict, the damage and where the
    texts part; then the steered layer's separability over its splits."""
    lines = [
        f"unsteered: concept {result.unsteered.concept.text()}",
    ]
    for scale, steered, controls, verdict in zip(
        result.scales, result.steered, result.controls, result.verdicts, strict=True
    ):
        against = "" if not controls.samples else f" vs controls {controls.concept.text()}"
        damage = "" if not controls.samples else f" vs controls {controls.kl.text(2)}"
        lines.append(
            f"scale {scale:g}: concept {steered.concept.text()}{against} ({verdict}); "
            f"KL {steered.kl.text(2)}{damage}; first divergence "
            f"{steered.first_divergence.text(1)} of {result.horizon} tokens"
        )
    if result.prompt_baseline is not None:
        b = result.prompt_baseline
        lines.append(
            f"prompted: concept {b.concept.text()}; KL {b.kl.text(2)}; first divergence "
            f"{b.first_divergence.text(1)} of {result.horizon} tokens"
        )
    if vector.separability is not None:
        lines.append(
            f"layer {vector.layer}: held-out separability {vector.separability.text(2)} "
            "(mean over splits, 2.5-97.5th percentiles)"
        )
    return lines


def _scales(text: str) -> list[float]:
    from interp.errors import InvalidSettingError

    out = []
    for part in text.split(","):
        try:
            out.append(number(part.strip()))
        except argparse.ArgumentTypeError:
            raise InvalidSettingError(f"--scales: {part.strip()!r} is not a number") from None
    return out


def _layer(text: str, model: Any) -> int | None:
    """An integer layer in range, or None for 'best'."""
    from interp.errors import InvalidSettingError
    from interp.steering.vector import check_layer

    if text == "best":
        return None
    try:
        value = int(text)
    except ValueError:
        raise InvalidSettingError(f"--layer is an integer or 'best', got {text!r}") from None
    return check_layer(model, value)


def _balanced(positive: list[str], negative: list[str], method: str) -> None:
    from interp.errors import InvalidSettingError

    n_p, n_n = len(positive), len(negative)
    if method == "caa" and n_p != n_n:
        raise InvalidSettingError(f"--method caa takes pairs: {n_p} positive, {n_n} negative")
    if max(n_p, n_n) > UNBALANCED * min(n_p, n_n):
        raise InvalidSettingError(
            f"the sets are unbalanced ({n_p} positive, {n_n} negative prompts): give sets of "
            f"comparable size (at most {UNBALANCED}x apart)"
        )


def _words(path: Path) -> list[str]:
    """One word a line (blank lines and lines starting with # skipped)."""
    from interp.errors import InvalidSettingError

    try:
        if path.stat().st_size > MAX_WORDS_BYTES:
            raise InvalidSettingError(f"{path}: too large for a concept-words file")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidSettingError(f"{path}: cannot read the concept words ({exc})") from None
    words = [w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#")]
    if not words:
        raise InvalidSettingError(f"{path}: no concept words")
    return words
