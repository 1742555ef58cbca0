"""The one spelling of "where": every site parses and prints round trip, names the hook point
a model has, and an edit, a recording and a result all take and give it."""

from __future__ import annotations

import pytest
import torch
from fakes import random_dictionary

import interp
from interp.dictionaries.files import check as check_dictionary
from interp.errors import HookError, InvalidSettingError, ModelMismatchError
from interp.models.site import Site

SPELLED = [
    "embed",
    "logits",
    "L1H2",
    "L1H2.q",
    "L1H2.k",
    "L1H2.v",
    "L1.kv0.k",
    "L1.kv1.v",
    "L0.mlp",
    "L1.attn",
    "L0.mlp_in",
    "L1.z",
    "L0.resid_pre",
    "L1.resid_mid",
    "L1.resid_post",
    "blocks.1.mlp.hook_post",
    "blocks.0.attn.hook_pattern",
    "hook_pos_embed",
    "ln_final.hook_scale",
]
# the hook name TransformerLens gives each site, written out by hand
HOOKS = {
    "embed": "hook_embed",
    "L1H2": "blocks.1.attn.hook_z",
    "L1.z": "blocks.1.attn.hook_z",
    "L0.mlp": "blocks.0.hook_mlp_out",
    "L1.attn": "blocks.1.hook_attn_out",
    "L0.mlp_in": "blocks.0.mlp.hook_in",
    "L0.resid_pre": "blocks.0.hook_resid_pre",
    "L1.resid_mid": "blocks.1.hook_resid_mid",
    "L1.resid_post": "blocks.1.hook_resid_post",
}


@pytest.mark.parametrize("text", SPELLED)
def test_a_site_prints_as_it_is_spelled_and_parses_back(text):
    site = interp.site(text)
    assert str(site) == text and interp.site(str(site)) == site and f"{site:>30}".strip() == text


def test_a_hook_name_parses_to_the_shorter_spelling_of_its_site(tiny_llama):
    for text, hook in HOOKS.items():
        site = interp.site(text)
        assert site.hook == hook and hook in tiny_llama.bridge.hook_dict
        if text != "L1H2":  # a head is its hook's slice: the hook alone is the layer's z
            assert interp.site(hook) == site
    assert interp.site("L1H2").heads == (2,) and interp.site("L1H2").head == interp.Head(1, 2)
    assert interp.site(interp.Head(3, 1)) == interp.site("l3h1")  # a Head, any case


@pytest.mark.parametrize("bad", ["", "L1H", "L1.foo", "heads", "L1.kv0.q", "Lx.mlp"])
def test_an_unknown_site_is_one_line_naming_the_spellings(bad):
    with pytest.raises(InvalidSettingError) as err:
        interp.site(bad)
    assert "\n" not in str(err.value) and ("L5H1" in str(err.value))


def test_an_edit_at_a_head_is_the_edit_of_its_slice_of_the_layers_z(tiny_llama):
    """The spelled edit runs as the hook-name edit with heads= does (the reference), records
    under its spelling, and a file written with hook names loads to the same edit."""
    prompt = "The earth revolves around"
    by_site = interp.edit("L1H2", "scale", factor=0.0)
    by_hook = interp.edit("blocks.1.attn.hook_z", "scale", factor=0.0, heads=[2])
    runs = [
        interp.generate(tiny_llama, prompt, max_new_tokens=3, seed=0, intervention=i)
        for i in (by_site, by_hook)
    ]
    assert runs[0].token_ids.tolist() == runs[1].token_ids.tolist()
    z = runs[0].activations["L1.z"]  # a site's spelling reads the recorded hook
    assert z is runs[0].activations["blocks.1.attn.hook_z"] and not z[:, 2].any()
    torch.testing.assert_close(z, runs[1].activations["blocks.1.attn.hook_z"])
    assert by_site.label == "scale L1H2" and by_hook.label == "scale L1.z[heads [2]]"
    written = {"site": "L1H2", "op": "scale", "params": {"factor": 0.0}}
    assert by_site.to_json()["edits"][0] == written
    old = {"site": "blocks.1.attn.hook_z", "op": "scale", "heads": [2], "params": {"factor": 0}}
    old = {"edits": [old]}  # as a trace written before the spelling holds it
    assert interp.Intervention.from_json(old).edits[0].hook == by_site.edits[0].hook
    with pytest.raises(InvalidSettingError, match="L1H2 names its head"):
        interp.edit("L1H2", "zero", heads=[1])
    with pytest.raises(InvalidSettingError, match="logits is not a site an edit runs at"):
        interp.edit("logits", "zero")


def test_recording_takes_sites_and_results_give_them_back(tiny_llama):
    run = interp.generate(tiny_llama, "The moon", max_new_tokens=2, hooks=["L0.attn", "embed"])
    assert set(run.hook_names) == {"blocks.0.hook_attn_out", "hook_embed"}
    noise = interp.edit("embed", "noise", seed=1)
    run = interp.generate(tiny_llama, "The moon", max_new_tokens=2)
    result = interp.patch(tiny_llama, run, noise, sites=["attn-out"])
    (cell, _), *_ = result["attn-out"].top(1)
    assert isinstance(cell.site, Site) and str(cell) == f"L{cell.layer}.attn@{cell.position}"
    assert interp.site(str(cell.site)).hook == f"blocks.{cell.layer}.hook_attn_out"


