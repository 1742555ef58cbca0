"""Dictionaries: encoding and decoding of each architecture against a hand computation,
SAELens and Gemma Scope 2 folders written here loading unchanged, one-line refusals, TopK
training recovering a planted dictionary, and resuming equal to an uninterrupted run."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import interp
from interp.errors import InterpError
from interp.features import Dictionary, load_dictionary, save_dictionary
from interp.features.harvest import activations
from interp.features.topk import TopKTrainer, TrainSettings

D_IN, D_SAE = 16, 40


def weights(d_out=D_IN):
    g = torch.Generator().manual_seed(3)
    return {
        "W_enc": torch.randn(D_IN, D_SAE, generator=g),
        "b_enc": torch.randn(D_SAE, generator=g) * 0.1,
        "W_dec": torch.randn(D_SAE, d_out, generator=g),
        "b_dec": torch.randn(d_out, generator=g),
        "threshold": torch.rand(D_SAE, generator=g),
    }


def hand(w, x, activation, k=None, sub_b_dec=False):
    """Element by element: pre-activations, the activation, the decoder."""
    rows = []
    for v in x:
        v_in = v - w["b_dec"] if sub_b_dec else v
        pre = torch.tensor([float(sum(v_in[i] * w["W_enc"][i, j] for i in range(D_IN)))
                            for j in range(D_SAE)]) + w["b_enc"]  # fmt: skip
        if activation == "relu":
            f = pre.clamp_min(0)
        elif activation == "jumprelu":
            f = torch.where(pre > w["threshold"], pre.clamp_min(0), torch.zeros(()))
        else:
            keep = sorted(range(D_SAE), key=lambda j: -float(pre[j]))[:k]
            f = torch.zeros(D_SAE)
            f[keep] = pre[keep].clamp_min(0)
        rows.append(f)
    f = torch.stack(rows)
    return f, f @ w["W_dec"] + w["b_dec"]


@pytest.mark.parametrize(
    "activation,k,sub,d_out",
    [("relu", None, True, D_IN), ("topk", 5, True, D_IN), ("jumprelu", None, False, D_IN),
     ("relu", None, False, 12)],  # the last: a transcoder writing a width of its own
)  # fmt: skip
def test_encode_and_decode_equal_a_hand_computation(activation, k, sub, d_out):
    w = weights(d_out)
    d = Dictionary(w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"], activation, "h",
                   "out" if d_out != D_IN else None, k,
                   w["threshold"] if activation == "jumprelu" else None, sub)  # fmt: skip
    x = torch.randn(2, 3, D_IN)
    f, recon = hand(w, x.reshape(-1, D_IN), activation, k, sub)
    assert torch.allclose(d.encode(x).reshape(-1, D_SAE), f, atol=1e-5)
    assert torch.allclose(d.reconstruct(x).reshape(-1, d_out), recon, atol=1e-4)
    assert torch.allclose(d.decode(d.encode(x)), d.reconstruct(x), atol=1e-5)
    if activation == "topk":
        assert int((d.encode(x) > 0).sum(-1).max()) <= k


def saelens_folder(path, w, architecture, hook, **extra):
    path.mkdir()
    tensors = {n: w[n] for n in ("W_enc", "b_enc", "W_dec", "b_dec")}
    if "jumprelu" in architecture:
        tensors["threshold"] = w["threshold"]
    save_file(tensors, path / "sae_weights.safetensors")
    cfg = {"architecture": architecture, "d_in": D_IN, "d_sae": D_SAE, "dtype": "float32",
           "device": "cpu", "apply_b_dec_to_input": True, "normalize_activations": "none",
           "reshape_activations": "none",
           "metadata": {"model_name": "m", "hook_name": hook, "hook_layer": 0,
                        "sae_lens_version": "6.12.1"}, **extra}  # fmt: skip
    (path / "cfg.json").write_text(json.dumps(cfg))
    return path


def test_a_saelens_folder_encodes_like_the_hand_computation(tmp_path):
    w = weights()
    folder = saelens_folder(tmp_path / "sae", w, "topk", "blocks.0.hook_resid_post", k=4)
    d = load_dictionary(folder)
    assert (d.architecture, d.k, d.hook, d.d_sae) == ("topk", 4, "blocks.0.hook_resid_post", D_SAE)
    x = torch.randn(5, D_IN)
    f, recon = hand(w, x, "topk", 4, sub_b_dec=True)
    assert torch.allclose(d.encode(x), f, atol=1e-5)
    assert torch.allclose(d.reconstruct(x), recon, atol=1e-4)
    again = load_dictionary(save_dictionary(d, tmp_path / "copy"))  # interp writes SAELens's
    cfg = json.loads((tmp_path / "copy" / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["metadata"]["hook_name"] == d.hook
    assert torch.equal(again.encode(x), d.encode(x))


def test_a_gemma_scope_2_folder_loads_with_its_hook_translated(tmp_path):
    w = weights()
    folder = tmp_path / "resid_post" / "layer_1_width_16k_l0_small"
    folder.mkdir(parents=True)
    save_file({"w_enc": w["W_enc"], "w_dec": w["W_dec"], "b_enc": w["b_enc"],
               "b_dec": w["b_dec"], "threshold": w["threshold"]},
              folder / "params.safetensors")  # fmt: skip
    (folder / "config.json").write_text(json.dumps(
        {"hf_hook_point_in": "model.layers.1.output", "width": D_SAE, "model_name": "g",
         "architecture": "jump_relu", "l0": 20}))  # fmt: skip
    d = load_dictionary(folder)
    assert d.hook == "blocks.1.hook_resid_post" and d.architecture == "jumprelu"
    x = torch.randn(4, D_IN)
    f, _ = hand(w, x, "jumprelu")  # Gemma Scope does not subtract b_dec first
    assert torch.allclose(d.encode(x), f, atol=1e-5)


def test_a_hook_or_width_mismatch_is_one_line(tmp_path, tiny_llama):
    w = weights()
    wrong_width = load_dictionary(saelens_folder(tmp_path / "a", w, "standard",
                                                 "blocks.0.hook_resid_post"))  # fmt: skip
    with pytest.raises(InterpError) as err:
        interp.dictionaries.files.check(wrong_width, tiny_llama)
    message = str(err.value)
    assert "\n" not in message and f"width {D_IN}" in message
    assert f"width {tiny_llama.d_model}" in message
    folder = saelens_folder(tmp_path / "b", w, "standard", "blocks.99.hook_resid_post")
    with pytest.raises(InterpError, match="reads L99.resid_post, which tiny-llama lacks"):
        load_dictionary(folder, tiny_llama)
    (folder / "cfg.json").write_text(json.dumps({"architecture": "gated", "d_in": D_IN}))
    with pytest.raises(InterpError, match="architecture 'gated'"):
        load_dictionary(folder)


def planted(n_atoms=24, d=16, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(n_atoms, d, generator=g)
    atoms /= atoms.norm(dim=-1, keepdim=True)

    def chunk(i, n=8192):
        gi = torch.Generator().manual_seed(1000 + i)
        idx = torch.rand(n, n_atoms, generator=gi).argsort(-1)[:, :k]
        codes = torch.zeros(n, n_atoms).scatter_(1, idx, torch.rand(n, k, generator=gi) + 0.5)
        return codes @ atoms + 0.2

    return atoms, chunk


def test_topk_training_recovers_a_planted_dictionary():
    atoms, chunk = planted()
    trainer = TopKTrainer(16, TrainSettings(width=48, k=3, batch=256, lr=3e-3, dead_tokens=8192))
    for i in range(8):
        trainer.train_chunk(chunk(i), i)
    d = trainer.dictionary("h", None, {})
    rows = d.W_dec / d.W_dec.norm(dim=-1, keepdim=True)
    best = (atoms @ rows.T).max(-1).values
    assert float((best >= 0.9).float().mean()) >= 0.9, best
    x = chunk(99)
    fvu = (d.reconstruct(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    assert float(fvu) < 0.1


def test_resumed_training_equals_an_uninterrupted_run(tmp_path):
    _, chunk = planted(seed=1)
    settings = TrainSettings(
        width=32, k=3, batch=128, lr=1e-3, dead_tokens=2048, planned_tokens=4096, decay=0.75
    )  # the decay spans the resume
    straight = TopKTrainer(16, settings)
    for i in range(4):
        straight.train_chunk(chunk(i, 1024), i)
    first = TopKTrainer(16, settings)
    for i in range(2):
        first.train_chunk(chunk(i, 1024), i)
    torch.save(first.state(), tmp_path / "ckpt")
    resumed = TopKTrainer.from_state(torch.load(tmp_path / "ckpt", weights_only=True))
    for i in range(2, 4):
        resumed.train_chunk(chunk(i, 1024), i)
    for a, b in zip(straight.state()["params"], resumed.state()["params"], strict=True):
        assert torch.equal(a, b)
    assert torch.equal(straight.since_fired, resumed.since_fired)


def test_the_learning_rate_falls_linearly_to_zero_over_the_end_of_the_plan():
    settings = TrainSettings(width=32, k=3, batch=128, lr=1e-3, planned_tokens=4096, decay=0.25)
    assert [settings.rate_at(t) for t in (0, 3072, 3584, 4096, 5000)] == pytest.approx(
        [1e-3, 1e-3, 0.5e-3, 0.0, 0.0]
    )
    assert TrainSettings(width=32, k=3, lr=1e-3).rate_at(10**9) == 1e-3  # no plan: constant
    _, chunk = planted(seed=2)
    seen = []
    trainer = TopKTrainer(16, settings)
    step = trainer.opt.step

    def record(*args, **kwargs):
        seen.append(trainer.opt.param_groups[0]["lr"])
        return step(*args, **kwargs)

    trainer.opt.step = record
    for i in range(4):
        trainer.train_chunk(chunk(i, 1024), i)
    expected = [1e-3 * min(1.0, (1 - 128 * n / 4096) / 0.25) for n in range(32)]
    assert seen == pytest.approx(expected)


def test_the_mlp_input_the_direct_engine_reads_is_the_bridges(tiny_llama):
    """A transcoder reads blocks.L.mlp.hook_in: the direct engine's site (the MLP module's
    input) holds what TransformerLens's hook point does."""
    from interp.features.harvest import capture
    from interp.models import engine

    ids = torch.tensor([[1, 5, 9, 4, 7, 3]])
    hooks = ["blocks.1.mlp.hook_in", "blocks.1.hook_mlp_out"]
    direct = capture(tiny_llama, engine.choose(tiny_llama, hooks, [], "direct"), ids, hooks)
    bridge = capture(tiny_llama, engine.choose(tiny_llama, hooks, [], "bridge"), ids, hooks)
    for h in hooks:
        assert torch.allclose(direct[h], bridge[h], atol=1e-5), h
    acts = activations(tiny_llama, ids, hooks)
    assert acts[hooks[0]].shape == (5, tiny_llama.d_model)  # position 0 left out
    assert torch.allclose(acts[hooks[0]], bridge[hooks[0]][0, 1:], atol=1e-5)


