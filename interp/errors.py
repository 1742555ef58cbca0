"""Typed errors: the library raises these; only the CLI turns them into one line and a status."""

from __future__ import annotations

__all__ = [
    "AttentionSinkWarning",
    "HookError",
    "InterpError",
    "InterpWarning",
    "InvalidSettingError",
    "KVCacheMismatchError",
    "ModelMismatchError",
    "ModelNotInstalledError",
    "ModelUnavailableError",
    "OutputPathError",
    "SamplingError",
    "TraceFormatError",
    "UnknownModelError",
    "WriteError",
]


class InterpError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class InvalidSettingError(InterpError, ValueError):
    """A user-supplied setting (prompt, sampling option, length, path) is out of range."""


class UnknownModelError(InterpError, ValueError):
    """The model name is neither embedded nor a Hugging Face model TransformerLens can load."""


class ModelUnavailableError(InterpError):
    """The model is known, but its weights or package cannot be reached from here."""


class ModelNotInstalledError(ModelUnavailableError):
    """What the user named is not here: an embedded model's package is not installed, or a
    model folder lacks a file it needs (the fix is the user's: install it, or fix the path)."""


class KVCacheMismatchError(InterpError):
    """The KV-cached forward disagrees with the full forward (a broken library combination)."""


class SamplingError(InterpError):
    """The logits cannot be sampled from (NaN, infinite, or every token masked)."""


class HookError(InterpError, KeyError):
    """A requested hook does not exist on the model, or a trace lacks a hook an analysis needs."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class TraceFormatError(InterpError):
    """A directory is not an interp trace, or was written by an unknown format version."""


class DictionaryFormatError(InterpError):
    """A folder that is not a dictionary interp can read right."""


class ModelMismatchError(InterpError):
    """A trace is used with another model than the one it was recorded with."""


class OutputPathError(InterpError):
    """An output directory cannot be written, or holds something that is not ours to replace."""


class WriteError(InterpError, OSError):
    """Writing an output failed part-way (a full disk, a read-only file system); what was
    there before is unchanged."""


class ExecutorError(InterpError):
    """Where the work was to run could not run it: a Ray cluster unreachable or full, a
    worker that could not load the model or died past its restarts."""


class InterpWarning(UserWarning):
    """Base class of every warning the toolkit gives on purpose (the CLI prints each as one
    `interp: warning: ...` line)."""


class AttentionSinkWarning(InterpWarning):
    """An edit at a span that starts at position 0: with no BOS token before it (SmolLM2 adds
    none), the edit also lands on the attention sink, the position later tokens attend to
    most, so its effect is not the span's alone."""
