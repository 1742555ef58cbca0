"""Induction heads: on repeated random tokens, find the heads that copy, knock them out, and
watch the loss on the repeated half rise (Olsson et al. 2022).

Writes reports/induction_heads/: index.html, figures/, summary.json with loss_first_copy,
loss_second_copy, top_induction_heads, loss_second_copy_ablated_top (the top five heads
ablated) and loss_second_copy_ablated_random (five random heads, several draws, drawn outside
the strongest induction and previous-token heads). Heads are ranked by their scores over the
probe's 16 sequences; the losses and ablations are measured on its first sequence.

    python experiments/induction_heads.py [--model smollm2-135m] [--seed 0] [--block-len 50]
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fail, load_model, parser, quiet  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--block-len", type=int, default=50, help="random tokens per copy (default 50)")
    p.add_argument("--top", type=int, default=5, help="induction heads to ablate (default 5)")
    p.add_argument("--draws", type=int, default=5, help="random-head draws (default 5)")
    p.add_argument("--mode", choices=("mean", "zero"), default="mean")
    p.add_argument("--out", type=Path, default=Path("reports/induction_heads"))
    args = p.parse_args(argv)
    quiet()
    if args.block_len < 2 or args.top < 1 or args.draws < 1:
        return fail("--block-len must be >= 2, --top and --draws >= 1")

    import numpy as np

    import interp
    from interp.errors import InterpError
    from interp.report import Section, check_experiment_dir, figures, write_experiment

    try:
        check_experiment_dir(args.out)
        model = load_model(args.model or interp.DEFAULT_MODEL, device=args.device)
        roles = interp.head_roles(model, block_len=args.block_len, seed=args.seed)
        tokens = roles.probe_tokens[0].tolist()
        # the probe's first sequence as a trace (teacher-forced), so that ablations score it
        # like any text (the role scores are means over all of the probe's sequences)
        probe = interp.generate(model, tokens[:1], continuation=tokens[1:])
        o, n = roles.offset, roles.block_len
        second = list(range(o + n, o + 2 * n - 1))  # token_logprobs[j] scores token j + 1

        def ablated_losses(heads):
            ablation = interp.ablation(model, probe, heads, args.mode)
            effect = interp.ablate(model, probe, ablation, regenerate_text=False).effect
            return -effect.ablated_logprobs

        top = roles.top("induction", args.top)
        top_heads = [h for h, _ in top]
        strong = {h for h, _ in roles.top("induction", 20) + roles.top("previous_token", 20)}
        pool = [
            (layer, head)
            for layer in range(model.n_layers)
            for head in range(model.n_heads)
            if f"L{layer}H{head}" not in strong
        ]
        rng = random.Random(args.seed)
        draws = [sorted(rng.sample(pool, args.top)) for _ in range(args.draws)]
        base = -probe.token_logprobs
        top_loss = ablated_losses(top_heads)
        random_losses = [ablated_losses(d) for d in draws]
    except InterpError as exc:
        return fail(exc)

    def mean_second(loss):
        return float(loss[second].mean())

    summary = {
        "model": model.name,
        "seed": args.seed,
        "block_len": n,
        "mode": args.mode,
        "probe_sequences": roles.sequences,  # role scores: means over these
        "loss_first_copy": round(float(roles.first_copy_losses[0]), 4),  # the first sequence
        "loss_second_copy": round(mean_second(base), 4),
        "top_induction_heads": [[str(h), round(s, 4)] for h, s in roles.top("induction", 10)],
        "ablated_top_heads": [str(h) for h, _ in top],
        "loss_second_copy_ablated_top": round(mean_second(top_loss), 4),
        "random_draws": [[f"L{a}H{b}" for a, b in d] for d in draws],
        "loss_second_copy_ablated_random": [round(mean_second(x), 4) for x in random_losses],
    }
    x = np.arange(1, len(base) + 1)
    curves = {"no ablation": base.numpy(), f"top {args.top} induction heads": top_loss.numpy()}
    curves["random heads (mean of draws)"] = np.mean([r.numpy() for r in random_losses], axis=0)
    figs = {
        "loss_by_position.png": figures.loss_curves(x, curves, o + n),
        "losses.png": figures.loss_bars(
            ["first copy", "second copy", f"second, top {args.top} ablated"]
            + [f"second, random #{i + 1}" for i in range(len(draws))],
            [
                summary["loss_first_copy"],
                summary["loss_second_copy"],
                summary["loss_second_copy_ablated_top"],
            ]
            + summary["loss_second_copy_ablated_random"],
            "Loss on the repeated random tokens",
            "mean next-token loss (nats)",
        ),
        "head_roles.png": figures.head_roles_figure(roles.scores.numpy(), list(roles.roles)),
    }
    sections = [
        Section(
            "What this shows",
            [
                f"{n} random tokens, then the same {n} again. A model with induction heads "
                "predicts the second copy from the first: the loss collapses on the repeat. "
                f"Ablating ({args.mode}) the {args.top} heads with the highest induction score "
                "brings it back; ablating random heads does not.",
                f"Loss on the first copy {summary['loss_first_copy']:.2f} nats, on the second "
                f"{summary['loss_second_copy']:.2f}; with the top heads ablated "
                f"{summary['loss_second_copy_ablated_top']:.2f}; with random heads "
                + ", ".join(f"{v:.2f}" for v in summary["loss_second_copy_ablated_random"])
                + ".",
            ],
            images=["losses.png", "loss_by_position.png"],
        ),
        Section(
            "Strongest induction heads",
            [
                "Induction score: mean attention from each token of the second copy to the token "
                "after its first occurrence."
            ],
            table=[["head", "induction score"]]
            + [[str(h), f"{s:.3f}"] for h, s in roles.top("induction", 10)],
            images=["head_roles.png"],
        ),
    ]
    page = write_experiment(
        args.out,
        f"Induction heads in {model.name}",
        "Repeated random tokens, ablated heads.",
        sections,
        figs,
        summary,
        formats=args.formats,
    )
    print(
        f"loss first copy {summary['loss_first_copy']:.2f}, "
        f"second {summary['loss_second_copy']:.2f}, "
        f"second with top heads ablated {summary['loss_second_copy_ablated_top']:.2f}, "
        f"with random heads {summary['loss_second_copy_ablated_random']}"
    )
    print(f"report written to {page.resolve().as_uri()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
