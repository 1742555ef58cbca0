"""`interp circuit`: every edge's attribution score between paired clean and corrupted runs,
and the faithfulness curve of the top edges, written to a circuit directory; with `--nodes`,
every node's (`interp.cli.circuit_nodes`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from interp.cli.circuit_nodes import check_node_options, cmd_nodes
from interp.cli.corrupting import add_corruption_options, corruption
from interp.cli.inputs import add_executor_options, executor_of, integer
from interp.cli.printing import print_circuit


def add_circuit_parser(sub: Any) -> None:
    p = sub.add_parser(
        "circuit",
        help="circuit discovery: score every edge (EAP, EAP-IG) and the faithfulness curve",
        description=(
            "Score every edge of the model's graph between CLEAN_DIR and its corrupted side "
            "(CORRUPTED_DIR, --corrupt or --noise), then evaluate the top edges exactly at "
            "MIB's fractions of the graph (both rankings, a random control, CPR and CMD). "
            "Writes DIR (default CLEAN_DIR/circuits/<method>-<kv>): circuit.json (every "
            "edge's score, SENDER->RECEIVER) and curve.json. With --nodes, every node instead "
            "(the embedding, each head, each MLP; for models whose edges are not defined, "
            "Gemma 3): DIR (default CLEAN_DIR/circuits/nodes-<method>) holds nodes.json and "
            "curve.json at fractions of the nodes."
        ),
    )
    p.add_argument("clean_dir", type=Path, metavar="CLEAN_DIR", help="the clean trace or set")
    p.add_argument("corrupted_dir", type=Path, nargs="?", default=None, metavar="CORRUPTED_DIR")
    add_corruption_options(p)
    p.add_argument(
        "--method",
        choices=("eap", "eap-ig", "exact"),
        default="eap-ig",
        help="eap-ig (default), eap, or exact: each edge patched alone, one forward a batch of "
        "pairs for each edge (small graphs only)",
    )
    p.add_argument(
        "--nodes",
        action="store_true",
        help="score each node (embed, L5H1, L5.mlp) from its own output instead of each edge: "
        "circuits on models whose heads' writes are not additive (Gemma 3); writes nodes.json",
    )
    p.add_argument("--steps", type=integer, default=5, metavar="N", help="EAP-IG's steps")
    p.add_argument("--kv", choices=("group", "per-head"), default="group")
    p.add_argument(
        "--ablation",
        choices=("patch", "mean", "mean-positional"),
        default="patch",
        help="an edge's corrupted value: the corrupted run's (patch, default) or its writer's "
        "mean over CORRUPTED_DIR's rows and positions (mean: CORRUPTED_DIR is a reference set), "
        "or over its rows at each position (mean-positional: every run of one length)",
    )
    p.add_argument(
        "--metric",
        default="logit-diff",
        metavar="SPEC",
        help='as for patch; default logit-diff (each clean row\'s "answer" and "distractor")',
    )
    p.add_argument("--no-curve", action="store_true", help="scores only, no faithfulness curve")
    p.add_argument(
        "--evaluate",
        type=Path,
        default=None,
        metavar="EDGES_FILE",
        help="evaluate this circuit exactly instead of scoring (one SENDER->RECEIVER a line, a "
        "JSON list, or MIB's graph JSON's in_graph edges); writes evaluation.json",
    )
    p.add_argument("--seeds", type=integer, default=3, metavar="N", help="random controls")
    p.add_argument(
        "--sizes",
        type=sizes,
        default=None,
        metavar="N,N,...",
        help="also evaluate the top N edges at these sizes, for a log-x view (default 10, 20, "
        "50, ... 10000; 'none' for MIB's fractions alone)",
    )
    p.add_argument("--out", type=Path, default=None, metavar="DIR")
    p.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, mps")
    add_executor_options(p)
    p.set_defaults(func=cmd_circuit)


def sizes(text: str) -> tuple[int, ...]:
    """--sizes: increasing whole numbers of edges, or none."""
    if text.strip().lower() == "none":
        return ()
    try:
        out = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected whole numbers like 10,100,1000, got {text!r}"
        ) from None
    if any(n < 1 for n in out) or list(out) != sorted(set(out)):
        raise argparse.ArgumentTypeError(f"expected increasing sizes of at least 1, got {text!r}")
    return out


def cmd_circuit(args: argparse.Namespace) -> int:
    from interp.circuits import files
    from interp.circuits.curve import SIZES
    from interp.circuits.scores import circuit
    from interp.cli.inputs import load_model
    from interp.errors import InvalidSettingError
    from interp.files.atomic import exclusive
    from interp.interventions import metrics
    from interp.report.build import build_report
    from interp.trace.traceset import TraceSet, load_recorded

    metric = metrics.parse(args.metric)
    if args.steps < 1 or args.seeds < 1:
        raise InvalidSettingError("--steps and --seeds must be at least 1")
    if args.nodes:
        check_node_options(args)
    edits = corruption(args)
    executor = executor_of(args)
    if executor is not None and (args.evaluate is not None or args.method == "exact"):
        raise InvalidSettingError("--ray spreads EAP and EAP-IG's gradients; drop it here")
    if args.ablation != "patch" and (args.corrupted_dir is None or edits is not None):
        raise InvalidSettingError(
            f"--ablation {args.ablation} takes a reference set as CORRUPTED_DIR"
        )
    # tokens only: circuit discovery runs its own forwards and reads no recorded activations
    clean = load_recorded(args.clean_dir, activations=False)
    corrupted = (
        edits
        if args.corrupted_dir is None
        else load_recorded(args.corrupted_dir, activations=False)
    )
    if args.nodes:
        return cmd_nodes(args, clean, corrupted, metric)
    if args.evaluate is not None:
        return _evaluate(args, clean, corrupted, metric)
    out = args.out or args.clean_dir / "circuits" / f"{args.method}-{args.kv}"
    files.check_output(out)
    with exclusive(out):
        first = clean[0] if isinstance(clean, TraceSet) else clean
        model = load_model(args, first.model_name)
        _refuse_non_additive(model)
        shown = sys.stderr.isatty()
        scores = circuit(
            model,
            clean,
            corrupted,
            metric=metric,
            method=args.method,
            steps=args.steps,
            kv=args.kv,
            progress=shown,
            ablation=args.ablation,
            executor=executor,
        )
        curve = None
        if not args.no_curve:
            sizes = SIZES if args.sizes is None else args.sizes
            curve = scores.curve(seeds=args.seeds, sizes=sizes, progress=shown)
        files.save(scores, out, curve)
        page = None if curve is None else build_report(out)  # the page draws the curve
    args.kept.append(f"the circuit in {out}")
    size = f"{scores.graph.n_edges:,} edges ({scores.graph.kv})"
    print_circuit(scores, size, 28, curve, out, page)
    return 0


def _refuse_non_additive(model: Any) -> None:
    """Edges are not defined where a head's write is not additive: say that --nodes is."""
    from interp.errors import InvalidSettingError
    from interp.models.surgery import head_write_obstruction

    obstruction = head_write_obstruction(model, range(model.n_layers))
    if obstruction is not None:
        raise InvalidSettingError(
            f"{model.name}'s edges are not defined: a head's write into the residual stream is "
            f"not z @ W_O ({obstruction}); score its nodes instead with --nodes"
        )


