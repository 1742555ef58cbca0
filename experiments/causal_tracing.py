"""Causal tracing of factual recall (Meng et al. 2022, ROME) on the embedded model: where does
the model keep "The Eiffel Tower is located in the city of" -> " Paris"?

Facts come from experiments/data/facts.jsonl (a prompt, its subject, the answer); each is
checked first, and the facts the model gets wrong (the answer is not its top token) are
dropped and counted. Corruption: seeded Gaussian noise on the subject's token embeddings (three
standard deviations of the embeddings). Restorations, each exact: the clean residual stream at
every (layer, position), and the clean attention and MLP outputs over windows of 10 layers.
Measured by the probability of the answer at the last prompt position; positions are grouped
by ROME's categories (`interp.span(subject).rome()`: first, middle and last subject token,
first after the subject, further tokens up to the last, last token; tokens before the subject
in none), averaged over a category's positions and then over the facts that have it.

Writes DIR (default reports/causal_tracing/): index.html, figures/, summary.json (n_facts,
n_dropped, clean_prob_mean, corrupted_prob_mean, grids: site -> category -> mean restored
probability by layer), and each fact's own pages under DIR/facts/.

    python experiments/causal_tracing.py [--facts N] [--window 10] [--seed 0] [--out DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fail, load_model, parser, quiet  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "facts.jsonl"
SITES = {"resid": "resid", "attn": "attn-out", "mlp": "mlp-out"}


def trace_fact(model, fact: dict, window: int, seed: int) -> dict | None:
    """One fact's restorations, or None where the model gets it wrong (no I/O)."""
    import interp
    from interp import metrics

    answer = metrics.single_token(model, fact["answer"], "the answer")
    clean = interp.generate(model, fact["prompt"], continuation=[answer])
    if int(clean.token_ranks[0]) != 1:
        return None
    subject = interp.span(fact["subject"])
    noise = interp.edit("hook_embed", "noise", positions=subject, seed=seed)
    prob = metrics.prob(answer)
    resid = interp.patch(model, clean, noise, sites=["resid"], metric=prob)
    windows = interp.patch(model, clean, noise, sites=["attn-out", "mlp-out"], metric=prob,
                           window=window)  # fmt: skip
    n = clean.prompt_len
    restored = {  # [layer, prompt position]: the restored probability
        key: (result[site].effect[:, :n] + result.corrupted_metric)
        for key, site, result in (("resid", "resid", resid), ("attn", "attn-out", windows),
                                  ("mlp", "mlp-out", windows))
    }  # fmt: skip
    return {
        "fact": fact, "clean": clean, "resid": resid, "windows": windows, "restored": restored,
        "categories": {name: clean.positions(g) for name, g in subject.rome().items()},
        "clean_prob": resid.clean_metric,
        "corrupted_prob": resid.corrupted_metric,
    }  # fmt: skip


def grids(traced: list[dict], n_layers: int) -> dict:
    """Site -> category -> the mean over facts (that have the category) of the mean restored
    probability over the category's positions, by layer."""
    out: dict = {}
    for key in SITES:
        out[key] = {}
        for cat in traced[0]["categories"]:  # ROME's order
            per_fact = []
            for t in traced:
                cols = t["categories"][cat]
                if cols:
                    per_fact.append(t["restored"][key][:, cols].mean(1))
            if per_fact:
                import torch

                mean = torch.stack(per_fact).mean(0)
                out[key][cat] = [round(float(v), 6) for v in mean]
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--facts", type=int, default=None, help="use the first N facts (default all)")
    p.add_argument("--window", type=int, default=10, help="layers per attention/MLP window")
    p.add_argument("--out", type=Path, default=Path("reports/causal_tracing"))
    args = p.parse_args(argv)
    quiet()
    facts = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line]
    if args.facts is not None and not 1 <= args.facts <= len(facts):
        return fail(f"--facts must be between 1 and {len(facts)}")
    if args.window < 1:
        return fail("--window must be >= 1")
    facts = facts[: args.facts]

    import interp
    from interp.errors import InterpError
    from interp.report import check_experiment_dir

    try:
        check_experiment_dir(args.out)
        model = load_model(args.model or interp.DEFAULT_MODEL, device=args.device)
        traced, dropped = [], []
        for i, fact in enumerate(facts):
            one = trace_fact(model, fact, args.window, args.seed)
            (dropped if one is None else traced).append(fact if one is None else one)
            print(f"[{i + 1}/{len(facts)}] {fact['prompt']}{fact['answer']}: "
                  + ("dropped (the model gets it wrong)" if one is None else
                     f"clean {one['clean_prob']:.3f}, corrupted {one['corrupted_prob']:.3f}"),
                  file=sys.stderr)  # fmt: skip
        if not traced:
            return fail("the model gets none of the facts right: nothing to trace")
        return write(args, model, traced, dropped)
    except InterpError as exc:
        return fail(exc)


