"""Sparse dictionaries (SAEs and transcoders) in SAELens's on-disk format: loading and checking
them against a model, encoding and decoding, training TopK SAEs on CPU over a corpus of
Debian's English documentation, SAEBench's core evaluation, a trace's features (activations,
top contexts, logit effects, direct logit attribution) and feature edits.

Names are imported lazily: importing one part does not import training or the report."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Dictionary": "interp.dictionaries.dictionary",
    "DictionaryEvaluation": "interp.features.evaluate",
    "evaluate_dictionary": "interp.features.evaluate",
    "load_dictionary": "interp.dictionaries.files",
    "save_dictionary": "interp.dictionaries.files",
    "train_dictionary": "interp.features.train",
    "FeatureContexts": "interp.features.contexts",
    "feature_contexts": "interp.features.contexts",
    "trace_features": "interp.features.reading",
    "FeatureAttribution": "interp.features.attribution",
    "feature_attribution": "interp.features.attribution",
    "feature_edit": "interp.features.edits",
    "feature_samples": "interp.features.edits",
    "FeatureReadout": "interp.features.readout",
    "cached_dictionaries": "interp.features.catalog",
    "read_features": "interp.features.readout",
}
__all__ = [
    "Dictionary",
    "DictionaryEvaluation",
    "FeatureAttribution",
    "FeatureContexts",
    "FeatureReadout",
    "cached_dictionaries",
    "evaluate_dictionary",
    "feature_attribution",
    "feature_contexts",
    "feature_edit",
    "feature_samples",
    "load_dictionary",
    "read_features",
    "save_dictionary",
    "trace_features",
    "train_dictionary",
]

if TYPE_CHECKING:
    from interp.dictionaries.dictionary import Dictionary
    from interp.dictionaries.files import load_dictionary, save_dictionary
    from interp.features.attribution import FeatureAttribution, feature_attribution
    from interp.features.catalog import cached_dictionaries
    from interp.features.contexts import FeatureContexts, feature_contexts
    from interp.features.edits import feature_edit, feature_samples
    from interp.features.evaluate import DictionaryEvaluation, evaluate_dictionary
    from interp.features.reading import trace_features
    from interp.features.readout import FeatureReadout, read_features
    from interp.features.train import train_dictionary


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'interp.features' has no attribute {name!r}")
