"""Models: a name, a folder or an in-memory Hugging Face model -> a loaded `Model` (the
TransformerLens bridge, its tokenizer, its provenance), with the load-time guards run.

- `registry`: names, aliases and the embedded models' packages;
- `load`: `load_model`, the one entry point;
- `embedded`, `cache`, `checkpoint`, `tokenizer`: the embedded models' GGUF, converted once
  and cached as safetensors, read back fast;
- `hub`: Hugging Face Hub models, local cache first;
- `local`: a Hugging Face model folder named by a path (`./dir`, `/dir`, `~/dir`);
- `model`: the `Model` type; `guards`: the KV-cache and direct-engine checks; `wrap`: an
  in-memory Hugging Face model -> a `Model`, guards run, engine handed over;


This package owns every loading error message.
"""

from interp.models.cache import CACHE_ENV, cache_root
from interp.models.checkpoint import read_cached_model
from interp.models.guards import check_kv_cache, check_model
from interp.models.load import load_model
from interp.models.model import Model, validate_device
from interp.models.registry import DEFAULT_MODEL, EMBEDDED, EmbeddedSpec, canonical_name
from interp.models.wrap import from_hf

__all__ = [
    "CACHE_ENV",
    "DEFAULT_MODEL",
    "EMBEDDED",
    "EmbeddedSpec",
    "Model",
    "cache_root",
    "canonical_name",
    "check_kv_cache",
    "check_model",
    "from_hf",
    "load_model",
    "read_cached_model",
    "validate_device",
]
