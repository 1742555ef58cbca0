"""The tree's shape: no import cycle (lazy imports included), modules of a readable size, and
experiments and benchmarks that use only the public API."""

import ast
import re
from pathlib import Path

import pytest

import interp

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "interp"
MAX_LINES = 350
# Public modules: the package's own `__all__` and the curated exports of these subpackages.
PUBLIC = (
    "interp",
    "interp.report",
    "interp.errors",
    "interp.analysis",
    "interp.interventions",
    "interp.edits",
    "interp.features",
    "interp.steering",
    "interp.circuits",
    "interp.cli.program",
    "interp.files.store",
    "interp.cli.workflow",
    "interp.models.provenance",
)
PUBLIC_EXTRA = {
    "interp.models": {"cache_root"},  # the benchmark's plain HF reference load
    "interp.features.harvest": {"corpus_tokens", "windows", "activations"},  # throughput
    "interp.features.topk": {"TopKTrainer", "TrainSettings"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(tree: ast.AST) -> list[tuple[str, list[str], bool]]:
    """(module, imported names, whether the import runs) of every import statement, inside
    functions and under `if TYPE_CHECKING:` too (a type-only import is still an arrow between
    two modules, though it never runs its package's `__init__`)."""
    found: list[tuple[str, list[str], bool]] = []

    def walk(node: ast.AST, runs: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((alias.name, [], runs) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, [alias.name for alias in child.names], runs))
            walk(child, runs and not _type_checking_only(child))

    walk(tree, True)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules it imports. An import that runs also runs the `__init__` of every
    package above its target (`interp.models.model` runs `interp.models` first), except the
    importer's own packages, which are already running."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        edges = graph.setdefault(name, set())
        own = set(_packages(name)) | {name}
        for module, names, runs in imports(ast.parse(path.read_text())):
            if not module.startswith("interp"):
                continue
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES] or [module]
            edges.update(targets)
            if runs:
                edges.update({p for t in targets for p in _packages(t) if p not in own})
        edges.discard(name)
    return graph


def _packages(module: str) -> list[str]:
    """The packages whose `__init__` runs before `module` does (below `interp` itself, whose
    `__init__` imports lazily)."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts)) if ".".join(parts[:i]) in MODULES]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert "interp.report.notebook" in graph["interp.report.display"]  # lazy imports count
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_results_know_nothing_of_rendering():
    graph = import_graph()
    for name in graph:
        if name.startswith(("interp.analysis", "interp.interventions", "interp.trace.trace")):
            assert not any(t.startswith("interp.report") for t in graph[name]), name


# The stages, lowest first: a module imports only from its own package or a lower floor, so
# the tree reads in the order data flows (design.md). Packages on one floor are independent.
FLOORS = (
    {"errors", "stats"},
    {"inputs"},
    {"files"},
    {"models"},
    {"dictionaries"},
    {"edits"},
    {"trace"},
    {"executors"},
    {"generation"},
    {"interventions", "analysis"},
    {"features", "steering", "circuits"},
    {"report"},
    {"cli"},
)
FLOOR = {package: i for i, floor in enumerate(FLOORS) for package in floor}


def _stage(module: str) -> str:
    return module.split(".")[1]


def climbs(graph: dict[str, set[str]]) -> list[str]:
    """The imports that reach a package on the importer's own floor or above."""
    return [
        f"{a} -> {b}"
        for a, targets in graph.items()
        if a != "interp"
        for b in sorted(targets)
        if b != "interp" and _stage(a) != _stage(b) and FLOOR[_stage(b)] >= FLOOR[_stage(a)]
    ]


def test_imports_never_climb_back_up_a_floor():
    graph = import_graph()
    assert {_stage(m) for m in graph if m != "interp"} == set(FLOOR)
    assert climbs(graph) == []
    fake = {"interp.trace.trace": {"interp.generation.generate", "interp.models.hooks"}}
    assert climbs(fake) == ["interp.trace.trace -> interp.generation.generate"]


def test_the_root_holds_at_most_five_modules():
    assert len(list(PACKAGE.glob("*.py"))) <= 5


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_readable(name):
    n = len(MODULES[name].read_text().splitlines())
    assert n <= MAX_LINES, f"{name} has {n} lines; split it by concern (DEVELOPERS.md)"


def _public_names(module: str) -> set[str]:
    import importlib

    mod = importlib.import_module(module)
    return set(getattr(mod, "__all__", ())) | PUBLIC_EXTRA.get(module, set())


@pytest.mark.parametrize(
    "path", sorted([*ROOT.glob("experiments/*.py"), *ROOT.glob("benchmarks/*.py")]), ids=str
)
def test_experiments_and_benchmarks_use_only_the_public_api(path):
    for module, names, _ in imports(ast.parse(path.read_text())):
        if not module.startswith("interp"):
            continue
        if not names:  # `import interp`
            assert module == "interp", f"{path.name} imports {module}"
            continue
        assert module in PUBLIC or module in PUBLIC_EXTRA, f"{path.name} imports {module}"
        assert set(names) <= _public_names(module), f"{path.name}: {module} {names}"


def test_the_public_api_resolves():
    for module in PUBLIC:
        for name in _public_names(module):
            assert getattr(__import__(module, fromlist=[name]), name) is not None
    assert interp.__all__


def test_shapes_are_checked_while_the_tests_run():
    """jaxtyping's import hook (pyproject.toml) instruments interp: a tensor of the wrong
    rank for a `Float[Tensor, "layer head"]` parameter is refused, not silently used."""
    import torch
    from jaxtyping import TypeCheckError

    from interp.models.heads import rank_heads

    assert rank_heads(torch.ones(2, 3), 1) == [((0, 0), 1.0)]
    with pytest.raises(TypeCheckError):
        rank_heads(torch.ones(6), 1)


_HOOK_STRING = re.compile(
    r"(^|[.{])hook_(embed|pos_embed|resid_\w+|attn_out|mlp_out|z|q|k|v|pattern|result|scale|"
    r"in|out|post|pre|attn_scores|[qkv]_input)\b|blocks\.(\d|\{|<|L\b)"
)


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string constant (f-strings' text parts too) that is not a docstring."""
    docstrings = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_hook_names_are_spelled_in_one_module():
    """A hook-name string (`blocks.5.hook_attn_out`, `hook_embed`) appears only in
    interp/models/hooks.py; everything else names hooks through it, or a site's spelling."""
    found = []
    for path in sorted((ROOT / "interp").rglob("*.py")):
        if path.name == "hooks.py" and path.parent.name == "models":
            continue
        for line, text in _strings(ast.parse(path.read_text())):
            if _HOOK_STRING.search(text):
                found.append(f"{path.relative_to(ROOT)}:{line}: {text[:60]!r}")
    assert found == [], "\n".join(found)
