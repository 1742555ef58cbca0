"""Gemma 3's layout on a tiny random model against its plain Hugging Face copy: one KV head,
post-attention and post-MLP norms (`1 + w`), scaled embeddings, sliding-window layers around a
full-attention one; and models loaded from a local folder."""

import json
import shutil

import pytest
import torch
from conftest import reference

import interp
from interp.analysis import direct_logit_attribution, logit_lens
from interp.errors import InvalidSettingError, ModelUnavailableError, UnknownModelError
from interp.models import hooks as H
from interp.models import load_model

PROMPT = "The earth revolves around the sun. The moon"  # longer than the sliding window (4)


@pytest.fixture(scope="module")
def recorded(tiny_gemma):
    return interp.generate(tiny_gemma, PROMPT, max_new_tokens=10, seed=0)


def hf_run(model, token_ids, **kwargs):
    with torch.no_grad():
        return reference(model)(token_ids[None].to(model.device), **kwargs)


def test_the_fixture_has_gemmas_layout(tiny_gemma):
    cfg = reference(tiny_gemma).config
    assert cfg.model_type == "gemma3_text" and cfg.num_key_value_heads == 1
    assert cfg.layer_types == ["sliding_attention", "full_attention", "sliding_attention"]
    block = reference(tiny_gemma).model.layers[0]
    gain = block.post_attention_layernorm.weight
    assert float(gain.detach().std()) > 0.1  # a norm that matters


def test_recording_equals_hugging_face(tiny_gemma, recorded):
    """Log-probs, every block's input, and eager attention patterns (sliding windows
    included) of the KV-cached recording equal one plain Hugging Face forward."""
    assert recorded.prompt_len > 4 and recorded.token_ids[0] == tiny_gemma.tokenizer.bos_token_id
    out = hf_run(tiny_gemma, recorded.token_ids, output_hidden_states=True, output_attentions=True)
    lp = out.logits[0].float().cpu().log_softmax(-1)
    p = recorded.prompt_len
    want = lp[p - 1 : -1].gather(-1, recorded.token_ids[p:, None])[:, 0]
    torch.testing.assert_close(recorded.token_logprobs, want, atol=1e-4, rtol=1e-5)
    for layer in range(tiny_gemma.n_layers):
        got = recorded.activations[H.resid_pre(layer)]
        torch.testing.assert_close(got, out.hidden_states[layer][0].cpu(), atol=1e-4, rtol=1e-5)
        pattern = recorded.activations[H.pattern(layer)]
        torch.testing.assert_close(pattern, out.attentions[layer][0].cpu(), atol=1e-5, rtol=1e-5)
    window = recorded.activations[H.pattern(0)]  # sliding: nothing beyond 4 keys back
    assert float(window[:, 8, :5].abs().max()) == 0.0


def test_head_writes_pass_through_the_post_attention_norm(tiny_gemma, recorded):
    """Each head's write, through the post-attention norm with its scale frozen, sums to the
    attention output of a full run; the bare `z @ W_O` does not."""
    from interp.trace import components

    with torch.no_grad():
        _, cache = tiny_gemma.bridge.run_with_cache(recorded.token_ids[None])
    for layer in range(tiny_gemma.n_layers):
        heads, bias = components.head_writes(tiny_gemma, recorded.activations[H.z(layer)], layer)
        want = cache[H.attn_out(layer)][0]
        torch.testing.assert_close(heads.sum(-2) + bias, want, atol=1e-5, rtol=1e-4)
        bare = components.head_outputs(tiny_gemma, recorded.activations[H.z(layer)], layer)
        assert float((bare.sum(-2) - want).abs().max()) > 0.1


