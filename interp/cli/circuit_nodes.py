"""`interp circuit --nodes`: every node's attribution score (the embedding, each head, each
MLP) and the faithfulness curve of the top nodes, for models whose edges are not defined
(Gemma 3), written to a node circuit directory with its page."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from interp.cli.printing import print_circuit
from interp.errors import InvalidSettingError

# the options node scores have no meaning for, each with why
_NOT_FOR_NODES = (
    ("--method exact", lambda a: a.method == "exact", "nodes are scored by eap or eap-ig"),
    ("--kv per-head", lambda a: a.kv == "per-head", "a node has no key or value input"),
    ("--ablation", lambda a: a.ablation != "patch", "a node carries the corrupted run's value"),
    ("--evaluate", lambda a: a.evaluate is not None, "it evaluates a list of edges"),
    ("--sizes", lambda a: a.sizes is not None, "the node curve is at fractions of the nodes"),
    ("--ray", lambda a: a.ray is not None, "node scores run in this process"),
)


def check_node_options(args: argparse.Namespace) -> None:
    """Refuse, before anything is read, an option `--nodes` does not take."""
    for option, given, why in _NOT_FOR_NODES:
        if given(args):
            raise InvalidSettingError(f"--nodes does not take {option}: {why}")


def cmd_nodes(args: argparse.Namespace, clean: Any, corrupted: Any, metric: Any) -> int:
    """Score every node, draw its curve (unless --no-curve) and write DIR with its page."""
    from interp.circuits import files
    from interp.circuits.nodes import node_scores
    from interp.cli.inputs import load_model
    from interp.files.atomic import exclusive
    from interp.report.build import build_report
    from interp.trace.traceset import TraceSet

    out = args.out or args.clean_dir / "circuits" / f"nodes-{args.method}"
    files.check_output(out, "nodes")
    with exclusive(out):
        first = clean[0] if isinstance(clean, TraceSet) else clean
        model = load_model(args, first.model_name)
        shown = sys.stderr.isatty()
        scores = node_scores(
            model,
            clean,
            corrupted,
            metric=metric,
            method=args.method,
            steps=args.steps,
            progress=shown,
        )
        curve = None if args.no_curve else scores.curve(seeds=args.seeds, progress=shown)
        files.save_nodes(scores, out, curve)
        page = None if curve is None else build_report(out)  # the page draws the curve
    args.kept.append(f"the node circuit in {out}")
    print_circuit(scores, f"{len(scores.nodes):,} nodes", 12, curve, out, page)
    return 0
