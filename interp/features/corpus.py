"""The English corpus dictionaries are trained and evaluated on: Debian's documentation
packages (installed by `make corpus`), converted to plain text, deduplicated by paragraph and
split by document into a training part and a held-out part that is never trained on.

| source | package | files | licence |
|---|---|---|---|
| the Python 3.11 documentation | python3-doc | `_sources/**/*.rst.txt` | PSF-2.0 |
| Debian's handbook | debian-handbook | `html/en-US/*.html` | CC-BY-SA-3.0 or GPL-2.0+ |
| the Linux kernel's documentation | linux-doc | `Documentation/**/*.{rst,txt}.gz`* | GPL-2.0 |

* without `translations/`.
"""

from __future__ import annotations

import gzip
import hashlib
import html.parser
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.errors import InterpError
from interp.files import atomic
from interp.models.cache import cache_root

HELD_OUT_EVERY = 20  # one document in 20 is held out
CORPUS_FORMAT = 1


class CorpusMissingError(InterpError):
    """The documentation packages are not installed."""


@dataclass(frozen=True)
class Source:
    name: str
    package: str
    root: Path
    patterns: tuple[str, ...]
    licence: str
    convert: Callable[[str], str]
    exclude: tuple[str, ...] = ()  # leading path parts left out (translations)


def rst_text(text: str) -> str:
    """reStructuredText as plain prose: directives, comments, heading underlines and
    option lines dropped, inline roles and literals reduced to their text."""
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(".. ") or re.fullmatch(r"([=\-~^\"'`#*+:.])\1{2,}", stripped):
            continue
        if re.match(r"\s+:\w[\w-]*:", line):  # a directive's option
            continue
        line = re.sub(r":[\w:.-]+:`([^`<]*?)(?:\s*<[^>]*>)?`", r"\1", line)  # :role:`text`
        line = re.sub(r"`([^`<]+?)\s*<[^>]+>`_+", r"\1", line)  # `text <url>`_
        line = line.replace("``", "").replace("**", "")
        out.append(line)
    return "\n".join(out)


class _HTMLText(html.parser.HTMLParser):
    SKIP = {"script", "style", "head", "nav", "title"}
    BLOCK = {"p", "div", "li", "h1", "h2", "h3", "h4", "pre", "tr", "dt", "dd", "br", "table"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_text(text: str) -> str:
    """An HTML page's visible text, one paragraph per block element."""
    parser = _HTMLText()
    parser.feed(text)
    return "".join(parser.parts)


SOURCES = (
    Source(
        "python-docs",
        "python3-doc",
        Path("/usr/share/doc/python3.11/html/_sources"),
        ("**/*.rst.txt",),
        "PSF-2.0",
        rst_text,
    ),
    Source(
        "debian-handbook",
        "debian-handbook",
        Path("/usr/share/doc/debian-handbook/html/en-US"),
        ("*.html",),
        "CC-BY-SA-3.0 or GPL-2.0+",
        html_text,
    ),
    Source(
        "linux-docs",
        "linux-doc",
        Path("/usr/share/doc/linux-doc/Documentation"),
        ("**/*.rst.gz", "**/*.txt.gz"),
        "GPL-2.0",
        rst_text,
        ("translations",),
    ),
)


def documents(sources: tuple[Source, ...] = SOURCES) -> Iterator[tuple[str, str, str]]:
    """(source name, path within it, plain text) for every file, in a fixed order."""
    for source in sources:
        if not source.root.is_dir():
            raise CorpusMissingError(
                f"{source.root} is missing: install the {source.package} package "
                "(`make corpus` installs every source)"
            )
        files = sorted(
            p
            for p in {p for pattern in source.patterns for p in source.root.glob(pattern)}
            if p.relative_to(source.root).parts[0] not in source.exclude
        )
        for path in files:
            raw = path.read_bytes()
            if path.suffix == ".gz":
                raw = gzip.decompress(raw)
            yield (
                source.name,
                str(path.relative_to(source.root)),
                source.convert(raw.decode("utf-8", errors="replace")),
            )


def paragraphs(text: str) -> list[str]:
    """A text's paragraphs (split at blank lines), whitespace collapsed, empty ones dropped."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        para = " ".join(block.split())
        if len(para) >= 20:
            out.append(para)
    return out


def corpus_dir() -> Path:
    return cache_root() / "corpus"


def build(sources: tuple[Source, ...] = SOURCES, out: Path | None = None) -> Path:
    """Convert, deduplicate and split the sources into `out` (default the cache's corpus/):
    `train.jsonl` and `heldout.jsonl` (one document a line: source, path, text) and
    `corpus.json` (sources, licences, counts). A document is held out when the hash of its
    source and path says so, so the split does not depend on what else is installed."""
    out = corpus_dir() if out is None else out
    seen: set[bytes] = set()
    counts: dict[str, Any] = {
        s.name: {"files": 0, "chars": 0, "dropped_paragraphs": 0} for s in sources
    }
    with atomic.atomic_dir(out) as tmp:
        files = {
            "train": (tmp / "train.jsonl").open("w"),
            "heldout": (tmp / "heldout.jsonl").open("w"),
        }
        try:
            for name, rel, text in documents(sources):
                kept = []
                for para in paragraphs(text):
                    key = hashlib.blake2b(para.lower().encode(), digest_size=16).digest()
                    if key in seen:
                        counts[name]["dropped_paragraphs"] += 1
                        continue
                    seen.add(key)
                    kept.append(para)
                if not kept:
                    continue
                body = "\n\n".join(kept)
                split = "heldout" if held_out(name, rel) else "train"
                files[split].write(json.dumps({"source": name, "path": rel, "text": body}) + "\n")
                counts[name]["files"] += 1
                counts[name]["chars"] += len(body)
        finally:
            for fh in files.values():
                fh.close()
        record = {
            "format": CORPUS_FORMAT,
            "sources": [
                {
                    "name": s.name,
                    "package": s.package,
                    "root": str(s.root),
                    "licence": s.licence,
                    **counts[s.name],
                }
                for s in sources
            ],
            "held_out": f"one document in {HELD_OUT_EVERY}, by the hash of its source and path",
            "deduplicated": "by paragraph, case-insensitively, across every source",
        }
        (tmp / "corpus.json").write_text(json.dumps(record, indent=2))
    return out


def held_out(source: str, path: str) -> bool:
    digest = hashlib.sha256(f"{source}/{path}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % HELD_OUT_EVERY == 0


def record(out: Path | None = None) -> dict[str, Any]:
    """The corpus's corpus.json: its sources, licences and counts."""
    out = corpus_dir() if out is None else out
    if not (out / "corpus.json").exists():
        build(out=out)
    return dict(json.loads((out / "corpus.json").read_text()))


def load(split: str, out: Path | None = None) -> Iterator[str]:
    """The texts of one split ("train" or "heldout"), building the corpus first if needed."""
    out = corpus_dir() if out is None else out
    if not (out / "corpus.json").exists():
        build(out=out)
    with (out / f"{split}.jsonl").open() as fh:
        for line in fh:
            yield json.loads(line)["text"]
