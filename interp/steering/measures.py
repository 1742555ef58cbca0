"""What steering is measured by, per sampled text: the concept (the rate of the user's concept
words among its words, in any case, plural or possessive, or of words matching the user's
patterns; or any callable of the text; per step, the log-probability mass on the concept's
one-token words) and the damage (KL from the unsteered model and the text's log-probability
under it, computed where the texts are scored; repeated n-grams here)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from interp.errors import InvalidSettingError
from interp.models.model import Model

ConceptFn = Callable[[str], float]
REPEAT_N = 3  # the n of the repeated n-grams
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")  # letters, with inner apostrophes


@dataclass(frozen=True)
class ConceptWords:
    """The user's concept words (lower case) and patterns (regular expressions, each matched
    against a whole word, ignoring case), the token ids whose probability mass counts (each
    word's one-token spellings: with and without a leading space, lower and capitalised; not
    the patterns'), and a warning for each word that is not one token (it counts in the rate,
    not in the mass)."""

    words: tuple[str, ...]
    token_ids: tuple[int, ...]
    warnings: tuple[str, ...]
    patterns: tuple[str, ...] = ()

    def matches(self, word: str) -> bool:
        """Whether a word of a text is a form of a concept word or matches a pattern. Forms:
        any case, a possessive ('s, ’s, or the apostrophe after a plural's s) and a plural
        (+s, +es, y -> ies): "Whale's", "waters", "churches", "berries" count for "whale",
        "water", "church", "berry"."""
        wanted = set(self.words)
        if any(form in wanted for form in forms(word)):
            return True
        return any(re.fullmatch(p, word, re.IGNORECASE) for p in self.patterns)

    def rate(self, text: str) -> float:
        """The fraction of the text's words that are concept words (0 for a text of none)."""
        words = _WORD.findall(text)
        if not words:
            return 0.0
        return sum(self.matches(w) for w in words) / len(words)


def forms(word: str) -> list[str]:
    """The lower-case singular forms a word may stand for, the word itself first: its
    possessive removed, then a plural's ending (s, es, ies -> y)."""
    whole = word.lower().replace("’", "'")
    w = whole[:-2] if whole.endswith("'s") else whole.rstrip("'")
    out = [whole, w]
    if w.endswith("ies") and len(w) > 3:
        out.append(w[:-3] + "y")
    if w.endswith("es") and len(w) > 2:
        out.append(w[:-2])
    if w.endswith("s") and len(w) > 1:
        out.append(w[:-1])
    return out


def concept_words(model: Model, words: Sequence[str], patterns: Sequence[str] = ()) -> ConceptWords:
    """The words checked and looked up in the model's vocabulary, and the patterns compiled
    (see `ConceptWords`); words or patterns may be empty, not both."""
    if isinstance(words, str) or not isinstance(words, Sequence):
        raise InvalidSettingError("concept words are a list of words")
    clean = []
    for word in words:
        if not isinstance(word, str) or not word.strip():
            raise InvalidSettingError(f"a concept word is a non-empty text, got {word!r:.40}")
        if len(words_of(word)) != 1 or words_of(word)[0] != word.strip().lower():
            raise InvalidSettingError(f"{word!r:.40} is not one word (letters only)")
        clean.append(word.strip().lower().replace("’", "'"))
    check_patterns(patterns)
    if not clean and not patterns:
        raise InvalidSettingError("no concept words")
    ids: set[int] = set()
    warnings = []
    for word in dict.fromkeys(clean):
        found = []
        for spelling in (f" {word}", word, f" {word.capitalize()}", word.capitalize()):
            tokens = model.encode(spelling, add_special_tokens=False)
            if len(tokens) == 1:
                found.append(tokens[0])
        if found:
            ids.update(found)
        else:
            pieces = model.token_strs(model.encode(f" {word}", add_special_tokens=False))
            warnings.append(
                f"concept word {word!r} is not one token of {model.name} ({pieces}): it counts "
                "in the word rate, not in the probability mass"
            )
    return ConceptWords(
        tuple(dict.fromkeys(clean)),
        tuple(sorted(ids)),
        tuple(warnings),
        tuple(dict.fromkeys(patterns)),
    )


def check_patterns(patterns: Sequence[str]) -> list[str]:
    """Each pattern a non-empty regular expression (what the CLI checks before a model
    loads)."""
    if isinstance(patterns, str) or not isinstance(patterns, Sequence):
        raise InvalidSettingError("concept patterns are a list of regular expressions")
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise InvalidSettingError(f"a concept pattern is a non-empty text, got {pattern!r:.40}")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise InvalidSettingError(
                f"the concept pattern {pattern!r:.40} is not a regular expression ({exc})"
            ) from None
    return list(patterns)


def words_of(text: str) -> list[str]:
    """The text's words, lower case."""
    return [w.lower() for w in _WORD.findall(text)]


def concept_mass(logprobs: Tensor, ids: Sequence[int]) -> Tensor:
    """Per step, the log of the probability on the concept tokens (`[step, vocab]` -> `[step]`;
    -inf with no concept tokens)."""
    if not ids:
        return torch.full(logprobs.shape[:1], -math.inf)
    return logprobs[:, list(ids)].logsumexp(-1)


def repetition(tokens: Sequence[int], n: int = REPEAT_N) -> float:
    """The fraction of the text's n-grams (of tokens) that already occurred earlier in it: 0
    for fresh text, near 1 for a degenerate loop (0 for a text shorter than n)."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    seen: set[tuple[int, ...]] = set()
    repeats = 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams)
