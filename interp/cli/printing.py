"""What the commands print: an analysis's summary, an ablation's texts with their divergence
marked, paired samples' statistics and a circuit's scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def layer_picks(layers: list[str]) -> list[int]:
    shown = range(0, len(layers), max(1, len(layers) // 6))
    return sorted(set(shown) | {len(layers) - 1})


def print_set_analysis(traces: Any, summary: dict[str, Any]) -> None:
    lens = summary["set"]["logit_lens"]
    picks = layer_picks(lens["layers"])

    def spread(name: str, i: int) -> str:
        se = lens[f"{name}_se"][i]
        return f"{lens['layers'][i]} {lens[name][i]:.2f}" + ("" if se is None else f"±{se:.2f}")

    tokens = sum(t.n_generated for t in traces)
    print(f"{len(traces)} rows, {tokens} generated tokens; means over rows ± standard error")
    print(
        "logit lens, mean KL to the final layer (nats): "
        + "  ".join(spread("mean_kl", i) for i in picks)
    )
    print(
        "logit lens, top-1 agreement with the final layer: "
        + "  ".join(spread("top1_agreement", i) for i in picks)
    )
    print_roles(summary)
    print(
        "direct logit attribution over every row, top heads (signed mean logit, ranked by "
        "magnitude): " + "  ".join(f"{h} {v:+.3f}" for h, v in summary["set"]["dla_top_heads"][:5])
    )


def print_roles(summary: dict[str, Any]) -> None:
    probe = summary["probe"]
    sd = probe["loss_first_copy_sd"], probe["loss_second_copy_sd"]
    spread = "" if sd[0] is None else f" (sd over sequences {sd[0]:.2f}, {sd[1]:.2f})"
    print(
        f"head roles on {probe['sequences']} x 2 x {probe['block_len']} repeated random tokens "
        f"(loss {probe['loss_first_copy']:.2f} on the first copy, "
        f"{probe['loss_second_copy']:.2f} on the second{spread}):"
    )
    for role, heads in summary["head_roles"].items():
        print(f"  {role:16s} " + "  ".join(f"{h} {v:.2f}" for h, v in heads[:5]))


def print_analysis(trace: Any, summary: dict[str, Any]) -> None:
    lens = summary["logit_lens"]
    picks = layer_picks(lens["layers"])
    print(f"{trace.prompt}\u2502{trace.continuation}")
    print(
        "logit lens, mean KL to the final layer (nats): "
        + "  ".join(f"{lens['layers'][i]} {lens['mean_kl'][i]:.2f}" for i in picks)
    )
    print(
        "logit lens, top-1 agreement with the final layer: "
        + "  ".join(f"{lens['layers'][i]} {lens['top1_agreement'][i]:.2f}" for i in picks)
    )
    depth = sorted(summary["prediction_depth"])
    median = lens["layers"][depth[len(depth) // 2]]
    print(f"prediction depth (median over {len(depth)} generated tokens): {median}")
    print_roles(summary)
    print(
        "direct logit attribution, top heads (signed mean logit, ranked by magnitude): "
        + "  ".join(f"{h} {v:+.3f}" for h, v in summary["dla_top_heads"][:5])
    )


def marked(text_ids: list[int], model, divergence: int | None) -> str:
    """The continuation with the first diverging token onwards in brackets."""
    if divergence is None:
        return model.decode(text_ids)
    return (
        model.decode(text_ids[:divergence])
        + "\u27e6"
        + model.decode(text_ids[divergence:])
        + "\u27e7"
    )


def print_samples(paired: Any, prompt: str, shown: int = 3) -> None:
    """The aggregate line of the ablation and of each control, and the first pairs with
    their divergence marked."""
    print(f"{paired.samples} paired samples, {paired.effect.horizon} tokens each:")
    print(f"  ablated {paired.effect.label}: {paired.effect.line()}")
    for control in paired.controls:
        print(f"  control {control.label}: {control.line()}")
    print(f"  {paired.comparison()}")
    for pair in paired.effect.pairs[:shown]:
        where = "identical" if pair.first_divergence is None else f"from {pair.first_divergence}"
        print(f"  seed {pair.seed} ({where}):")
        for name, text, i in (
            ("baseline", pair.baseline_text, 0),
            ("ablated", pair.ablated_text, 1),
        ):
            if pair.divergence_chars is not None:
                cut = pair.divergence_chars[i]
                text = f"{text[:cut]}\u27e6{text[cut:]}\u27e7"
            print(f"    {name + ':':9s} {prompt}\u2502{text}")


def print_circuit(
    scores: Any, size: str, width: int, curve: Any, out: Path, page: Path | None
) -> None:
    """What `interp circuit` prints of edge or node scores: the method and the runs' metrics,
    the graph's `size`, the five largest scores (names `width` wide), CPR and CMD, and where
    the circuit and its page are."""
    print(
        f"{scores.method}"
        + (f" ({scores.steps} steps)" if scores.method == "eap-ig" else "")
        + f" over {scores.rows} pair(s), {scores.metric}: "
        f"clean {scores.clean_metric:.3f}, corrupted {scores.corrupted_metric:.3f}; {size}"
    )
    for name, value in scores.top(5):
        print(f"  {str(name):{width}s} {value:+.4f}")
    if curve is not None:
        print(f"  CPR {curve.cpr:.3f}  CMD {curve.cmd:.3f}")
    print(f"written to {out}" + ("" if page is None else f"; report: {page.resolve().as_uri()}"))
