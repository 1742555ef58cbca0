"""The one CPU kernel interp picks itself: oneDNN's fp32 inner product for products with the
unembedding, where it beats the default (MKL) matmul on this project's machines (see
DEVELOPERS.md and benchmarks/). For the model's other layers MKL is as fast or faster, so
they are left alone.

`torch.ops.mkldnn._linear_pointwise` is the op torch's own compiler emits for CPU linear
layers; torch is pinned exactly, and every caller falls back to a plain matmul where it is
missing (a torch built without oneDNN) or off the CPU.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor, nn


@functools.cache
def onednn_linear() -> Callable[..., Tensor] | None:
    """oneDNN's fp32 linear op `(x, weight[out, in], bias, "none", [], "")`, or None where this
    torch build lacks it."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


class UnembeddingLinear(nn.Linear):
    """An `nn.Linear` (the same parameters, not copies) that runs through oneDNN for fp32
    inputs on the CPU, and as a plain `nn.Linear` anywhere else."""

    @classmethod
    def wrapping(cls, linear: nn.Module) -> nn.Module:
        """A module over `linear`'s own parameters where oneDNN is there, else `linear`."""
        if onednn_linear() is None or type(linear) is not nn.Linear:
            return linear
        new = cls(linear.in_features, linear.out_features, bias=False, device="meta")
        new.weight = linear.weight  # the same Parameter: tied weights stay tied
        new.bias = linear.bias
        return new

    def forward(self, x: Tensor) -> Tensor:
        kernel = onednn_linear()
        if kernel is None or x.device.type != "cpu" or x.dtype != torch.float32:
            return super().forward(x)
        if self.weight.dtype != torch.float32 or not self.weight.is_contiguous():
            return super().forward(x)
        rows = x.reshape(-1, x.shape[-1]).contiguous()
        out = kernel(rows, self.weight, self.bias, "none", [], "")
        return out.view(*x.shape[:-1], out.shape[-1])