def test_direct_logit_attribution_sums_to_the_logit(tiny_gemma, recorded):
    result = direct_logit_attribution(tiny_gemma, recorded)
    logits = hf_run(tiny_gemma, recorded.token_ids).logits[0].float()
    p = recorded.prompt_len
    want = logits[p - 1 : -1].gather(-1, recorded.token_ids[p:, None])[:, 0]
    torch.testing.assert_close(result.total, want, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(result.logits, want, atol=1e-4, rtol=1e-5)
    diff = direct_logit_attribution(tiny_gemma, recorded, answer=40, distractor=70)
    want = logits[p - 1 : -1, 40] - logits[p - 1 : -1, 70]
    torch.testing.assert_close(diff.total, want, atol=1e-4, rtol=1e-5)


def test_transformer_lens_cache_methods_sum_to_the_logit(tiny_gemma, recorded):
    """`stack_head_results` and `decompose_resid` through `logit_attrs` on interp's cache:
    with the post-attention norms and the final norm's `1 + w`, each sums to the logit."""
    cache = recorded.cache
    token = recorded.token_ids[-1:]
    logit = hf_run(tiny_gemma, recorded.token_ids).logits[0, -2, token].float()
    parts = cache.decompose_resid(layer=-1, pos_slice=-2, return_labels=False)
    total = cache.logit_attrs(parts, tokens=token, pos_slice=-2).sum(0)
    torch.testing.assert_close(total, logit, atol=1e-4, rtol=1e-5)
    heads = cache.stack_head_results(layer=-1, pos_slice=-2)  # [layer*head, batch, d_model]
    attn = torch.stack([cache[H.attn_out(layer)][:, -2] for layer in range(3)]).sum(0)
    torch.testing.assert_close(heads.sum(0), attn, atol=1e-5, rtol=1e-4)


def test_running_from_a_middle_layer_keeps_each_blocks_attention_kind(tiny_gemma, recorded):
    """Blocks 1.. alone, from the recorded residual, give the full forward's logits: block 1
    keeps full attention and its own rotary base though it runs first."""
    from interp.models.surgery import run_from_layer

    want = hf_run(tiny_gemma, recorded.token_ids).logits[0].float()
    for layer in range(tiny_gemma.n_layers):
        resid = recorded.activations[H.resid_pre(layer)][None]
        with torch.no_grad():
            got = run_from_layer(tiny_gemma, resid, layer)[0]
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)


def test_fast_sweep_equals_the_naive_loop(tiny_gemma, recorded):
    from naive import naive_sweep, per_head

    from interp.interventions import sweep

    exact = sweep(tiny_gemma, recorded, "mean")
    heads = [(layer, head) for layer in range(3) for head in range(4)]
    naive = naive_sweep(tiny_gemma, recorded, per_head(tiny_gemma, recorded, heads, "mean"))
    torch.testing.assert_close(exact.delta, naive, atol=1e-4, rtol=1e-4)


def test_the_lens_final_row_is_the_models_own_prediction(tiny_gemma, recorded):
    result = logit_lens(tiny_gemma, recorded)
    logits = hf_run(tiny_gemma, recorded.token_ids).logits[0].float()
    p = recorded.prompt_len
    want = logits[p - 1 : -1].softmax(-1).gather(-1, recorded.token_ids[p:, None])[:, 0]
    torch.testing.assert_close(result.target_probs[-1], want, atol=1e-5, rtol=1e-4)


def test_head_roles_read_the_patterns_hugging_face_computes(tiny_gemma):
    """One KV head for four query heads, sliding windows: each role score is the mean
    attention a plain Hugging Face forward (eager) puts on the role's target."""
    roles = interp.head_roles(tiny_gemma, block_len=3, sequences=2, seed=1)  # inside a window
    tokens, n, o = roles.probe_tokens, roles.block_len, roles.offset
    out = hf_run_batch(tiny_gemma, tokens)
    assert roles.scores.shape == (4, 3, 4)
    for layer in range(3):
        pattern = out.attentions[layer].float().cpu()  # [seq, head, q, k]
        second = torch.arange(o + n, o + 2 * n)
        want = pattern[:, :, second, second - n + 1].mean((0, 2))
        torch.testing.assert_close(roles.score("induction")[layer], want, atol=1e-5, rtol=0)


def hf_run_batch(model, tokens):
    with torch.no_grad():
        return reference(model)(tokens.to(model.device), output_attentions=True)


def test_path_patching_refuses_post_attention_norms(tiny_gemma, recorded):
    with pytest.raises(InvalidSettingError, match="not z @ W_O"):
        interp.path_patch(tiny_gemma, recorded, recorded, receivers="logits")


