"""Heads and text: sweep a prompt's continuation, ablate the heads that matter most, and
regenerate with the same seed to see how the text changes.

Writes reports/heads_and_text/: the trace, its analyses, the sweep, one ablation per
ablated set (ablations/), index.html with baseline and ablated texts side by side.

    python experiments/heads_and_text.py [--prompt TEXT] [--model smollm2-135m] [--seed 0]
                                         [--max-new-tokens 40] [--top 3] [--mode mean]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fail, load_model, parser, quiet  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--prompt", default="earth revolve around")
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--top", type=int, default=3, help="how many of the top heads to ablate")
    p.add_argument("--mode", choices=("mean", "zero", "resample"), default="mean")
    p.add_argument("--triage", action="store_true", help="triage sweep instead of exact")
    p.add_argument("--out", type=Path, default=Path("reports/heads_and_text"))
    args = p.parse_args(argv)
    quiet()
    if args.top < 1:
        return fail("--top must be >= 1")

    import interp
    from interp.cli.workflow import ablate_into, analyze_into, sweep_into
    from interp.errors import InterpError
    from interp.files.store import check_output_dir
    from interp.report import build_report

    try:
        check_output_dir(args.out)
        model = load_model(args.model or interp.DEFAULT_MODEL, device=args.device)
        trace = interp.generate(
            model, args.prompt, max_new_tokens=args.max_new_tokens, seed=args.seed
        )
        trace.save(args.out)
        analyze_into(model, trace, args.out)
        swept = sweep_into(
            model, trace, args.out, args.mode, method="triage" if args.triage else "exact"
        )
        # the heads whose ablation lowers the continuation's log-prob most
        heads = [h for h, v in swept.top_heads(len(swept.verified_heads)) if v < 0][: args.top]
        reports = []
        for head in heads:  # one at a time, then all together
            reports.append(ablate_into(model, trace, args.out, [head], args.mode)[0])
        if len(heads) > 1:
            reports.append(ablate_into(model, trace, args.out, heads, args.mode)[0])
        page = build_report(
            args.out, title=f"Heads and text: {args.prompt!r} on {model.name}", formats=args.formats
        )
    except InterpError as exc:
        return fail(exc)
    print(f"baseline: {trace.prompt}\u2502{trace.continuation}")
    for r in reports:
        s = r.summary()
        div = s["first_divergence"]
        print(
            f"{r.ablation.label}: log-prob {s['delta_logprob_total']:+.2f}, "
            + ("text unchanged" if div is None else f"diverges at token {div}")
        )
        print(f"   ablated: {trace.prompt}\u2502{s['ablated_text']}")
    print(f"report written to {page.resolve().as_uri()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
