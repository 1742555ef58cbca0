"""Sparse dictionaries as values and files: `Dictionary` (SAEs and transcoders, encoding and
decoding) and SAELens's on-disk format (Gemma Scope 2's read too). Below both the edits (a
feature edit holds a dictionary) and `interp.features`, which trains, evaluates and reads them."""

from interp.dictionaries.dictionary import Dictionary
from interp.dictionaries.files import load_dictionary, save_dictionary

__all__ = ["Dictionary", "load_dictionary", "save_dictionary"]
