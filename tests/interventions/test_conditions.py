"""The paired-sample engine: every condition's rows against generating that condition alone
with the slot's seed (a naive loop), each row's parting against a hand decode, its
teacher-forced log-probs against plain Hugging Face forwards (in chunks or not), and its
refusals before any work."""

import pytest
import torch
from conftest import reference
from hf_reference import hf_run

import interp
from interp.edits import edit
from interp.errors import InvalidSettingError
from interp.generation.generate import row_seed
from interp.interventions import conditions as engine
from interp.interventions.conditions import Condition, run_conditions

SEED = 7
OPTIONS = {"max_new_tokens": 6, "top_k": 40}


def setting(model):
    """Two prompts; plain, steered hard, a head zeroed, and a prompting baseline."""
    prompts = [model.encode("The earth revolves"), model.encode("Attention heads")]
    g = torch.Generator().manual_seed(0)
    steer = edit(
        "blocks.1.hook_resid_pre", "add", vector=4 * torch.randn(model.d_model, generator=g)
    )
    zero = edit("blocks.0.attn.hook_z", "zero", heads=[1])
    instructed = [model.encode("Talk about the sun. " + t) for t in ("The earth", "Attention")]
    return prompts, [Condition(), Condition(steer), Condition(zero), Condition(None, instructed)]


def alone(model, prompts, conditions, under, samples):
    """Each condition's rows by a naive loop: one `generate` per row with its slot's seed."""
    out = []
    for c in conditions:
        own = prompts if c.prompts is None else c.prompts
        moves = [e for e in (under, c.intervention) if e is not None]
        edits = None if not moves else moves[0] if len(moves) == 1 else moves[0] + moves[1]
        out.append([
            interp.generate(model, own[j // samples], seed=row_seed(SEED, j), intervention=edits,
                            **OPTIONS)
            for j in range(len(prompts) * samples)
        ])  # fmt: skip
    return out


@pytest.mark.parametrize("noised", [False, True])
def test_every_conditions_rows_equal_generating_it_alone_with_the_slots_seed(tiny, noised):
    prompts, conditions = setting(tiny)
    under = edit("hook_embed", "noise", positions="prompt", seed=3) if noised else None
    runs = run_conditions(tiny, prompts, conditions, samples=2, seed=SEED, under=under, **OPTIONS)
    assert runs.seeds == [row_seed(SEED, j) for j in range(4)]
    naive = alone(tiny, prompts, conditions, under, 2)
    for block, by_hand in zip(runs.rows, naive, strict=True):
        for row, one in zip(block, by_hand, strict=True):
            assert row.continuation_ids == one.continuation_ids
            assert row.settings.seed == one.settings.seed
            torch.testing.assert_close(row.token_logprobs, one.token_logprobs)
    assert any(p.token is not None for p in runs.parted[1])  # the steered rows part
    assert all(p.token is None for p in runs.parted[0])


def test_each_rows_parting_is_where_a_hand_decode_parts(tiny):
    prompts, conditions = setting(tiny)
    runs = run_conditions(tiny, prompts, conditions, samples=2, seed=SEED, **OPTIONS)
    decode = tiny.tokenizer.decode
    seen = 0
    for block, parted in zip(runs.rows, runs.parted, strict=True):
        for base, row, part in zip(runs.rows[0], block, parted, strict=True):
            a, b = base.continuation_ids, row.continuation_ids
            k = next((i for i, (u, v) in enumerate(zip(a, b, strict=False)) if u != v), None)
            if k is None and len(a) != len(b):
                k = min(len(a), len(b))
            assert part.token == k
            if k is None:
                assert part.chars is None
                continue
            seen += 1
            assert part.chars == (len(decode(a[:k])), len(decode(b[:k])))
            if "\ufffd" not in decode(a[:k]):  # a whole prefix (not a split character)
                assert base.continuation[: part.chars[0]] == decode(a[:k])
    assert seen


def test_scores_equal_hugging_face_forwards_in_chunks_or_not(tiny, monkeypatch):
    prompts, conditions = setting(tiny)
    plain = [conditions[0], conditions[2], conditions[3]]  # a zeroed head, a prompted baseline
    runs = run_conditions(tiny, prompts, plain, samples=2, seed=SEED, **OPTIONS)
    hf = reference(tiny)

    def steps(logits, first, n):
        return logits[first - 1 : first - 1 + n].log_softmax(-1)

    def zeroed(x):
        x[0, :, 1] = 0.0
        return x

    whole = (list(runs.baseline_steps(tiny)), list(runs.baseline_steps(tiny, 1)),
             list(runs.against_baseline(tiny)))  # fmt: skip
    monkeypatch.setattr(engine, "SCORE_BYTES", 1)  # one row a chunk
    one_by_one = (list(runs.baseline_steps(tiny)), list(runs.baseline_steps(tiny, 1)),
                  list(runs.against_baseline(tiny)))  # fmt: skip
    for got in (whole, one_by_one):
        base, moved, against = got
        for j, row in enumerate(runs.rows[0]):
            p, t = row.prompt_len, row.n_generated
            logits, _ = hf_run(hf, row.token_ids, "heads", 0, tiny.n_heads)
            torch.testing.assert_close(base[j], steps(logits, p, t), atol=1e-4, rtol=1e-4)
            logits, _ = hf_run(hf, row.token_ids, "heads", 0, tiny.n_heads, zeroed)
            torch.testing.assert_close(moved[j], steps(logits, p, t), atol=1e-4, rtol=1e-4)
        rows = [row for block in runs.rows for row in block]
        for i, (row, (own, under_base)) in enumerate(zip(rows, against, strict=True)):
            c, j = divmod(i, 4)
            p, t = row.prompt_len, row.n_generated
            edit_ = zeroed if c == 1 else None
            logits, _ = hf_run(hf, row.token_ids, "heads", 0, tiny.n_heads, edit_)
            torch.testing.assert_close(own, steps(logits, p, t), atol=1e-4, rtol=1e-4)
            shared = prompts[j // 2]
            ids = torch.tensor(shared + row.continuation_ids)
            logits, _ = hf_run(hf, ids, "heads", 0, tiny.n_heads)
            torch.testing.assert_close(under_base, steps(logits, len(shared), t), atol=1e-4,
                                       rtol=1e-4)  # fmt: skip
    noised = run_conditions(tiny, prompts[:1], [Condition(edit("hook_embed", "scale", factor=2.0))],
                            samples=1, seed=SEED, **OPTIONS)  # fmt: skip
    with pytest.raises(InvalidSettingError, match="plain baseline"):
        next(noised.against_baseline(tiny))


def test_too_many_rows_and_misshapen_conditions_are_refused_before_any_work(
    tiny_llama, monkeypatch
):
    def ran(*args, **kwargs):
        raise AssertionError("the model ran before the request was refused")

    monkeypatch.setattr("interp.generation.generate.run", ran)
    prompts = [tiny_llama.encode("The sun")]
    many = engine.MAX_ROWS // 2 + 1
    cases = [
        ({"conditions": [Condition(), Condition()], "samples": many}, "20,000 one call runs"),
        ({"conditions": [], "samples": 1}, "at least one condition"),
        ({"conditions": [Condition(None, [[1], [2]])], "samples": 1}, "one per shared prompt"),
        ({"conditions": [Condition()], "samples": 0}, "samples must be"),
    ]
    for given, words in cases:
        with pytest.raises(InvalidSettingError, match=words):
            run_conditions(tiny_llama, prompts, seed=0, max_new_tokens=4, **given)
