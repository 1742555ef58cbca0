"""The runtime type checker the test suite runs interp under (jaxtyping's import hook, set in
pyproject.toml): beartype, so that every `Float[Tensor, "pos d_model"]` annotation is checked
against the tensors that really pass, dimension names included.

The mode, method, engine and steering `Literal` types are widened to `str` here: mypy checks them
statically, and interp validates them at run time with its own clear errors, which the tests
exercise with bad values on purpose. This module must not import interp (it is imported
while interp's modules are being instrumented)."""

from typing import Literal

from beartype import BeartypeConf, FrozenDict, beartype

_WIDENED = {
    Literal["mean", "zero", "resample"]: str,
    Literal["zero", "scale", "add", "project", "set", "noise", "mean", "resample", "patch"]: str,
    Literal["auto", "prompt", "all"]: str,
    Literal["heads", "resid", "attn-out", "mlp-out"]: str,
    Literal["heads", "heads-by-pos", "resid", "attn-out", "mlp-out"]: str,
    Literal["denoise", "noise"]: str,
    Literal["prompt", "all"]: str,
    Literal["exact", "triage"]: str,
    Literal["auto", "direct", "bridge"]: str,
    Literal["add", "project", "set"]: str,
    Literal["all", "prompt", "generated"]: str,
    Literal["vector", "resid"]: str,
    Literal["diffmean", "caa"]: str,
    Literal["last", "mean"]: str,
    Literal["words", "mass"]: str,
}
# is_pep484_tower: an int is a float, as PEP 484 and mypy have it
CONF = BeartypeConf(hint_overrides=FrozenDict(_WIDENED), is_pep484_tower=True)


def checker(fn, *args, **kwargs):
    return beartype(fn, *args, conf=CONF, **kwargs)