def write(args, model, traced: list[dict], dropped: list[dict]) -> int:
    import numpy as np

    from interp.report import Section, figures, write_experiment

    grid = grids(traced, model.n_layers)
    n = len(traced)
    summary = {
        "n_facts": n,
        "n_dropped": len(dropped),
        "clean_prob_mean": round(sum(t["clean_prob"] for t in traced) / n, 6),
        "corrupted_prob_mean": round(sum(t["corrupted_prob"] for t in traced) / n, 6),
        "window": args.window,
        "grids": grid,
        "facts": [{**t["fact"], "clean_prob": round(t["clean_prob"], 6),
                   "corrupted_prob": round(t["corrupted_prob"], 6)} for t in traced],
        "dropped": dropped,
    }  # fmt: skip
    layers = [f"L{i}" for i in range(model.n_layers)]
    figs, sections = {}, []
    what = {"resid": "the residual stream at one (layer, position)",
            "attn": f"the attention outputs of {args.window} layers around each layer",
            "mlp": f"the MLP outputs of {args.window} layers around each layer"}  # fmt: skip
    for key in SITES:
        cats = list(grid[key])
        values = np.array([grid[key][c] for c in cats])
        name = f"{key}.png"
        figs[name] = figures.position_heatmap(
            values,
            cats,
            layers,
            f"restoring {what[key]}: probability of the answer",
            "restored probability",
            xlabel="layer",
        )
        sections.append(Section(f"Restoring {what[key]}", [
            f"Mean over {n} facts of the answer's probability when {what[key]} is restored to "
            f"its clean value in the corrupted run (clean {summary['clean_prob_mean']:.3f}, "
            f"corrupted {summary['corrupted_prob_mean']:.3f}), by ROME's position categories."
        ], images=[name]))  # fmt: skip
    sections.append(Section("Facts", [
        f"{n} facts traced, {len(dropped)} dropped because the model's top token is not the "
        "answer. Each fact's own pages (every layer and position) are under facts/."
    ], table=[["prompt", "answer", "subject", "clean", "corrupted", "pages"]] + [
        [t["fact"]["prompt"], t["fact"]["answer"], t["fact"]["subject"], f"{t['clean_prob']:.3f}",
         f"{t['corrupted_prob']:.3f}", f"facts/{i}-resid, facts/{i}-windows"]
        for i, t in enumerate(traced)
    ] + [[d["prompt"], d["answer"], d["subject"], "dropped", "", ""]
         for d in dropped]))  # fmt: skip
    page = write_experiment(
        args.out, f"Causal tracing of factual recall in {model.name}",
        "Corrupt the subject with noise; restore one state at a time; see where the fact "
        "comes back.", sections, figs, summary, formats=args.formats,
    )  # fmt: skip
    from interp.report import build_report

    for i, t in enumerate(traced):  # each fact's own pages
        for kind in ("resid", "windows"):
            directory = t[kind].save(args.out / "facts" / f"{i}-{kind}")
            build_report(directory, formats=args.formats)
    print(f"{n} facts ({len(dropped)} dropped): clean {summary['clean_prob_mean']:.3f}, "
          f"corrupted {summary['corrupted_prob_mean']:.3f}")  # fmt: skip
    for key in SITES:  # where each site restores the most
        value, cat, layer = max((v, c, i) for c, vs in grid[key].items() for i, v in enumerate(vs))
        print(f"  {key}: best restoration {value:.3f} at the {cat}, layer {layer}")
    print(f"report written to {page.resolve().as_uri()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
