"""What every benchmark script does with its result: print it, and save it where asked."""

from __future__ import annotations

import json
from pathlib import Path


def emit(result: dict, path: Path | None) -> int:
    text = json.dumps(result, indent=2)
    print(text)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0
