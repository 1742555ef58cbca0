"""`Model`: a Hugging Face causal LM wrapped in a TransformerLens 4 `TransformerBridge`, with
its tokenizer and where it came from. A leaf: the loader (`interp.models.wrap`) builds it,
runs the guards and hands it its engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from interp.errors import InvalidSettingError

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class Loading:
    """How a model was loaded (`load_model`'s name, a local folder made absolute, and its
    guards), so another process (a Ray worker) can load the same one."""

    name: str
    check_kv: bool = True


@dataclass
class Model:
    """A loaded model: the TransformerLens bridge, its tokenizer, and where it came from."""

    name: str
    bridge: TransformerBridge
    tokenizer: PreTrainedTokenizerBase
    checksum: str  # sha256 of the weights file, or the Hub commit, or "random-init"
    source: str = ""  # a human-readable origin (file path or Hub id)
    extra: dict[str, Any] = field(default_factory=dict)
    loading: Loading | None = None  # None: built in memory, which no other process can load
    # the direct engine (`interp.models.engine`) as the loader or a later run set it: (the device it
    # was built for, the engine or None where it is set aside, why it is set aside)
    direct: tuple[torch.device, Any, str] | None = field(default=None, repr=False)

    @property
    def cfg(self) -> Any:
        return self.bridge.cfg

    @property
    def n_layers(self) -> int:
        return int(self.cfg.n_layers)

    @property
    def n_heads(self) -> int:
        return int(self.cfg.n_heads)

    @property
    def d_model(self) -> int:
        return int(self.cfg.d_model)

    @property
    def n_ctx(self) -> int:
        return int(self.cfg.n_ctx)

    @property
    def d_vocab(self) -> int:
        return int(self.cfg.d_vocab)

    @property
    def device(self) -> torch.device:
        return next(self.bridge.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.bridge.parameters()).dtype

    @property
    def eos_token_id(self) -> int | None:
        return self.tokenizer.eos_token_id

    @property
    def stop_token_ids(self) -> frozenset[int]:
        """The tokens that end a generation: the tokenizer's end of text and every end token
        of the model's generation config (as Hugging Face's `generate` stops)."""
        stops = self.extra.get("_stop_token_ids")
        if stops is None:
            config = getattr(self.bridge.original_model, "generation_config", None)
            ends = getattr(config, "eos_token_id", None)
            ends = [] if ends is None else [ends] if isinstance(ends, int) else list(ends)
            if self.eos_token_id is not None:
                ends.append(self.eos_token_id)
            stops = self.extra["_stop_token_ids"] = frozenset(int(i) for i in ends)
        return stops

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids following the tokenizer's own BOS convention (never forced on or off)."""
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids))

    def token_strs(self, ids: list[int]) -> list[str]:
        """One string per token, exactly as the token contributes to the decoded text."""
        return [str(self.tokenizer.decode([i])) for i in ids]


def eval_mode(module: torch.nn.Module) -> None:
    """Put `module` in eval mode unless every submodule already is."""
    if any(m.training for m in module.modules()):
        module.eval()


def validate_device(device: str | torch.device) -> torch.device:
    """A torch device that exists here, or a clear error."""
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise InvalidSettingError(f"unknown device {str(device)!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidSettingError("device 'cuda' was asked for, but no CUDA GPU is available")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidSettingError("device 'mps' was asked for, but MPS is not available")
    return dev