def test_generation_stops_at_the_generation_configs_end_tokens(tiny_gemma):
    """An end token named only by the generation config (as Gemma's chat models name
    `<end_of_turn>`) stops a generation, as it stops Hugging Face's `generate`."""
    free = interp.generate(tiny_gemma, PROMPT, max_new_tokens=10, seed=0, hooks=[])
    step = 3
    end = int(free.continuation_ids[step])
    assert end not in free.continuation_ids[:step]
    config = tiny_gemma.bridge.original_model.generation_config
    saved = config.eos_token_id
    try:
        config.eos_token_id = [saved, end]
        tiny_gemma.extra.pop("_stop_token_ids", None)
        assert end in tiny_gemma.stop_token_ids
        stopped = interp.generate(tiny_gemma, PROMPT, max_new_tokens=10, seed=0, hooks=[])
    finally:
        config.eos_token_id = saved
        tiny_gemma.extra.pop("_stop_token_ids", None)
    assert stopped.continuation_ids == free.continuation_ids[: step + 1]
    assert stopped.stop_reason == "eos"


# ---- models from a local folder -----------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tiny_gemma, tmp_path_factory):
    """The tiny Gemma saved as a Hugging Face folder (config, weights, tokenizer)."""
    directory = tmp_path_factory.mktemp("models") / "tiny-gemma"
    reference(tiny_gemma).save_pretrained(directory)
    tiny_gemma.tokenizer.save_pretrained(directory)
    return directory


def test_a_local_folder_loads_by_path(tiny_gemma, recorded, folder, monkeypatch):
    monkeypatch.chdir(folder.parent)
    model = load_model("./tiny-gemma")
    assert model.name == str(folder.resolve()) and model.checksum.startswith("sha256:")
    again = interp.generate(model, PROMPT, max_new_tokens=10, seed=0)
    assert again.token_ids.tolist() == recorded.token_ids.tolist()
    torch.testing.assert_close(again.token_logprobs, recorded.token_logprobs)
    assert load_model(str(folder)).checksum == model.checksum  # absolute path, same weights


def test_a_name_that_is_not_a_path_never_reads_a_folder(folder, monkeypatch):
    monkeypatch.chdir(folder.parent.parent)
    with pytest.raises(UnknownModelError, match="unknown model 'tiny-gemma'"):
        load_model("tiny-gemma")  # a bare name
    name = f"{folder.parent.name}/tiny-gemma"  # a Hub-like name that is also a folder here
    with pytest.raises(UnknownModelError, match=rf"name it as a path \(\./{name}\)"):
        load_model(name)


@pytest.mark.parametrize(
    "damage", ["no-weights", "no-config", "no-tokenizer", "remote-code", "torn-weights"]
)
def test_a_broken_folder_says_what_it_lacks(folder, tmp_path, damage):
    broken = tmp_path / "m"
    shutil.copytree(folder, broken)
    if damage == "no-weights":
        (broken / "model.safetensors").unlink()
        match = "no weights"
    elif damage == "no-config":
        (broken / "config.json").unlink()
        match = "no config.json"
    elif damage == "no-tokenizer":
        for f in ("tokenizer.json", "tokenizer_config.json"):
            (broken / f).unlink()
        match = "no tokenizer"
    elif damage == "torn-weights":
        weights = broken / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        match = "could not be loaded"
    else:
        config = json.loads((broken / "config.json").read_text())
        config["auto_map"] = {"AutoModelForCausalLM": "evil.Model"}
        (broken / "config.json").write_text(json.dumps(config))
        match = "never runs a model folder's code"
    with pytest.raises(ModelUnavailableError, match=match):
        load_model(str(broken))
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        load_model(str(tmp_path / "absent"))


def test_the_cli_loads_a_folder_and_refuses_a_broken_one(folder, tmp_path, capsys):
    from interp import cli

    out = tmp_path / "t"
    code = cli.main(
        ["generate", "The moon", "--model", str(folder), "--max-new-tokens", "3", "--out", str(out)]
    )
    assert code == 0 and (out / "summary.json").exists()
    assert json.loads((out / "summary.json").read_text())["model"] == str(folder.resolve())
    capsys.readouterr()
    code = cli.main(["generate", "x", "--model", str(tmp_path / "none"), "--out", str(out / "b")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "does not exist" in err
    assert not (out / "b").exists()
