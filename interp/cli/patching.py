"""The patching subcommands: `interp patch` (activation patching) and `interp path-patch`."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Literal

from interp.cli.corrupting import add_corruption_options, corruption
from interp.cli.inputs import add_executor_options, executor_of, integer


def add_patching_parsers(sub: Any) -> None:
    pat = sub.add_parser(
        "patch",
        help="activation patching between a clean and a corrupted run (traces or sets)",
        description=(
            "Patch each candidate of each site from one run into the other and measure "
            "--metric: denoise (the clean value into the corrupted run, default) or noise. "
            "Rows pair up by index and must have the same token length. Writes DIR (default "
            "CLEAN_DIR/patching/<direction>-<metric>-<hash>/, the hash of the exact settings): "
            "patch.safetensors and summary.json."
        ),
    )
    _patching_arguments(pat)
    add_corruption_options(pat)
    add_executor_options(pat)
    pat.add_argument(
        "--window",
        type=integer,
        default=1,
        metavar="K",
        help="resid, attn-out and mlp-out: patch the K layers around each layer at once "
        "(ROME's windows; default 1)",
    )
    pat.add_argument(
        "--positions",
        default="prompt",
        metavar="SPEC",
        help="the per-position sites' columns: prompt (each prompt position, default), all (every "
        "position, for a metric over the continuation), or groups patched at once, resolved in "
        "each row, separated by ';': 'span:Eiffel Tower;last_prompt;S2;-1'; a role of a span "
        "('span.last:Eiffel Tower'), each row's own field ('field.middle:subject'), or ROME's "
        "six categories ('rome:Eiffel Tower', 'rome-field:subject')",
    )
    pat.add_argument(
        "--sites",
        default="heads",
        help="comma-separated: heads, heads-by-pos, resid, attn-out, mlp-out (default: heads)",
    )
    pat.add_argument(
        "--triage",
        action="store_true",
        help="rank candidates by the attribution-patching estimate (one forward and backward "
        "pass per row) and patch only the largest exactly; the others' effects are NaN",
    )
    pat.add_argument(
        "--verify",
        type=integer,
        default=None,
        metavar="N",
        help="with --triage: candidates of each site patched exactly (default: 3/8 of them)",
    )
    pat.set_defaults(func=cmd_patch)

    path = sub.add_parser(
        "path-patch",
        help="path patching: every sender head along its direct path into the receivers",
        description=(
            "Patch each sender head's output only along its direct path into --receivers (the "
            "logits, or named heads' query, key or value inputs), everything else at the run "
            "the patch goes into; measure --metric. Writes DIR (default CLEAN_DIR/patching/"
            "path-<direction>-<metric>-<receivers>-<hash>/): patch.safetensors (path.effect, ...) "
            "and summary.json."
        ),
    )
    _patching_arguments(path)
    path.add_argument(
        "--receivers",
        default="logits",
        metavar="SPEC",
        help="logits (default), or heads' inputs: L23H3.q,L23H3.k,L23H3.v; with grouped-query "
        "attention a key or value input is its KV group's: L23.kv1.k; an MLP's input: L5.mlp",
    )
    add_executor_options(path)
    path.set_defaults(func=cmd_path_patch)


def _patching_arguments(p: argparse.ArgumentParser) -> None:
    """What `patch` and `path-patch` share: the two runs, the metric, direction and output."""
    p.add_argument("clean_dir", type=Path, metavar="CLEAN_DIR", help="the clean trace or set")
    p.add_argument(
        "corrupted_dir",
        type=Path,
        nargs="?",
        default=None,
        metavar="CORRUPTED_DIR",
        help="the corrupted trace or set",
    )
    p.add_argument(
        "--metric",
        default="logit-diff",
        metavar="SPEC",
        help='as for sweep; default logit-diff (each clean row\'s "answer" and "distractor")',
    )
    p.add_argument("--direction", choices=("denoise", "noise"), default="denoise")
    p.add_argument("--out", type=Path, default=None, metavar="DIR")
    p.add_argument(
        "--show",
        choices=("effect", "patched"),
        default="effect",
        help="the report's heatmaps: each cell's mean effect (default) or the patched run's "
        "metric itself (ROME's restored probability)",
    )
    p.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, mps")


def cmd_patch(args: argparse.Namespace) -> int:
    from interp.errors import InvalidSettingError
    from interp.interventions.candidates import check_positions, check_window
    from interp.interventions.patching import patch
    from interp.interventions.patching_site import PATCH_SITES

    sites = [s.strip() for s in args.sites.split(",")]
    unknown = [s for s in sites if s not in PATCH_SITES]
    if unknown or not sites:
        raise InvalidSettingError(
            f"unknown site {unknown[0] if unknown else args.sites!r}; choose from "
            + ", ".join(PATCH_SITES)
        )
    if args.verify is not None and not args.triage:
        raise InvalidSettingError("--verify goes with --triage")
    if args.verify is not None and args.verify < 1:
        raise InvalidSettingError(f"--verify must be at least 1, got {args.verify}")
    method: Literal["exact", "triage"] = "triage" if args.triage else "exact"
    check_window(args.window, sites, method)
    positions = check_positions(_positions(args.positions))  # before any model loads
    args.edits = corruption(args)
    executor = executor_of(args)
    if executor is not None and method == "triage":
        raise InvalidSettingError("--triage picks its candidates from every row: drop --ray")
    return _patching(
        args,
        "",
        lambda model, c, k, metric: patch(
            model,
            c,
            k,
            sites=sites,
            metric=metric,
            direction=args.direction,
            method=method,
            verify=args.verify,
            window=args.window,
            positions=positions,
            executor=executor,
        ),
    )


def _positions(spec: str) -> Any:
    """`--positions`: prompt, all, or `;`-separated groups (a span as `parse_spans` spells
    it, an index, a label)."""
    from interp.edits.positions import parse_spans

    if spec in ("prompt", "all"):
        return spec
    groups: list[Any] = []
    for item in spec.split(";"):
        if (spans := parse_spans(item)) is not None:
            groups += spans
        elif re.fullmatch(r"-?[0-9]{1,4000}", item.strip()):  # int() takes up to 4300 digits
            groups.append(int(item))
        else:
            groups.append(item.strip())
    return groups


def cmd_path_patch(args: argparse.Namespace) -> int:
    from interp.errors import InvalidSettingError
    from interp.interventions.path_patching import path_patch

    if args.corrupted_dir is None:
        raise InvalidSettingError("path-patch needs CORRUPTED_DIR")
    args.edits, args.window, args.positions = None, 1, "prompt"
    executor = executor_of(args)
    return _patching(
        args,
        "path-",
        lambda model, c, k, metric: path_patch(
            model,
            c,
            k,
            receivers=args.receivers,
            metric=metric,
            direction=args.direction,
            executor=executor,
        ),
    )


def _patching(args: argparse.Namespace, kind: str, run: Any) -> int:
    """Load both runs, check the output, run `run(model, clean, corrupted, metric)` under the
    output's lock, save the result and print its top effects."""
    from interp.cli.inputs import load_model
    from interp.errors import InvalidSettingError, ModelMismatchError
    from interp.files.atomic import exclusive
    from interp.interventions import metrics
    from interp.interventions.patching_result import Patching
    from interp.report.build import build_report
    from interp.trace.traceset import TraceSet, load_recorded

    metric = metrics.parse(args.metric)
    if kind:  # the receivers' spelling, before anything is read
        from interp.interventions.receivers import parse_receivers

        parse_receivers(args.receivers, None)
    if args.corrupted_dir is not None and args.clean_dir.resolve() == args.corrupted_dir.resolve():
        raise InvalidSettingError(
            f"{args.clean_dir} is both the clean and the corrupted run: patching a run into "
            "itself changes nothing"
        )
    clean = load_recorded(args.clean_dir)
    corrupted = args.edits if args.corrupted_dir is None else load_recorded(args.corrupted_dir)
    every = [*_rows(clean), *([] if args.corrupted_dir is None else _rows(corrupted))]
    for row in every:  # refusals that need no model
        row.require_plain(f"{kind}patching", replayed=True)
        if row.model_name != every[0].model_name:
            raise ModelMismatchError(
                f"the clean run was recorded with {every[0].model_name!r}, a corrupted row "
                f"with {row.model_name!r}: patching pairs runs of one model"
            )
    under = None if args.edits is None else f"under-{args.edits.digest()}"
    name = Patching.dirname(
        args.direction,
        metric.label,
        args.receivers if kind else None,
        args.window,
        under,
        args.positions,
    )
    out = args.out or args.clean_dir / "patching" / name
    Patching.check_output(out)
    with exclusive(out):
        first = clean[0] if isinstance(clean, TraceSet) else clean
        model = load_model(args, first.model_name)
        if kind:  # receivers are checked before the runs are measured
            from interp.interventions.receivers import parse_receivers

            parse_receivers(args.receivers, model)
        result = run(model, clean, corrupted, metric)
        result.save(out)
    args.kept.append(f"the patching result in {out}")
    rows = f" (means over {result.rows} pairs)" if result.rows > 1 else ""
    rows = rows if result.draws == 1 else f" (means over {result.rows} rows: {result.draws} draws)"
    into = f" into {result.receivers}" if result.receivers else ""
    how = " (triage: the largest estimates patched exactly)" if result.method == "triage" else ""
    if result.executor:
        rows += (
            f" on Ray ({result.executor['workers']} workers, {result.executor['nodes']} node(s))"
        )
    print(
        f"{args.direction} {kind}patching{into}{how} by {result.metric}{rows}: clean "
        f"{result.clean_metric:.3f}, corrupted {result.corrupted_metric:.3f}"
    )
    for site, r in result.results.items():
        top = "  ".join(f"{label} {v:+.3f}" for label, v in r.top(5))
        print(f"  {site:12s} {top}")
    with exclusive(out):
        page = build_report(out, show=args.show)
    print(f"written to {out}; report: {page.resolve().as_uri()}")
    return 0


def _rows(recorded: Any) -> list[Any]:
    return [recorded] if hasattr(recorded, "token_ids") else list(recorded)
