"""Inputs the tests make up: a random dictionary, a pickle that runs code when loaded, a tiny
corpus in place of the real one, a steering-vector file with any record."""

import json
from pathlib import Path

import torch
from safetensors.torch import save

from interp.dictionaries.dictionary import Dictionary
from interp.features import harvest


def random_dictionary(model, hook, width=64, k=6, seed=0, activation="topk"):
    g = torch.Generator().manual_seed(seed)
    d = model.d_model
    return Dictionary(
        torch.randn(d, width, generator=g) / d**0.5, torch.randn(width, generator=g) * 0.1,
        torch.randn(width, d, generator=g) / d**0.5, torch.randn(d, generator=g) * 0.1,
        activation, hook, k=k if activation == "topk" else None,
    )  # fmt: skip


class Planted:
    """A pickle that runs code when unpickled: it creates `path`."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def tiny_corpus(monkeypatch):
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 300, (6000,), generator=g)
    monkeypatch.setattr(harvest, "corpus_tokens", lambda model, split: tokens)


def vector_file(path, vector, **record):
    base = {"layer": 0, "model_name": "tiny-llama", "method": "diffmean", "resid_norm": 2.0}
    meta = {"interp_steering_vector": json.dumps({**base, **record})}
    path.write_bytes(save({"vector": vector}, metadata=meta))
    return path
