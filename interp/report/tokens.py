"""How a token is shown in a report, a figure or a notebook: whitespace and control characters
made visible, so that no token is ever a blank cell."""

from __future__ import annotations

SPACE, NEWLINE, TAB, EMPTY = "\u23b5", "\u21b5", "\u21e5", "\u2205"  # ⎵ ↵ ⇥ ∅
FIGURE_SPACE = "\u2423"  # ␣
_SHOWN = {" ": SPACE, "\n": NEWLINE, "\t": TAB, "\r": "\\r"}


def visible(token: str) -> str:
    """`' the'` -> `'⎵the'`; a newline `↵`, a tab `⇥`, another control or invisible character
    its escape (`\\x07`, `\\xa0`), the empty string `∅`. Special tokens (`<bos>`,
    `<start_of_image>`) decode to their names and stay as they are."""
    if not token:
        return EMPTY
    return "".join(_SHOWN.get(c, c if c.isprintable() else _escape(c)) for c in token)


def visible_in_text(token: str) -> str:
    """A token inside running text: as it is, except that a token of whitespace alone shows
    its marks (a newline keeps its line break after the mark) and an empty token `∅`."""
    if token and not token.isspace():
        return token
    return visible(token) + "\n" * token.count("\n")


def short(token: str, limit: int = 12) -> str:
    """`visible`, cut to `limit` characters with an ellipsis, for figure tick labels (with
    `␣` for a space: matplotlib's DejaVu fonts have no `⎵`)."""
    text = visible(token).replace(SPACE, FIGURE_SPACE)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _escape(c: str) -> str:
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else repr(c)