def test_a_heads_spelling_reads_its_slice_of_the_recorded_z_never_the_whole_layer(tiny_llama):
    """`activations["L1H2"]` is head 2's slice of the recorded z (indexed by hand as the
    reference), `in` and `get` answer as indexing does, and a spelling the trace cannot give
    right (a head past the layer's, a head's input) is absent, not the whole hook."""
    run = interp.generate(tiny_llama, "The moon", max_new_tokens=1, hooks=["L1.z", "L0.attn"])
    acts, z = run.activations, run.activations["blocks.1.attn.hook_z"]
    assert torch.equal(acts["L1H2"], z[:, 2]) and acts["L1H2"].shape == (z.shape[0], z.shape[2])
    assert torch.equal(acts[interp.site("L1H2")], z[:, 2])
    assert "L1H2" in acts and "L1.z" in acts and "L0.attn" in acts and "L0.mlp" not in acts
    assert acts.get("L1.z") is z and acts.get("L0.mlp") is None and acts.get("L1H9", 1) == 1
    for absent in (f"L1H{z.shape[1]}", "L1H2.q", "L1.kv0.k", "L0H1", "logits", "nonsense"):
        assert absent not in acts and acts.get(absent) is None
        with pytest.raises(KeyError):
            acts[absent]


@pytest.mark.parametrize(
    "fields",
    [
        ("head", 5, -1),  # printed L5H-1, which parses to nothing
        ("attn",),  # L-1.attn
        ("logits", 3),
        ("embed", 0),
        ("kv_input", 5, 0, "q"),
        ("head", 5, 1, "q"),
        ("hook",),
        ("hook", -1, -1, "", "not a hook"),
        ("hook", -1, -1, "", "blocks.5.hook_attn_out"),  # a second value for L5.attn
        ("hook", -1, -1, "", "hook_embed"),
        ("head", True, 1),
    ],
)
def test_a_site_is_built_checked_one_value_for_each_place(fields):
    with pytest.raises(InvalidSettingError) as err:
        Site(*fields)
    assert "\n" not in str(err.value)


def test_every_site_prints_and_parses_back_to_itself_and_equal_sites_hash_alike():
    for text in SPELLED:
        site = interp.site(text)
        assert Site(site.kind, site.layer, site.index, site.input, site.name) == site
    assert {interp.site("blocks.5.hook_attn_out"), interp.site("l5.ATTN")} == {
        interp.site("L5.attn")
    }


def test_sites_sort_in_the_order_a_forward_pass_reaches_them():
    order = [
        "embed",
        "L0.resid_pre",
        "L0H1.q",
        "L0.z",
        "L0H0",
        "L0H1",
        "L0.attn",
        "L0.resid_mid",
        "L0.mlp_in",
        "L0.mlp",
        "L0.resid_post",
        "blocks.0.mlp.hook_post",
        "L1.resid_pre",
        "L10.attn",
        "ln_final.hook_scale",
        "logits",
    ]
    sites = [interp.site(t) for t in order]
    assert [str(s) for s in sorted(reversed(sites))] == order
    assert interp.site("L2.attn") < interp.site("L10.resid_pre") and max(sites) == interp.site(
        "logits"
    )


def test_errors_name_sites_in_their_spelling_not_as_hook_names(tiny_llama):
    """What a user meets when a site is missing names it as they write it (L9.attn), never
    as the hook it lives at (blocks.9.hook_attn_out)."""
    run = interp.generate(tiny_llama, "The moon", max_new_tokens=1, hooks=["L0.attn"])
    d = random_dictionary(tiny_llama, "blocks.1.hook_resid_post", width=16, k=2)
    far = random_dictionary(tiny_llama, "blocks.1.hook_resid_post", width=16, k=2)
    far.hook = "blocks.9.hook_resid_post"
    cases = [
        (
            HookError,
            lambda: interp.generate(tiny_llama, "x", max_new_tokens=1, hooks=["L9.attn"]),
            "no site L9.attn; its blocks are L0..L1",
        ),
        (
            HookError,
            lambda: run.require_hooks(["blocks.0.hook_mlp_out"], "the test"),
            "the test needs sites this trace did not record: L0.mlp;",
        ),
        (
            InvalidSettingError,
            lambda: interp.edit("L0.mlp", "mean", reference=run),
            "did not record L0.mlp;",
        ),
        (
            InvalidSettingError,
            lambda: interp.edit("L0.resid_post", "feature", dictionary=d, features=[1]),
            "the dictionary reads L1.resid_post; the edit's site is L0.resid_post",
        ),
        (
            ModelMismatchError,
            lambda: check_dictionary(far, tiny_llama),
            "the dictionary reads L9.resid_post, which tiny-llama lacks",
        ),
        (
            HookError,
            lambda: interp.generate(
                tiny_llama, "x", max_new_tokens=1, fwd_hooks=[("blocks.9.nope", lambda x, hook: x)]
            ),
            "has no hook named 'blocks.9.nope'",
        ),
    ]
    for error, call, message in cases:
        with pytest.raises(error) as err:
            call()
        text = str(err.value)
        assert message in text and "\n" not in text
        assert "blocks." not in text.replace("blocks.9.nope", "")
