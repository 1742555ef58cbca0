"""Saved tokenizers made to load on transformers' fast path."""

from __future__ import annotations

import json
from pathlib import Path


def record_added_tokens(directory: Path) -> None:
    """Copy tokenizer.json's added tokens into tokenizer_config.json as `added_tokens_decoder`.

    Without that key transformers takes a legacy path on every load that parses the whole
    tokenizer.json in Python just to read its added tokens, before the Rust tokenizer parses
    it again (and interp loads a tokenizer twice: its own and TransformerLens's). The entries
    are the ones that path would build; the tests check the result against the tokenizer read
    straight from the GGUF.
    """
    config_path, tokenizer_path = directory / "tokenizer_config.json", directory / "tokenizer.json"
    if not (config_path.exists() and tokenizer_path.exists()):
        return  # not a `tokenizers` tokenizer: nothing to record
    config = json.loads(config_path.read_text())
    if "added_tokens_decoder" in config:
        return
    added = json.loads(tokenizer_path.read_text(encoding="utf-8")).get("added_tokens", [])
    config["added_tokens_decoder"] = {
        str(token["id"]): {key: value for key, value in token.items() if key != "id"}
        for token in added
    }
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