def test_massive_activations_are_left_out_of_harvests():
    """A row hundreds of times the median norm (SmolLM2's attention-sink newlines) would carry
    almost all the variance: `typical` drops it and nothing else."""
    from interp.features.harvest import typical

    x = torch.randn(3, 50, 16)
    x[1, 7] *= 300
    keep = typical(x)
    assert keep.shape == (3, 50) and not bool(keep[1, 7]) and int(keep.sum()) == 149


def test_make_features_trains_again_when_the_cached_defaults_have_other_settings(
    tmp_path, monkeypatch, capsys
):
    from argparse import Namespace

    from interp.cli.features import _defaults
    from interp.features.catalog import DEFAULTS
    from interp.features.train import planned, record

    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path))
    plan = DEFAULTS["smollm2-135m"]
    now = record(planned(plan.width, plan.k, plan.tokens))
    assert now["learning_rate"] == pytest.approx(8e-4 / (plan.width / 2**14) ** 0.5)

    def cache(optimizer):
        for hook in plan.hooks:
            folder = tmp_path / "dictionaries" / "smollm2-135m" / hook
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "contexts.safetensors").write_bytes(b"")
            (folder / "interp.json").write_text(json.dumps({"training": {"optimizer": optimizer}}))

    def defaults():
        return _defaults(Namespace(model="smollm2-135m", hook=None, out=None, seed=0))

    assert defaults()  # nothing cached: train
    cache(now)
    assert not defaults()
    assert "are cached" in capsys.readouterr().out
    cache({k: v for k, v in now.items() if k != "learning_rate"})  # an earlier default rate
    assert defaults()
    assert "trained with other settings" in capsys.readouterr().err
