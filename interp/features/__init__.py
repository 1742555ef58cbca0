"""Sparse dictionaries (SAEs and transcoders) in SAELens's on-disk format: loading and checking
them against a model, encoding and decoding, training TopK SAEs on CPU over a corpus of
Debian's English documentation, and SAEBench's core evaluation."""

from interp.features.dictionary import Dictionary
from interp.features.evaluate import DictionaryEvaluation, evaluate_dictionary
from interp.features.files import load_dictionary, save_dictionary
from interp.features.train import train_dictionary

__all__ = [
    "Dictionary",
    "DictionaryEvaluation",
    "evaluate_dictionary",
    "load_dictionary",
    "save_dictionary",
    "train_dictionary",
]
