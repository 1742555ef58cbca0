"""What steering is measured by, per sampled text: the concept (the rate of the user's concept
words among its words, or any callable of the text; per step, the log-probability mass on the
concept's one-token words) and the damage (KL from the unsteered model and the text's
log-probability under it, computed where the texts are scored; repeated n-grams here)."""

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
    """The user's concept words (lower case), the token ids whose probability mass counts
    (each one-token spelling: with and without a leading space, lower and capitalised), and a
    warning for each word that is not one token (it counts in the rate, not in the mass)."""

    words: tuple[str, ...]
    token_ids: tuple[int, ...]
    warnings: tuple[str, ...]

    def rate(self, text: str) -> float:
        """The fraction of the text's words that are concept words (0 for a text of none)."""
        words = words_of(text)
        if not words:
            return 0.0
        wanted = set(self.words)
        return sum(w in wanted for w in words) / len(words)


def concept_words(model: Model, words: Sequence[str]) -> ConceptWords:
    """The words checked and looked up in the model's vocabulary (see `ConceptWords`)."""
    if isinstance(words, str) or not isinstance(words, Sequence):
        raise InvalidSettingError("concept words are a list of words")
    clean = []
    for word in words:
        if not isinstance(word, str) or not word.strip():
            raise InvalidSettingError(f"a concept word is a non-empty text, got {word!r:.40}")
        if len(words_of(word)) != 1 or words_of(word)[0] != word.strip().lower():
            raise InvalidSettingError(f"{word!r:.40} is not one word (letters only)")
        clean.append(word.strip().lower())
    if not clean:
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
    return ConceptWords(tuple(dict.fromkeys(clean)), tuple(sorted(ids)), tuple(warnings))


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
