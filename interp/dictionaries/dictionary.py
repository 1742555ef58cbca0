"""`Dictionary`: a sparse dictionary over one hook's activations, held as SAELens holds it. An
SAE reads and writes the same hook; a transcoder reads one (the MLP's input) and writes another
(its output). Encoding, decoding and reconstruction, batched over any leading axes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InvalidSettingError

Activation = Literal["relu", "topk", "jumprelu"]
ACTIVATIONS: tuple[str, ...] = ("relu", "topk", "jumprelu")
CHUNK_ROWS = 4096  # activations encoded at once: bounds the [rows, d_sae] pre-activations


@dataclass
class Dictionary:
    """Weights in SAELens's layout (`W_enc [d_in, d_sae]`, `W_dec [d_sae, d_out]`) and how to
    read them: the activation (`k` for TopK, `threshold` for JumpReLU), whether `b_dec` is
    subtracted from the input first, and the hooks read (`hook`) and written (`hook_out`, a
    transcoder's; None for an SAE, which writes where it reads)."""

    W_enc: Float[Tensor, "d_in d_sae"]
    b_enc: Float[Tensor, " d_sae"]
    W_dec: Float[Tensor, "d_sae d_out"]
    b_dec: Float[Tensor, " d_out"]
    activation: Activation
    hook: str
    hook_out: str | None = None
    k: int | None = None
    threshold: Float[Tensor, " d_sae"] | None = None
    apply_b_dec_to_input: bool = False
    model_name: str | None = None
    info: dict[str, Any] = field(default_factory=dict)  # training, corpus, evaluation
    path: Path | None = None

    def __post_init__(self) -> None:
        d_in, d_sae = self.W_enc.shape
        if self.W_dec.shape[0] != d_sae or self.b_enc.shape != (d_sae,):
            raise InvalidSettingError(
                f"the dictionary's shapes disagree: W_enc {list(self.W_enc.shape)}, b_enc "
                f"{list(self.b_enc.shape)}, W_dec {list(self.W_dec.shape)}"
            )
        if self.b_dec.shape != (self.W_dec.shape[1],):
            raise InvalidSettingError(
                f"b_dec has shape {list(self.b_dec.shape)}; W_dec writes {self.W_dec.shape[1]}"
            )
        if self.activation not in ACTIVATIONS:
            raise InvalidSettingError(f"unknown activation {self.activation!r}")
        if self.activation == "topk" and not (
            isinstance(self.k, int) and not isinstance(self.k, bool) and 1 <= self.k <= d_sae
        ):
            raise InvalidSettingError(f"a TopK dictionary needs k in 1..{d_sae}, got {self.k!r}")
        if self.activation == "jumprelu" and (
            self.threshold is None or self.threshold.shape != (d_sae,)
        ):
            raise InvalidSettingError(f"a JumpReLU dictionary needs a threshold of {d_sae} values")
        if self.apply_b_dec_to_input and self.d_out != d_in:
            raise InvalidSettingError("b_dec is subtracted from the input only where d_out = d_in")

    @property
    def d_in(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.W_enc.shape[1])

    @property
    def d_out(self) -> int:
        return int(self.W_dec.shape[1])

    @property
    def is_transcoder(self) -> bool:
        return self.hook_out is not None

    @property
    def writes(self) -> str:
        """The hook whose activations the decoder reconstructs."""
        return self.hook_out if self.hook_out is not None else self.hook

    @property
    def architecture(self) -> str:
        """SAELens's name for it: standard, topk, jumprelu, transcoder, jumprelu_transcoder."""
        if self.is_transcoder:
            return "jumprelu_transcoder" if self.activation == "jumprelu" else "transcoder"
        return "standard" if self.activation == "relu" else self.activation

    def to(self, device: torch.device | str) -> Dictionary:
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device))
        return self

    def pre(self, x: Float[Tensor, "rows d_in"]) -> Float[Tensor, "rows d_sae"]:
        """The encoder's pre-activations (SAELens's `hidden_pre`)."""
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def activate(self, pre: Float[Tensor, "rows d_sae"]) -> Float[Tensor, "rows d_sae"]:
        """The activation: ReLU; TopK (the k largest pre-activations, then ReLU); JumpReLU
        (ReLU where the pre-activation exceeds the feature's threshold, else 0)."""
        if self.activation == "relu":
            return pre.relu()
        if self.activation == "topk":
            assert self.k is not None
            top = pre.topk(self.k, dim=-1)
            return torch.zeros_like(pre).scatter_(-1, top.indices, top.values.relu())
        assert self.threshold is not None
        return pre.relu() * (pre > self.threshold)

    def encode(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_sae"]:
        """Feature activations of `x`, in chunks of rows."""
        self._check_width(x, self.d_in, "input")
        flat = x.reshape(-1, self.d_in).to(self.W_enc.dtype)
        out = [self.activate(self.pre(c)) for c in flat.split(CHUNK_ROWS)] if len(flat) else []
        acts = torch.cat(out) if out else flat.new_zeros(0, self.d_sae)
        return acts.reshape(*x.shape[:-1], self.d_sae)

    def decode(self, f: Float[Tensor, "*batch d_sae"]) -> Float[Tensor, "*batch d_out"]:
        """The reconstruction from feature activations: `f @ W_dec + b_dec`."""
        self._check_width(f, self.d_sae, "feature activations")
        return f.to(self.W_dec.dtype) @ self.W_dec + self.b_dec

    def reconstruct(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_out"]:
        """`decode(encode(x))`, in chunks of rows."""
        self._check_width(x, self.d_in, "input")
        flat = x.reshape(-1, self.d_in).to(self.W_enc.dtype)
        parts = [self.decode(self.activate(self.pre(c))) for c in flat.split(CHUNK_ROWS)]
        out = torch.cat(parts) if parts else flat.new_zeros(0, self.d_out)
        return out.reshape(*x.shape[:-1], self.d_out)

    def _check_width(self, x: Tensor, width: int, what: str) -> None:
        if x.dim() == 0 or x.shape[-1] != width:
            raise InvalidSettingError(
                f"the dictionary's {what} has width {width}; got shape {list(x.shape)}"
            )
