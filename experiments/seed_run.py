"""The seed's run: "earth revolve around", 100 sampled tokens, the full report.

GPT-2 small (the seed notebook's model) where its weights are reachable, the embedded
SmolLM2 otherwise. Writes reports/seed_run/: the trace, index.html, figures/, summary.json;
with the model's cached dictionaries (`make features`), their features too.

    python experiments/seed_run.py [--model gpt2] [--seed 0] [--max-new-tokens 100] [--no-sweep]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fail, load_model, parser, quiet  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--prompt", default="earth revolve around")
    p.add_argument("--max-new-tokens", type=int, default=100)
    p.add_argument("--no-sweep", action="store_true", help="skip the ablation sweep")
    p.add_argument("--out", type=Path, default=Path("reports/seed_run"))
    args = p.parse_args(argv)
    quiet()

    import interp
    from interp.cli.workflow import analyze_into, sweep_into
    from interp.errors import InterpError, ModelUnavailableError
    from interp.features import cached_dictionaries, load_dictionary, read_features
    from interp.files.store import check_output_dir
    from interp.report import build_report

    try:
        check_output_dir(args.out)
        if args.model is None:
            try:
                model = load_model("gpt2", device=args.device)
            except ModelUnavailableError:
                print("GPT-2 small is not reachable here: using the embedded smollm2-135m")
                model = load_model(interp.DEFAULT_MODEL, device=args.device)
        else:
            model = load_model(args.model, device=args.device)
        trace = interp.generate(
            model,
            args.prompt,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
            progress=sys.stderr.isatty(),
        )
        trace.save(args.out)
        print(f"{trace.prompt}\u2502{trace.continuation}")
        analyze_into(model, trace, args.out)
        if not args.no_sweep:
            sweep_into(model, trace, args.out, progress=sys.stderr.isatty())
        for entry in cached_dictionaries(
            model.name
        ):  # `make features`'s dictionaries, where trained
            d = load_dictionary(entry["path"], model)
            read_features(model, trace, d).save(args.out)
            print(f"features of {d.hook} added ({entry['path']})")
        page = build_report(
            args.out, title=f"Seed run: {args.prompt!r} on {model.name}", formats=args.formats
        )
    except InterpError as exc:
        return fail(exc)
    print(f"report written to {page.resolve().as_uri()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
