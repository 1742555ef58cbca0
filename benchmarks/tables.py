"""Write the tables of benchmarks/README.md from benchmarks/results/*.json (`make bench` runs
it after the benchmarks). Each table sits between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`
in that file, NAME being the results file's stem; everything else is left as it is."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def table(result: dict) -> str:
    t = result["table"]
    columns = t.get("columns", ["measure", "result"])
    lines = [f"Latest run: {t['settings']}.", ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in t["rows"]]
    return "\n".join(lines)


def render(readme: str, results: dict[str, dict]) -> str:
    for name, result in sorted(results.items()):
        pattern = re.compile(rf"(<!-- bench:{name} -->\n)(?:.*?\n)?(<!-- /bench:{name} -->)", re.S)
        if not pattern.search(readme):
            raise SystemExit(f"benchmarks/README.md has no <!-- bench:{name} --> section")
        body = table(result)
        readme = pattern.sub(lambda m, body=body: m[1] + body + "\n" + m[2], readme)
    return readme


def main() -> int:
    results = {
        path.stem: json.loads(path.read_text())
        for path in sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    }
    readme = ROOT / "benchmarks" / "README.md"
    readme.write_text(render(readme.read_text(), results))
    print(f"benchmarks/README.md: {len(results)} benchmark tables written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
