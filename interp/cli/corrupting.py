"""The corrupted side of `interp patch` and `interp circuit` given as an intervention on the
clean runs (`--corrupt FILE`, or `--noise` with its seed, draws and scale), read before any
model loads."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from interp.cli.inputs import integer, intervention_file


def add_corruption_options(p: argparse.ArgumentParser) -> None:
    """The corrupted side given as an intervention on the clean runs, not a directory."""
    p.add_argument(
        "--corrupt",
        type=Path,
        default=None,
        metavar="FILE",
        help="instead of CORRUPTED_DIR: the clean runs under this intervention (JSON, the "
        "serialised form of an interp.Intervention)",
    )
    p.add_argument(
        "--noise",
        default=None,
        metavar="SPEC",
        help="instead of CORRUPTED_DIR: the clean runs with seeded Gaussian noise on the "
        "embeddings (3 x the standard deviation of the embedding matrix's entries, or "
        "--noise-scale) at 'span:TEXT' (each row's tokens of TEXT), 'span.last:TEXT' (a "
        "role: first, middle, last, after, further), 'field:subject' (each row's own field) "
        "or 'all'",
    )
    p.add_argument("--noise-seed", type=integer, default=0, metavar="N")
    p.add_argument(
        "--draws",
        type=integer,
        default=None,
        metavar="K",
        help="with --noise: K noise draws of each clean run (seeds N, N+1, ...), each a row",
    )
    p.add_argument(
        "--noise-scale",
        default=None,
        metavar="SCALE",
        help="with --noise: the noise's standard deviation, or 'rome' (3 x the standard "
        "deviation of the corrupted tokens' embeddings over the runs; default 3 x that of the "
        "whole embedding matrix)",
    )


def corruption(args: Any) -> Any:
    """The intervention the clean runs are corrupted by (`--corrupt` or `--noise`), or None
    where CORRUPTED_DIR is given: exactly one of the three."""
    from interp.edits.positions import parse_spans
    from interp.edits.value import edit
    from interp.errors import InvalidSettingError

    given = [args.corrupted_dir is not None, args.corrupt is not None, args.noise is not None]
    if sum(given) != 1:
        raise InvalidSettingError("give one corrupted side: CORRUPTED_DIR, --corrupt or --noise")
    draws, scale = args.draws, args.noise_scale
    if args.noise is None and (draws is not None or scale is not None):
        raise InvalidSettingError("--draws and --noise-scale go with --noise")
    if args.corrupt is not None:
        return intervention_file(args.corrupt)
    if args.noise is None:
        return None
    if draws is not None and draws < 1:
        raise InvalidSettingError(f"--draws must be at least 1, got {draws}")
    try:
        scale = scale if scale in (None, "rome") else float(scale)
    except ValueError:
        raise InvalidSettingError(
            f"--noise-scale is a number or 'rome', got {scale!r:.40}"
        ) from None
    asked = (("seed", args.noise_seed), ("draws", draws), ("scale", scale))
    params: dict[str, Any] = {key: value for key, value in asked if value is not None}
    if args.noise == "all":
        return edit("embed", "noise", **params)
    spans = parse_spans(args.noise) if not args.noise.startswith("rome") else None
    if spans is None:
        raise InvalidSettingError(
            f"--noise {args.noise!r:.60}: write 'all', span:TEXT, span.ROLE:TEXT, field:NAME or "
            "field.ROLE:NAME"
        )
    return edit("embed", "noise", positions=spans[0], **params)
