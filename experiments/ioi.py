"""Indirect object identification (Wang et al. 2023) on the embedded model: which heads make it
finish "When Mary and John went to the store, John gave a drink to" with " Mary"?

Prompts come from experiments/data/ioi.json (name pairs x both orders x templates; every name
one token, checked). Corruptions: the ABC set (three other names) and the S2 swap (the IO
repeated instead of the subject). Measured by the logit difference IO - S at the last prompt
position: its baseline (mean and standard error), each head's direct logit attribution, head
patching in both directions, residual patching by position (per template), and path patching
of every sender into the logits and into the strongest name movers' queries. Candidate roles
are listed with their evidence, as hypotheses.

Writes reports/ioi/: index.html, figures/, summary.json (n_prompts, logit_diff_mean,
logit_diff_stderr, dla_top_heads, patching, path_patching, candidate_roles).

    python experiments/ioi.py [--model smollm2-135m] [--pairs 6] [--templates 2] [--seed 0]
"""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fail, load_model, parser, quiet  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "ioi.json"


def prompts(data: dict, n_pairs: int, n_templates: int, seed: int) -> list[dict]:
    """One row per (template, pair, order): the clean prompt, its two corruptions, the answer
    (IO) and the distractor (S). ABC names are drawn (seeded) from the names outside the pair."""
    names, rng = data["names"], random.Random(seed)
    pairs = [(names[2 * i], names[2 * i + 1]) for i in range(n_pairs)]
    rows = []
    for t, template in enumerate(data["templates"][:n_templates]):
        for a, b in pairs:
            for io, s in ((a, b), (b, a)):
                x, y, z = rng.sample([n for n in names if n not in (a, b)], 3)
                rows.append({
                    "template": t,
                    "clean": template.format(A=io, B=s, C=s),
                    "abc": template.format(A=x, B=y, C=z),
                    "s2_swap": template.format(A=io, B=s, C=io),
                    "answer": f" {io}",
                    "distractor": f" {s}",
                })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=6, help="name pairs, each in both orders (6)")
    p.add_argument("--templates", type=int, default=2, help="templates used (default 2)")
    p.add_argument("--receivers", type=int, default=3, help="name movers whose queries to read")
    p.add_argument("--out", type=Path, default=Path("reports/ioi"))
    args = p.parse_args(argv)
    quiet()
    data = json.loads(DATA.read_text(encoding="utf-8"))
    if not 1 <= args.pairs <= len(data["names"]) // 2 - 2:  # ABC needs three names outside
        return fail(f"--pairs must be between 1 and {len(data['names']) // 2 - 2}")
    if not 1 <= args.templates <= len(data["templates"]) or args.receivers < 1:
        return fail(f"--templates must be between 1 and {len(data['templates'])}, --receivers >= 1")

    import interp
    from interp import metrics
    from interp.errors import InterpError
    from interp.report import check_experiment_dir, write_experiment

    rows = prompts(data, args.pairs, args.templates, args.seed)
    try:
        check_experiment_dir(args.out)
        model = load_model(args.model or interp.DEFAULT_MODEL, device=args.device)
        for name in data["names"]:  # one token each, or the metric is not a logit difference
            metrics.single_token(model, f" {name}")
        answers = [r["answer"] for r in rows]
        sets = {
            kind: interp.generate(
                model, [r[kind] for r in rows], continuation=answers, max_new_tokens=1
            )
            for kind in ("clean", "abc", "s2_swap")
        }
        for row, trace in zip(rows, sets["clean"], strict=True):
            trace.meta = {"answer": row["answer"], "distractor": row["distractor"]}
        results = study(model, rows, sets, args.receivers)
    except InterpError as exc:
        return fail(exc)
    return write(args, model, rows, sets["clean"], results, write_experiment)