def _evaluate(args: argparse.Namespace, clean: Any, corrupted: Any, metric: Any) -> int:
    """--evaluate: a given circuit's metric and faithfulness, exactly."""
    from interp.circuits import files
    from interp.circuits.evaluate import evaluate_circuit
    from interp.circuits.pairs import graph_of
    from interp.cli.inputs import load_model
    from interp.files.atomic import exclusive
    from interp.trace.traceset import TraceSet

    edges = files.read_edges(args.evaluate)
    out = args.out or args.clean_dir / "circuits" / "evaluated"
    files.check_output(out)
    first = clean[0] if isinstance(clean, TraceSet) else clean
    with exclusive(out):
        model = load_model(args, first.model_name)
        _refuse_non_additive(model)
        result = evaluate_circuit(
            model, clean, corrupted, edges, metric=metric, kv=args.kv, progress=sys.stderr.isatty()
        )
        files.save_evaluation(result, edges, out)
    args.kept.append(f"the evaluation in {out}")
    total = graph_of(model, args.kv).n_edges
    print(
        f"a circuit of {result.edges:,} of {total:,} edges over {len(result.per_row)} pair(s): "
        f"{result.mean:.4f} (full {result.full:.4f}, empty {result.empty:.4f}); "
        f"faithfulness {result.faithfulness:.3f}"
    )
    print(f"written to {out}")
    return 0
