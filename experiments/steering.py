"""Steering SmolLM2 towards weddings (Turner et al.'s activation addition, with a difference of
means over prompt sets), measured against random directions and against simply asking.

The vector: the residual stream entering each layer, averaged over each prompt's tokens, over
24 sentences about weddings minus 24 about other things (experiments/data/weddings/); each
layer's held-out separability is shown, and layer 11 (the most separable of the middle
layers) is steered. Scales are in units of the stream's typical norm at that layer. Each of
the prompts is sampled with the same seeds unsteered, steered at each scale, along random
directions of the vector's norm, and with "Write about weddings." prepended; the concept is
the rate of wedding words in the text, the damage the KL from the unsteered model.

Writes DIR (default reports/steering/): vector.safetensors, steering.json, index.html.

    python experiments/steering.py [--layer 11] [--scales 0.1,0.2,0.3,0.45] [--samples 16]
        [--controls 4] [--prompts N] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fail, load_model, parser, quiet  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "weddings"
INSTRUCTION = "Write about weddings."


def lines(name: str) -> list[str]:
    text = (DATA / name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--layer", type=int, default=11, help="the block steered (default 11)")
    p.add_argument("--scales", default="0.1,0.2,0.3,0.45",
                   help="scales, in units of the stream's typical norm")  # fmt: skip
    p.add_argument("--samples", type=int, default=16, help="seeds per prompt (default 16)")
    p.add_argument("--controls", type=int, default=4, help="random directions (default 4)")
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--prompts", type=int, default=None, help="use the first N prompts")
    p.add_argument("--concept", choices=("words", "mass"), default="words",
                   help="the concept measure (default: the rate of wedding words)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("reports/steering"))
    args = p.parse_args(argv)
    quiet()
    prompts = lines("prompts.txt")
    if args.prompts is not None and not 1 <= args.prompts <= len(prompts):
        return fail(f"--prompts must be between 1 and {len(prompts)}")
    try:
        scales = [float(s) for s in args.scales.split(",")]
    except ValueError:
        return fail(f"--scales must be numbers separated by commas, got {args.scales!r}")

    import interp
    from interp.errors import InterpError
    from interp.report import check_steering_dir, write_steering

    try:
        check_steering_dir(args.out)
        model = load_model(args.model or interp.DEFAULT_MODEL, device=args.device)
        every = interp.steering_vector(
            model, lines("positive.txt"), lines("negative.txt"), position="mean"
        )
        vector = every.at(args.layer)
        print(f"layer {args.layer}: separability {vector.separability.text(2)}, norm "
              f"{vector.norm:.1f}, the stream's typical norm {vector.resid_norm:.1f}",
              file=sys.stderr)  # fmt: skip
        result = interp.steer_eval(
            model, prompts[: args.prompts], vector, scales=scales, unit="resid",
            samples=args.samples, controls=args.controls, max_new_tokens=args.max_new_tokens,
            concept_words=lines("concept_words.txt"), concept=args.concept,
            prompt_baseline=INSTRUCTION, seed=args.seed,
            separability_by_layer=every.separability, progress=sys.stderr.isatty(),
        )  # fmt: skip
        page = write_steering(args.out, result, vector, args.formats)
    except InterpError as exc:
        return fail(exc)
    print(result.sentence())
    print(f"file://{page.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
