"""IOI's circuit over the whole graph (EAP and EAP-IG, MIB's faithfulness curve) on the embedded
model: how faithful the top edges are as the circuit grows, how well the estimates agree with
each edge's exact effect, and whether the heads the IOI study found sit in the circuit.

Pairs: IOI prompts from experiments/data/ioi.json (one-token names) and their ABC corruption
(three other names, the same template, so the same length); the metric is the logit
difference IO - S at the last prompt position. For each method: every edge's score in both
conventions (kv "group", the model's own graph, and kv "per-head", MIB's, a key and value
input per query head), MIB's curve with a random control, CPR and CMD. Then the exact effect of
the top EAP-IG edges and of random edges (path patching of each edge alone), with the
Spearman correlation and the sign agreement of estimate and exact.

Writes reports/ioi_circuit/: index.html, figures/, summary.json, and one circuit directory per
method and convention (eap/, eap-ig/, eap-per-head/, eap-ig-per-head/: circuit.json,
curve.json, their own page; importances.json, MIB's graph JSON, in the per-head ones).

    python experiments/ioi_circuit.py [--pairs 100] [--steps 5] [--exact-top 200]
        [--exact-random 100] [--seeds 3] [--no-sizes]
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "ioi.json"
STUDY_HEADS = ("L23H3", "L23H0", "L29H1")  # experiments/ioi.py's name movers on SmolLM2


def rows(n: int, seed: int = 0) -> list[dict]:
    """n IOI rows: a clean prompt, its ABC corruption, the answer (IO) and distractor (S);
    templates in turn, names drawn (seeded) five distinct a row."""
    data = json.loads(DATA.read_text(encoding="utf-8"))
    names, rng = data["names"], random.Random(seed)
    out = []
    while len(out) < n:
        template = data["templates"][len(out) % len(data["templates"])]
        io, s, x, y, z = rng.sample(names, 5)
        out.append(
            {
                "clean": template.format(A=io, B=s, C=s),
                "abc": template.format(A=x, B=y, C=z),
                "answer": f" {io}",
                "distractor": f" {s}",
            }
        )
    return out


def pairs(model, chosen: list[dict]) -> tuple:
    """The clean and ABC sets, each row forced to its answer, the clean rows carrying it;
    tokens only (no activations recorded: circuit discovery runs its own forwards)."""
    import interp

    answers = [r["answer"] for r in chosen]
    sets = [
        interp.generate(
            model, [r[k] for r in chosen], continuation=answers, max_new_tokens=1, hooks=[]
        )
        for k in ("clean", "abc")
    ]
    for row, trace in zip(chosen, sets[0], strict=True):
        trace.meta = {"answer": row["answer"], "distractor": row["distractor"]}
    return sets[0], sets[1]


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    import torch

    def ranks(x: list[float]) -> torch.Tensor:
        t = torch.tensor(x, dtype=torch.float64)
        order = t.argsort()
        r = torch.empty_like(t)
        r[order] = torch.arange(len(x), dtype=torch.float64)
        for value in t.unique():  # ties share their mean rank
            same = t == value
            r[same] = r[same].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import fail, load_model, parser, quiet  # (rows and pairs import without it)

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=100, help="IOI pairs (default 100)")
    p.add_argument("--steps", type=int, default=5, help="EAP-IG's steps (default 5)")
    p.add_argument("--exact-top", type=int, default=200, help="top EAP-IG edges checked exactly")
    p.add_argument("--exact-random", type=int, default=100, help="random edges checked exactly")
    p.add_argument("--seeds", type=int, default=3, help="the curve's random controls")
    p.add_argument("--no-sizes", action="store_true", help="MIB's fractions only")
    p.add_argument("--out", type=Path, default=Path("reports/ioi_circuit"))
    args = p.parse_args(argv)
    quiet()
    if args.pairs < 1 or args.steps < 1 or args.seeds < 1:
        return fail("--pairs, --steps and --seeds must be at least 1")
    if args.exact_top < 0 or args.exact_random < 0:
        return fail("--exact-top and --exact-random must be at least 0")

    import interp
    from interp.errors import InterpError
    from interp.report import check_experiment_dir

    try:
        check_experiment_dir(args.out)
        model = load_model(args.model or interp.DEFAULT_MODEL, device=args.device)
        clean, abc = pairs(model, rows(args.pairs, args.seed))
        results = study(model, clean, abc, args)
    except InterpError as exc:
        return fail(exc)
    return write(args, model, results)


def study(model, clean, abc, args) -> dict:
    """Every measurement of the experiment (no I/O)."""
    import interp
    from interp.circuits import SIZES, prune, top_n

    progress = sys.stderr.isatty()
    diff = interp.metrics.logit_diff()  # IO - S, each clean row's answer and distractor
    out: dict = {"scores": {}, "curves": {}}
    for kv in ("group", "per-head"):
        for method in ("eap", "eap-ig"):
            key = method if kv == "group" else f"{method}-per-head"
            options = {"method": method, "steps": args.steps, "kv": kv, "progress": progress}
            scores = interp.circuit(model, clean, abc, metric=diff, **options)
            out["scores"][key] = scores
            sizes = () if args.no_sizes else SIZES
            out["curves"][key] = scores.curve(seeds=args.seeds, sizes=sizes, progress=progress)
    ig = out["scores"]["eap-ig"]
    graph = ig.graph
    top = [edge for edge, _ in ig.top(args.exact_top)]
    real = graph.mask.nonzero().tolist()
    picked = random.Random(args.seed).sample(real, min(args.exact_random, len(real)))
    randoms = [graph.edge(w, r) for w, r in picked if graph.edge(w, r) not in set(top)]
    exact = ig.exact(top + randoms)
    estimate = {e: float(ig.scores[graph.index(e)]) for e in exact}
    out["exact"] = {"top": top, "random": randoms, "exact": exact, "estimate": estimate}
    # the circuit the heads are looked for in: the top edges by |score|, pruned
    kept = prune(graph, top_n(graph, ig.scores, args.exact_top, "abs"))
    nodes = {graph.writers[w] for w in kept.any(1).nonzero()[:, 0].tolist()}
    node_scores = ig.node_scores()
    order = node_scores.abs().argsort(descending=True).tolist()
    out["heads"] = {
        name: {
            "in_circuit": interp.site(name) in nodes,
            "node_score": float(node_scores[graph.writers.index(interp.site(name))]),
            "rank": order.index(graph.writers.index(interp.site(name))) + 1,
        }
        for name in STUDY_HEADS
        if interp.site(name) in graph.writers
    }
    out["circuit_edges"] = int(kept.sum())
    out["agreement"] = {
        group: _agreement([estimate[e] for e in edges], [exact[e] for e in edges])
        for group, edges in (("top", top), ("random", randoms), ("all", top + randoms))
        if len(edges) >= 2
    }
    return out


def _agreement(estimate: list[float], exact: list[float]) -> dict:
    signs = [(a > 0) == (b > 0) for a, b in zip(estimate, exact, strict=True)]
    return {
        "edges": len(exact),
        "spearman": spearman(estimate, exact),
        "sign_agreement": sum(signs) / len(signs),
    }


def write(args, model, results: dict) -> int:
    """The page, summary.json and each method's circuit directory, all written or none."""
    summary: dict = {"model": model.name, "pairs": args.pairs, "steps": args.steps}
    sections: list = []
    figures: dict = {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{args.out.name}.", dir=args.out.parent))
    try:
        return _write(args, model, results, summary, sections, figures, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _write(args, model, results, summary, sections, figures, scratch: Path) -> int:
    from interp.circuits import save
    from interp.report import Section, build_circuit_report, write_experiment

    for method, scores in results["scores"].items():
        curve = results["curves"][method]
        save(scores, scratch / method, curve)
        s_, a_ = curve.signed, curve.absolute
        rows: list[list[object]] = [["fraction", "edges", "f (signed)", "f (|score|)", "random"]]
        for i, fraction in enumerate(s_.fractions):
            rows.append(
                [
                    fraction,
                    s_.requested[i],
                    f"{s_.faithfulness[i]:.3f}",
                    f"{a_.faithfulness[i]:.3f}",
                    f"{s_.random[i]:.3f}",
                ]
            )
        sections.append(
            Section(
                f"{method}: faithfulness (CPR {curve.cpr:.3f}, CMD {curve.cmd:.3f})",
                [
                    f"Clean metric {scores.clean_metric:.3f}, corrupted "
                    f"{scores.corrupted_metric:.3f}; the curve's figure and the circuit's "
                    f"drawing are on the page in {method}/."
                ],
                rows,
            )
        )
        summary[method] = {
            "cpr": curve.cpr,
            "cmd": curve.cmd,
            "metric": scores.metric,
            "clean_metric": scores.clean_metric,
            "corrupted_metric": scores.corrupted_metric,
            "edges": scores.graph.n_edges,
            "top": [[str(e), v] for e, v in scores.top(10)],
        }
    summary["agreement"] = results["agreement"]
    summary["study_heads"] = results["heads"]
    summary["circuit_edges"] = results["circuit_edges"]
    rows: list[list[object]] = [["edges", "n", "Spearman", "sign agreement"]]
    for group, a in results["agreement"].items():
        rows.append([group, a["edges"], f"{a['spearman']:.3f}", f"{a['sign_agreement']:.2f}"])
    sections.append(
        Section(
            "Estimates against exact effects",
            [
                "Each edge's exact effect is the metric with that edge alone carrying the "
                "corrupted run's value, less the clean metric (path patching of its sender "
                "into its receiver); the estimate is its EAP-IG score. Top: the top edges by "
                "|score|; random: edges drawn uniformly."
            ],
            rows,
        )
    )
    heads: list[list[object]] = [["head", "in the circuit", "node score", "rank of |score|"]]
    for name, h in results["heads"].items():
        heads.append(
            [name, "yes" if h["in_circuit"] else "no", f"{h['node_score']:+.4f}", h["rank"]]
        )
    sections.append(
        Section(
            "The IOI study's heads",
            [
                f"Whether the heads experiments/ioi.py found sit among the nodes of the top "
                f"{args.exact_top} EAP-IG edges, pruned ({results['circuit_edges']} kept); a "
                "node's score is the sum of its outgoing edges'."
            ],
            heads,
        )
    )
    intro = (
        f"{model.name}; {args.pairs} IOI pairs with the ABC corruption; logit difference IO - S. "
        "Each method in both graphs: kv group (the model's own, a key and value input per KV "
        "group) and kv per-head (MIB's, one per query head)."
    )
    page = write_experiment(
        args.out, "interp: the IOI circuit", intro, sections, figures, summary, args.formats
    )
    for method in results["scores"]:  # each circuit's own directory and page, beside the report
        (scratch / method).rename(args.out / method)
        build_circuit_report(args.out / method)
    print(json.dumps({k: summary[k] for k in ("agreement", "study_heads")}, indent=1))
    for method in results["scores"]:
        print(f"{method}: CPR {summary[method]['cpr']:.3f}  CMD {summary[method]['cmd']:.3f}")
    print(f"report: {page.resolve().as_uri()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
