"""Files written before sites had one spelling still load, and say what they hold in it: a
trace whose intervention names hooks, a steering vector whose record names its hook, a
patching result without `under` and `held_callable`."""

from __future__ import annotations

import json

import torch
from fakes import vector_file

import interp
from interp.interventions.patching_result import Patching
from interp.steering.vector import SteeringVector
from interp.trace.trace import Trace

OLD_SPEC = {  # as a trace written with hook names holds its intervention
    "edits": [
        {"site": "blocks.1.attn.hook_z", "op": "scale", "heads": [2], "params": {"factor": 0.0}},
        {"site": "hook_embed", "op": "noise", "positions": [0], "params": {"seed": 3}},
    ]
}
OLD_LABEL = "scale blocks.1.attn.hook_z[heads [2]] + noise hook_embed at 0"


def _as_old(directory):
    summary = json.loads((directory / "summary.json").read_text())
    summary["provenance"]["intervention_spec"] = json.dumps(OLD_SPEC)
    summary["provenance"]["intervention"] = OLD_LABEL
    (directory / "summary.json").write_text(json.dumps(summary))


def test_a_trace_whose_intervention_names_hooks_loads_and_replays_alike(tiny_llama, tmp_path):
    """The old trace replays as the same trace saved today does (the reference); its value
    speaks in sites (its provenance's label stays as it was written)."""
    under = interp.edit("L1H2", "scale", factor=0.0) + interp.edit(
        "embed", "noise", positions=[0], seed=3
    )
    run = interp.generate(tiny_llama, "The moon", max_new_tokens=2, seed=0, intervention=under)
    run.save(tmp_path / "new")
    run.save(tmp_path / "old")
    _as_old(tmp_path / "old")
    new, old = (Trace.load(tmp_path / d, model=tiny_llama) for d in ("new", "old"))
    assert [e.hook for e in old.intervention.edits] == [e.hook for e in new.intervention.edits]
    assert [e.heads for e in old.intervention.edits] == [(2,), None]
    assert old.intervention.label == "scale L1.z[heads [2]] + noise embed at 0"
    assert new.intervention.label == "scale L1H2 + noise embed at 0"
    clean = interp.generate(tiny_llama, "The moon", max_new_tokens=2, seed=0)
    by_old, by_new = (interp.patch(tiny_llama, clean, t, sites=["resid"]) for t in (old, new))
    torch.testing.assert_close(by_old["resid"].effect, by_new["resid"].effect)
    assert set(by_old.under) == {"corrupted"} and not by_old.held_callable


def test_a_steering_vector_whose_record_names_its_hook_loads_at_its_site(tmp_path):
    file = vector_file(tmp_path / "v.safetensors", torch.ones(32), site="blocks.0.hook_resid_pre")
    vector = SteeringVector.load(file)
    assert vector.site == interp.site("L0.resid_pre") and vector.record()["site"] == "L0.resid_pre"


def test_a_patching_result_without_under_or_held_callable_loads(tiny_llama, tmp_path):
    clean = interp.generate(tiny_llama, "The moon", max_new_tokens=2, seed=0)
    result = interp.patch(tiny_llama, clean, interp.edit("embed", "noise", seed=1), sites=["resid"])
    result.save(tmp_path / "p")
    record = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert record["patching"].pop("under") == {"corrupted": "noise embed"}
    record["patching"].pop("held_callable", None)
    (tmp_path / "p" / "summary.json").write_text(json.dumps(record))
    back = Patching.load(tmp_path / "p")
    assert back.under == {} and back.held_callable is False
    assert [str(c) for c, _ in back["resid"].top(3)] == [str(c) for c, _ in result["resid"].top(3)]