def study(model, rows: list[dict], sets: dict, n_receivers: int) -> dict:
    """Every measurement of the experiment (no I/O)."""
    import interp
    from interp import metrics
    from interp.errors import InvalidSettingError

    clean, abc, s2 = sets["clean"], sets["abc"], sets["s2_swap"]
    diff = metrics.logit_diff()
    dla = interp.direct_logit_attribution(
        model, clean, answer=[r["answer"] for r in rows], distractor=[r["distractor"] for r in rows]
    )
    baseline = [float(r.logits[0]) for r in dla.rows]
    heads_dla, heads_dla_se = dla.heads_mean()
    out = {"baseline": baseline, "dla": heads_dla, "dla_se": heads_dla_se}
    out["abc_denoise"] = interp.patch(model, clean, abc, sites=["heads"], metric=diff)
    out["abc_noise"] = interp.patch(
        model, clean, abc, sites=["heads"], metric=diff, direction="noise"
    )
    out["s2_denoise"] = interp.patch(model, clean, s2, sites=["heads"], metric=diff)
    out["resid"] = []
    for t in sorted({r["template"] for r in rows}):
        picked = [i for i, r in enumerate(rows) if r["template"] == t]
        pick = (
            interp.TraceSet([clean[i] for i in picked]),
            interp.TraceSet([abc[i] for i in picked]),
        )
        out["resid"].append(interp.patch(model, *pick, sites=["resid"], metric=diff))
    try:
        logits = interp.path_patch(model, clean, abc, receivers="logits", metric=diff)
    except InvalidSettingError as exc:  # heads that write through a norm (Gemma 3)
        out["path_refused"] = str(exc)
        return out
    movers = [h for h, v in logits["path"].top(4 * n_receivers) if v > 0][:n_receivers]
    receivers = ",".join(f"{h}.q" for h in movers)
    out["path_logits"] = logits
    for key, corrupted in (("path_queries", abc), ("path_queries_s2", s2)):
        out[key] = interp.path_patch(model, clean, corrupted, receivers=receivers, metric=diff)
    return out


def roles(model, results: dict) -> dict:
    """Candidate roles with their evidence: name movers (write the answer directly: large
    logit attribution and path effect into the logits) and heads upstream of them (large
    patching effect, little direct attribution)."""
    dla = results["dla"]
    scale = float(dla.abs().max()) or 1.0
    paths = "path_refused" not in results
    measures = {
        "patching_abc_denoise": results["abc_denoise"]["heads"],
        "patching_abc_noise": results["abc_noise"]["heads"],
        "patching_s2_swap_denoise": results["s2_denoise"]["heads"],
    }
    if paths:
        measures |= {
            "path_into_logits": results["path_logits"]["path"],
            "path_into_name_mover_queries_abc": results["path_queries"]["path"],
            "path_into_name_mover_queries_s2_swap": results["path_queries_s2"]["path"],
        }

    def evidence(head) -> dict:
        found = {"head": str(head), "dla": round(float(dla[head]), 3)}
        return found | {k: round(float(r.effect[head]), 3) for k, r in measures.items()}

    # the direct path into the logits where it can be patched, else the attribution alone
    ranked = measures["path_into_logits"].top(10) if paths else top_heads(dla, 10)
    movers = [h for h, v in ranked if v > 0 and float(dla[h]) > 0.25 * scale][:5]
    patched = [k for k in measures if k.startswith("patching")]
    strongest: dict = {}  # a head's largest |patching effect| in any setting
    for key in patched:
        for head, value in measures[key].top(15):
            strongest[head] = max(strongest.get(head, 0.0), abs(value))
    upstream = [
        h for h in sorted(strongest, key=lambda h: -strongest[h])
        if h not in movers and abs(float(dla[h])) < 0.25 * scale
    ][:6]  # fmt: skip
    return {
        "name_movers": [evidence(h) for h in movers],
        "upstream": [evidence(h) for h in upstream],
    }


