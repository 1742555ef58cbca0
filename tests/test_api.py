"""The public API: a short list, every name importable, lazily (no torch at import)."""

import dataclasses
import subprocess
import sys

import interp


def test_all_names_resolve_and_match_the_export_table():
    assert sorted(interp.__all__) == sorted(interp._EXPORTS)
    for name in interp.__all__:
        assert getattr(interp, name) is not None, name


def test_importing_interp_does_not_import_torch():
    code = "import sys, interp; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _docs_hooks():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "docs" / "hooks.py"
    spec = importlib.util.spec_from_file_location("docs_hooks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path.parent / "reference.md"


def test_every_public_name_has_a_docstring_and_a_reference_entry(monkeypatch):
    hooks, reference = _docs_hooks()
    assert hooks.public_name_problems(reference.read_text()) == []
    # and the check can fail: a name dropped from the reference, a name without a docstring
    text = reference.read_text().replace("::: interp.patch\n", "")
    assert hooks.public_name_problems(text) == ["interp.patch is missing from docs/reference.md"]

    @dataclasses.dataclass
    class Undocumented:  # a dataclass's generated signature is no docstring
        x: int

    monkeypatch.setattr(interp, "Undocumented", Undocumented, raising=False)
    monkeypatch.setattr(interp, "__all__", [*interp.__all__, "Undocumented"])
    assert hooks.public_name_problems(reference.read_text()) == [
        "interp.Undocumented has no docstring",
        "interp.Undocumented is missing from docs/reference.md",
    ]


def test_the_api_is_the_documented_list_without_plumbing_or_synonyms():
    plumbing = {"freeze_imports", "configure_output", "check_output_dir", "library_versions"}
    synonyms = {"ablate_samples", "ablation_effect", "ablate_into", "analyze_into", "sweep_into",
                "make_ablation", "make_intervention", "Ablation"}  # fmt: skip
    assert not (plumbing | synonyms) & set(interp.__all__)
    results = {"Analysis", "SetAnalysis", "LogitLensResult", "AttentionResult", "HeadRoles",
               "AttributionResult", "AblationReport", "PairedSamples", "SweepResult",
               "Patching", "Evaluation", "SteeringEval", "Dictionary"}  # fmt: skip
    assert results <= set(interp.__all__)


def test_a_name_taken_off_the_top_level_says_where_it_went():
    import pytest

    for name, where in [("freeze_imports", "interp.program.freeze_imports"),
                        ("check_output_dir", "interp.store.check_output_dir"),
                        ("ablate_samples", "samples=N"),
                        ("ablate_into", "interp.workflow.ablate_into")]:  # fmt: skip
        with pytest.raises(AttributeError, match=where.replace(".", r"\.")):
            getattr(interp, name)
    assert interp.program.freeze_imports is not None  # the submodules are reached lazily
    assert interp.store.check_output_dir is not None


def test_the_type_checking_imports_are_exactly_the_export_table():
    """The public names are listed once (`_EXPORTS`); the imports mypy and the API reference
    read must name each of them, from its module, as an explicit re-export, and nothing else."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(interp.__file__).read_text())
    table = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["_EXPORTS"]
    )
    assert table == interp._EXPORTS
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    imported: dict[str, str] = {}
    for statement in block.body:
        assert isinstance(statement, ast.ImportFrom), ast.unparse(statement)
        for alias in statement.names:
            assert alias.asname == alias.name, f"{alias.name} is not re-exported (`as` itself)"
            assert alias.name not in imported, f"{alias.name} is imported twice"
            # a submodule (`from interp import metrics`) is its own module's path
            submodule = f"{statement.module}.{alias.name}"
            imported[alias.name] = (
                submodule if submodule == table.get(alias.name) else statement.module
            )
    assert imported == table
    assert interp.__all__ == sorted(table)


def test_parse_label_left_the_top_level_and_says_where_it_went():
    import pytest

    from interp.models.heads import Head, parse_label

    assert "parse_label" not in interp.__all__
    with pytest.raises(AttributeError, match=r"interp\.models\.heads\.parse_label"):
        interp.parse_label  # noqa: B018
    assert parse_label("L23H3") == Head(23, 3)
