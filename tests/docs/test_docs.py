"""The documentation cannot go stale: every Python and shell block of the README and of each
page under docs/ runs here, page by page in a fresh directory, on the embedded model; the site
builds with `mkdocs build --strict` (broken links, missing references, public names without a
docstring or missing from the API reference all fail it)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
GUIDES = sorted((ROOT / "docs" / "guides").glob("*.md"))
# a fenced block, with the comment before it that names a smaller setting for the suite
BLOCK = re.compile(
    r"(?:^<!-- test: (?P<subs>.*?) -->\n)?^```(?P<lang>\w*)[^\n]*\n(?P<code>.*?)^```", re.S | re.M
)
QUOTED = r'"((?:[^"\\]|\\.)*)"'
SUB = re.compile(rf"{QUOTED}\s*->\s*{QUOTED}")


def blocks(page: Path, replace: bool = True) -> list[tuple[str, str, int]]:
    """The page's runnable blocks: (language, code with the suite's replacements, line)."""
    text = page.read_text()
    out = []
    for m in BLOCK.finditer(text):
        if m["lang"] not in ("python", "sh"):
            continue
        code = m["code"]
        for old, new in SUB.findall(m["subs"] or "") if replace else []:
            old, new = json.loads(f'"{old}"'), json.loads(f'"{new}"')
            assert old in code, f"{page.name}: the test replacement {old!r} matches nothing"
            code = code.replace(old, new)
        out.append((m["lang"], code, text[: m.start("code")].count("\n") + 1))
    return out


def commands(code: str) -> list[str]:
    """A shell block's commands, continuation lines joined, comments and blanks left out."""
    joined = re.sub(r"\\\n\s*", " ", code)
    return [line.split(" #")[0].strip() for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]  # fmt: skip


def run_page(page: Path) -> None:
    """The page's blocks in order: Python in one module of its own (as a script would run
    them), each `interp` command through the CLI's entry point; `make` lines are the set-up,
    which CI runs on a fresh machine."""
    from interp.cli.app import main

    module = types.ModuleType("docs_page")  # a real module: dataclasses look their own up
    sys.modules[module.__name__] = module
    try:
        for lang, code, line in blocks(page):
            where = f"{page.relative_to(ROOT)}:{line}"
            start = time.perf_counter()
            if lang == "python":
                exec(compile(code, where, "exec"), module.__dict__)  # noqa: S102 - the docs' own
            for command in commands(code) if lang == "sh" else []:
                argv = shlex.split(command)
                if argv[0] == "make":
                    continue
                assert argv[0] == "interp", f"{where}: a shell block runs only interp: {command}"
                assert main(argv[1:]) == 0, f"{where}: {command}"
                print(f"{where}: {command[:60]} {time.perf_counter() - start:.1f} s")
                start = time.perf_counter()
            if lang == "python":
                print(f"{where}: python {time.perf_counter() - start:.1f} s")
    finally:
        del sys.modules[module.__name__]


RUNNABLE = [p for p in PAGES if blocks(p, replace=False)]  # a stale replacement fails its page


def test_every_guide_has_a_runnable_example():
    assert GUIDES and all(blocks(g, replace=False) for g in GUIDES)
    assert ROOT / "README.md" in RUNNABLE


@pytest.mark.real_model
@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_page_runs(page, tmp_path, monkeypatch, smollm, capsys):
    """Loading SmolLM2 (the pages' and their commands' own calls) gives the suite's copy."""
    import interp.models
    import interp.models.load

    real = interp.models.load.load_model

    def load_model(name, *args, **kwargs):
        return smollm if name == "smollm2-135m" else real(name, *args, **kwargs)

    monkeypatch.setattr(interp.models.load, "load_model", load_model)
    monkeypatch.setattr(interp.models, "load_model", load_model)
    (tmp_path / "experiments").symlink_to(ROOT / "experiments")  # the data the guides use
    monkeypatch.chdir(tmp_path)
    run_page(page)


def build(root: Path, out: Path) -> subprocess.CompletedProcess:
    """`mkdocs build --strict` of the site at `root` (not quiet: `-q` hides the warnings that
    strict mode counts, and lets them pass)."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=root, capture_output=True, text=True, env=env,
    )  # fmt: skip


@pytest.mark.slow  # make check builds the site strictly too
def test_the_site_builds_strictly(tmp_path):
    done = build(ROOT, tmp_path / "site")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "index.html").exists()
    assert "interp generate" in (tmp_path / "site" / "guides" / "cli" / "index.html").read_text()


@pytest.mark.slow  # a whole site build each
@pytest.mark.parametrize(
    "page, old, new, said",
    [
        ("guides/models.md", "# Models", "# Models\n\nSee [nowhere](nope.md).", "nope.md"),
        ("guides/models.md", "# Models", "# Models\n\nSee [it][interp.nothing].", "interp.nothing"),
        ("reference.md", "::: interp.patch\n", "", "interp.patch is missing"),
    ],
    ids=["broken link", "missing reference", "public name left out"],
)
def test_the_strict_build_fails_on(page, old, new, said, tmp_path):
    root = tmp_path / "repo"
    for part in ("docs", "experiments"):
        shutil.copytree(ROOT / part, root / part, ignore=shutil.ignore_patterns("reports"))
    for part in ("mkdocs.yml", "DEVELOPERS.md", "benchmarks/README.md"):
        (root / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / part, root / part)
    target = root / "docs" / page
    text = target.read_text()
    assert old in text
    target.write_text(text.replace(old, new, 1))
    done = build(root, tmp_path / "site")
    assert done.returncode != 0 and said in done.stderr, done.stderr[-2000:]
