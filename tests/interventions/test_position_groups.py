"""Position groups resolve per row to sets of the row's own size: "the middle subject tokens"
of facts whose subjects differ in length are one group (`interp.span(field="subject")`, each
row's own subject). Each cell equals a hand loop on the plain Hugging Face model that patches
that row's positions of the group; a group naming no token in a row (the middle of a
two-token subject) leaves that row's cell NaN, and the means are over the rows that have it."""

import math

import pytest
import torch
from conftest import reference
from hf_reference import blocks

import interp
from interp import metrics

FACTS = [
    ("The Eiffel Tower is in the city of", "Eiffel Tower"),
    ("A cat In the city of", "In"),
]
A, D = 40, 41


def _offsets(model, prompt: str, text: str) -> list[int]:
    enc = model.tokenizer(prompt, return_offsets_mapping=True)
    at = prompt.index(text)
    spans = enc["offset_mapping"]
    return [i for i, (a, b) in enumerate(spans) if b > a and a < at + len(text) and at < b]


def _by_hand(model, ids, subject, seed, layer=None, at=(), clean_resid=None):
    """logit(A) - logit(D) at the last position of the plain model on `ids`, the subject's
    embeddings noised as interp's noise edit does by definition (3 std of the embeddings, the
    seeded draw per position), and block `layer`'s input at positions `at` set to
    `clean_resid`'s. Returns the metric and block `layer`'s input (when no patch)."""
    from interp.edits.applying import noise as draw

    hf = reference(model)
    emb = hf.get_input_embeddings()
    scale = 3 * float(emb.weight.detach().std())
    delta = torch.zeros(len(ids), hf.config.hidden_size)
    if subject:
        delta[subject] = scale * draw(seed, torch.tensor(subject), (hf.config.hidden_size,))
    seen = {}

    def pre(mod, args, kwargs):
        x = args[0] if args else kwargs["hidden_states"]
        seen["resid"] = x[0].detach().clone()
        if at:
            x = x.clone()
            x[0, list(at)] = clean_resid[list(at)]
        return ((x, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": x})

    handles = [emb.register_forward_hook(lambda m, a, out: out + delta[None])]
    if layer is not None:
        handles.append(blocks(hf)[layer].register_forward_pre_hook(pre, with_kwargs=True))
    try:
        with torch.no_grad():
            logits = hf(ids[None]).logits[0].float()
    finally:
        for h in handles:
            h.remove()
    return float(logits[-1, A] - logits[-1, D]), seen.get("resid")


def test_variable_length_groups_equal_a_hand_loop_over_rows(tiny):
    prompts = [p for p, _ in FACTS]
    meta = [{"subject": s} for _, s in FACTS]
    clean = interp.generate(tiny, prompts, max_new_tokens=1, temperature=0, meta=meta)
    subject = interp.span(field="subject")
    groups = [subject.first, subject.middle, subject.last, "last_prompt"]
    noise = interp.edit("embed", "noise", positions=subject, seed=3)
    result = interp.patch(
        tiny, clean, noise, sites=["resid"], metric=metrics.logit_diff(A, D), positions=groups
    )["resid"]
    assert result.patched_per_row.shape == (2, tiny.n_layers, len(groups))
    effects = torch.full((2, tiny.n_layers, len(groups)), math.nan)
    for r, (row, (prompt, text)) in enumerate(zip(clean, FACTS, strict=True)):
        ids = row.token_ids[: row.prompt_len]
        tokens = _offsets(tiny, prompt, text)
        wanted = [[tokens[0]], tokens[1:-1], [tokens[-1]], [row.prompt_len - 1]]
        assert [row.positions(g) for g in groups] == wanted
        corrupted, _ = _by_hand(tiny, ids, tokens, seed=3)
        assert result.corrupted_per_row[r] == pytest.approx(corrupted, abs=1e-4)
        for layer in range(tiny.n_layers):
            _, clean_resid = _by_hand(tiny, ids, [], 3, layer)
            for g, at in enumerate(wanted):
                got = float(result.patched_per_row[r, layer, g])
                if not at:  # the middle of a two-token subject
                    assert math.isnan(got)
                    continue
                want, _ = _by_hand(tiny, ids, tokens, 3, layer, at, clean_resid)
                assert got == pytest.approx(want, abs=1e-4)
                effects[r, layer, g] = want - corrupted
    assert len(_offsets(tiny, *FACTS[1])) == 2  # so row 1 has no middle
    # the means are over the rows that have the cell: the middle column is row 0's alone
    torch.testing.assert_close(result.effect, effects.nanmean(0), atol=1e-4, rtol=0)
    assert result.stderr is not None
    assert torch.isnan(result.stderr[:, 1]).all() and not torch.isnan(result.stderr[:, 0]).any()
    torch.testing.assert_close(result.stderr[:, 0], effects[:, :, 0].std(0) / math.sqrt(2))


def test_a_group_that_is_not_a_role_and_names_nothing_in_a_row_is_refused(tiny):
    prompts = [p for p, _ in FACTS]
    clean = interp.generate(tiny, prompts, max_new_tokens=1, temperature=0, meta=[{}, {}])
    noise = interp.edit("embed", "noise", positions=[0, 1], seed=3)
    short = clean[1].n_positions
    with pytest.raises(interp.InterpError, match=f"the position group {short}:40 is empty"):
        interp.patch(tiny, clean, noise, sites=["resid"], positions=[slice(short, 40)])
