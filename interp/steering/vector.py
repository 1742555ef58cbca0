"""`SteeringVector`: a direction in the residual stream entering block `layer`, with how it was
made (method, the prompt sets' hashes and sizes, held-out separability, the stream's typical
norm there) and the model it belongs to; saved as one safetensors file (the record in its
metadata), atomically; applied as an `add`, `project` or `set` edit at chosen positions."""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from interp.edits.value import Intervention, edit
from interp.errors import InvalidSettingError, ModelMismatchError, TraceFormatError
from interp.files import atomic
from interp.models import site as site_values
from interp.models.model import Model
from interp.models.site import Site
from interp.stats import Estimate

Where = Literal["all", "prompt", "generated"]
Unit = Literal["vector", "resid"]
SteerOp = Literal["add", "project", "set"]
WHERE: tuple[Where, ...] = ("all", "prompt", "generated")
UNITS: tuple[Unit, ...] = ("vector", "resid")
STEER_OPS: tuple[SteerOp, ...] = ("add", "project", "set")
_KEY = "interp_steering_vector"  # the record's key in the file's metadata
MAX_BYTES = 256 << 20


@dataclass
class SteeringVector:
    """A steering direction `vector` `[d_model]` at `blocks.{layer}.hook_resid_pre` of model
    `model_name`. `resid_norm`: the median norm of the stream there over the sets' prompt
    tokens (the first token left out), the unit of `unit="resid"` scales; `separability`:
    held-out accuracy of the projection onto the direction, its mean over random splits and
    the 2.5th and 97.5th percentiles of the splits' (None for a given vector; the interval
    NaN in a file written before splits were many)."""

    vector: Tensor
    layer: int
    model_name: str
    method: str  # "diffmean", "caa" or "given"
    position: str = "last"  # where in each prompt the stream was read: "last" or "mean"
    separability: Estimate | None = None
    resid_norm: float | None = None
    sets: dict[str, Any] = field(default_factory=dict)  # {"positive": {"sha256", "size"}, ...}
    provenance: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Checked where built: a finite, non-zero direction; a positive residual norm and a
        separability in [0, 1] where given (a record's numbers included)."""
        v = self.vector
        if not isinstance(v, Tensor) or v.dim() != 1 or not bool(torch.isfinite(v).all()):
            raise InvalidSettingError("a steering vector is one row of finite numbers")
        if not bool(v.any()):
            raise InvalidSettingError("the steering vector is zero: it has no direction to steer")
        norm = self.resid_norm
        real = not isinstance(norm, bool) and isinstance(norm, numbers.Real)
        if norm is not None and not (real and 0 < norm < math.inf):
            raise InvalidSettingError(
                f"resid_norm must be a finite number above 0, got {norm!r:.40}"
            )
        s = self.separability
        if s is not None and not (
            isinstance(s, Estimate)
            and 0 <= s.value <= 1
            and ((math.isnan(s.lo) and math.isnan(s.hi)) or (0 <= s.lo <= s.hi <= 1))
        ):
            raise InvalidSettingError(
                f"separability must be an Estimate of a fraction in [0, 1], got {s!r:.60}"
            )

    @property
    def site(self) -> Site:
        return site_values.of_layer("resid_pre", self.layer)

    @property
    def norm(self) -> float:
        """The vector's norm, computed in float64 (a float32 norm can overflow)."""
        return float(self.vector.double().norm())

    @classmethod
    def given(cls, model: Model, vector: Any, layer: int) -> SteeringVector:
        """A vector the user has, checked against the model (width, finite, a valid layer)."""
        try:
            tensor = torch.as_tensor(vector, dtype=torch.float32).detach().cpu()
        except (TypeError, ValueError, RuntimeError):
            raise InvalidSettingError("a steering vector is a vector of numbers") from None
        out = cls(tensor, check_layer(model, layer), model.name, "given")
        out.provenance = {"model_checksum": model.checksum}
        return out.check(model)

    def check(self, model: Model) -> SteeringVector:
        """Refuse, in one line, a vector of another model, another width, or no direction."""
        if self.model_name != model.name:
            raise ModelMismatchError(
                f"this steering vector was made on {self.model_name!r}, not {model.name!r}"
            )
        made = self.provenance.get("model_checksum")
        if made and made != model.checksum:
            raise ModelMismatchError(
                f"this steering vector was made on other weights for {model.name!r} "
                f"(checksum {made}, loaded {model.checksum})"
            )
        v = self.vector
        if v.dim() != 1 or v.shape[0] != model.d_model:
            raise InvalidSettingError(
                f"a steering vector for {model.name} has {model.d_model} numbers (its "
                f"d_model); this one has shape {list(v.shape)}"
            )
        if not bool(torch.isfinite(v).all()):
            raise InvalidSettingError("the steering vector holds a NaN or an infinity")
        check_layer(model, self.layer)
        return self

    def intervention(
        self,
        scale: float = 1.0,
        *,
        op: SteerOp = "add",
        positions: Where = "all",
        unit: Unit = "vector",
    ) -> Intervention:
        """The edit at the vector's site, applied at every step of a generation: `add` adds
        `scale` steps along it (unit "vector": the vector itself; "resid": the stream's
        typical norm along its direction, comparable across layers); `project` removes the
        stream's component along it (directional ablation); `set` clamps that component to
        `scale` steps. `positions`: "all", the "prompt"'s or the "generated" tokens'."""
        if op not in STEER_OPS:
            raise InvalidSettingError(f"op must be one of {', '.join(STEER_OPS)}, got {op!r}")
        if positions not in WHERE:
            raise InvalidSettingError(
                f"positions must be one of {', '.join(WHERE)}, got {positions!r}"
            )
        at = None if positions == "all" else positions
        if op == "project":
            return edit(self.site, "project", positions=at, direction=self.vector)
        step = self.step(unit)
        scale = check_scale(scale)
        if op == "set":  # the component along the unit direction, in the same steps as `add`
            value = scale * step * self.norm
            return edit(self.site, "set", positions=at, direction=self.vector, value=value)
        return edit(self.site, "add", positions=at, vector=self.vector, scale=scale * step)

    def step(self, unit: Unit) -> float:
        """What one unit of scale multiplies the vector by."""
        if unit not in UNITS:
            raise InvalidSettingError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
        if unit == "vector":
            return 1.0
        if self.resid_norm is None:
            raise InvalidSettingError(
                "this vector has no residual norm (a given vector): use unit 'vector', or "
                "make the vector from prompt sets"
            )
        return self.resid_norm / self.norm

    # ---- on disk ---------------------------------------------------------------------

    def record(self) -> dict[str, Any]:
        """Everything but the vector itself, as JSON."""
        return {
            "layer": self.layer,
            "site": str(self.site),
            "model_name": self.model_name,
            "method": self.method,
            "position": self.position,
            "norm": round(self.norm, 6),
            "separability": None if self.separability is None else self.separability.json(),
            "resid_norm": self.resid_norm,
            "sets": self.sets,
            "provenance": self.provenance,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write `path` (a .safetensors file) atomically: the vector, and the record in the
        file's metadata."""
        from safetensors.torch import save

        data = save(
            {"vector": self.vector.float().contiguous()}, metadata={_KEY: json.dumps(self.record())}
        )
        target = Path(path)
        atomic.write_bytes(target, data)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: Model | None = None) -> SteeringVector:
        """A vector saved by `save`, checked against `model` when given."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        file = Path(path)
        try:
            if not file.is_file():
                raise InvalidSettingError(f"{file}: no such steering vector file")
            if file.stat().st_size > MAX_BYTES:
                raise InvalidSettingError(f"{file}: too large for a steering vector file")
            data = file.read_bytes()
            tensors = load(data)
            header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
        except (OSError, SafetensorError, ValueError) as exc:
            raise TraceFormatError(f"{file}: not a safetensors file ({exc})") from None
        meta = header.get("__metadata__") or {}
        if set(tensors) != {"vector"} or _KEY not in meta:
            raise TraceFormatError(
                f"{file}: not a steering vector saved by interp (expected one tensor 'vector' "
                "and its record)"
            )
        out = _from_record(tensors["vector"].float(), meta[_KEY], file)
        return out if model is None else out.check(model)


def _from_record(vector: Tensor, text: str, file: Path) -> SteeringVector:
    try:
        r = json.loads(text)
        out = SteeringVector(
            vector,
            int(r["layer"]),
            str(r["model_name"]),
            str(r["method"]),
            str(r.get("position", "last")),
            _separability(r.get("separability")),
            r.get("resid_norm"),
            dict(r.get("sets", {})),
            {str(k): str(v) for k, v in r.get("provenance", {}).items()},
        )
    except InvalidSettingError as exc:  # the record's numbers, checked where it is built
        raise TraceFormatError(f"{file}: its steering record is refused: {exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TraceFormatError(f"{file}: its steering record is damaged ({exc})") from None
    return out


def _separability(value: Any) -> Estimate | None:
    """A record's separability: `{"value", "ci95"}`, or a bare number (one split, written
    before the splits were many: its interval unknown)."""
    if value is None:
        return None
    if isinstance(value, dict):
        lo, hi = value["ci95"]
        return Estimate(
            float(value["value"]),
            math.nan if lo is None else float(lo),
            math.nan if hi is None else float(hi),
        )
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidSettingError(f"separability must be a number, got {value!r:.40}")
    return Estimate(float(value), math.nan, math.nan)


def check_layer(model: Model, layer: Any) -> int:
    """A block index of the model, or one line saying the valid range."""
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
        raise InvalidSettingError(f"layer must be an integer, got {layer!r:.40}")
    if not 0 <= int(layer) < model.n_layers:
        raise InvalidSettingError(
            f"layer {layer} is out of range: {model.name} has layers 0..{model.n_layers - 1}"
        )
    return int(layer)


def check_scale(scale: Any) -> float:
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale):
        raise InvalidSettingError(f"a scale is a finite number, got {scale!r:.40}")
    return float(scale)