def top_heads(values, k: int) -> list:
    """The k largest |values| of a [layer, head] tensor as (Head, value), signed, largest
    first."""
    import interp

    n_heads = values.shape[1]
    order = values.flatten().abs().argsort(descending=True, stable=True)[:k].tolist()
    return [(interp.Head(i // n_heads, i % n_heads), float(values.flatten()[i])) for i in order]


def write(args, model, rows, clean, results: dict, write_experiment) -> int:
    import numpy as np

    from interp.report import Section, figures, patching_sections

    base = results["baseline"]
    n = len(base)
    mean = sum(base) / n
    se = float(np.std(base, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    dla_top = top_heads(results["dla"], 10)
    candidates = roles(model, results)
    summary = {
        "model": model.name,
        "seed": args.seed,
        "n_prompts": n,
        "templates": args.templates,
        "logit_diff_mean": round(mean, 4),
        "logit_diff_stderr": None if math.isnan(se) else round(se, 4),
        "dla_top_heads": [[str(h), round(v, 4)] for h, v in dla_top],
        "patching": {
            "abc": {
                "denoise": results["abc_denoise"].summary(),
                "noise": results["abc_noise"].summary(),
            },
            "s2_swap": {"denoise": results["s2_denoise"].summary()},
            "resid_by_template": [r.summary() for r in results["resid"]],
        },  # fmt: skip
        "path_patching": {"refused": results["path_refused"]}
        if "path_refused" in results
        else {
            "logits": results["path_logits"].summary(),
            "queries": results["path_queries"].summary(),
            "queries_s2_swap": results["path_queries_s2"].summary(),
        },
        "candidate_roles": candidates,
    }
    figs = {
        "dla_heads.png": figures.head_heatmap(
            results["dla"].numpy(),
            "Direct logit attribution of the logit difference IO - S, mean over prompts",
            "logit difference",
            diverging=True,
        )
    }
    sections = [
        Section(
            "Prompts and baseline",
            [
                f"{n} prompts ({args.pairs} name pairs x both orders x {args.templates} "
                f"templates). Logit difference IO - S at the last prompt position: "
                f"{mean:.3f} ± {se:.3f} (mean ± standard error over prompts); "
                f"{sum(b > 0 for b in base)} of {n} prompts prefer the IO.",
                "Corruptions: ABC (three other names, so no name is repeated) and S2 swap "
                "(the IO repeated instead of the subject).",
            ],
            table=[["clean prompt", "answer", "ABC", "logit diff"]]
            + [
                [r["clean"], r["answer"], r["abc"], f"{b:.2f}"]
                for r, b in zip(rows, base, strict=True)
            ],
        ),
        Section(
            "Direct logit attribution",
            [
                "Each head's direct contribution to the logit difference (final norm's scale "
                "frozen); they sum, with the MLPs, embeddings and biases, to the logit "
                "difference itself."
            ],
            table=[["head", "mean attribution"]] + [[str(h), f"{v:+.3f}"] for h, v in dla_top],
            images=["dla_heads.png"],
        ),
    ]
    for key, heading in (("abc_denoise", "ABC: "), ("abc_noise", "ABC: "),
                         ("s2_denoise", "S2 swap: ")):  # fmt: skip
        more, site_figs = patching_sections(results[key], prefix=f"{key}_", heading=heading)
        sections += more
        figs |= site_figs
    for t, resid in enumerate(results["resid"]):
        more, site_figs = patching_sections(resid, prefix=f"t{t}_", heading=f"template {t}: ")
        sections += more
        figs |= site_figs
    if "path_refused" in results:
        sections.append(Section("Path patching", [f"Not run: {results['path_refused']}."]))
    for key, heading in (("path_logits", "ABC: "), ("path_queries", "ABC: "),
                         ("path_queries_s2", "S2 swap: ")):  # fmt: skip
        if key in results:
            more, site_figs = patching_sections(results[key], prefix=f"{key}_", heading=heading)
            sections += more
            figs |= site_figs
    role_table = [["candidate role", "head", "DLA", "patching ABC denoise", "ABC noise",
                   "S2 swap denoise"]]  # fmt: skip
    if "path_refused" not in results:
        role_table[0] += ["path into logits", "path into movers' queries: ABC", "S2 swap"]
    for role, found in (("name mover", candidates["name_movers"]),
                        ("upstream of the name movers", candidates["upstream"])):  # fmt: skip
        for c in found:
            role_table.append([role, *c.values()])
    sections.append(
        Section(
            "Candidate roles (hypotheses, not verdicts)",
            [
                "Name movers: heads whose direct path into the logits (where it can be "
                "patched; else their direct attribution) carries a large part of the "
                "denoising effect and whose direct attribution is large. Upstream heads: "
                "a large patching effect in some setting (ABC either way, or the S2 swap) but "
                "little direct attribution: they act through later heads (for example through "
                "the name movers' queries, as S-inhibition heads would). With grouped-query "
                "attention only the queries' paths can be patched on their own. Each needs its "
                "own test (attention to the names, ablation) before it is called one."
            ],
            table=role_table,
        )
    )
    page = write_experiment(
        args.out,
        f"Indirect object identification in {model.name}",
        "Logit difference, direct attribution, activation and path patching.",
        sections,
        figs,
        summary,
        formats=args.formats,
    )
    print(f"logit difference IO - S: {mean:.3f} ± {se:.3f} over {n} prompts")
    print("direct logit attribution: " + ", ".join(f"{h} {v:+.2f}" for h, v in dla_top[:5]))
    print("name mover candidates: " + ", ".join(c["head"] for c in candidates["name_movers"]))
    print("upstream candidates: " + ", ".join(c["head"] for c in candidates["upstream"]))
    print(f"report written to {page.resolve().as_uri()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
